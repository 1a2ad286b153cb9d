"""The pages a transaction wrote, from the write-ahead log, name every chunk that changed."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.snapshot.wal import dirty_chunks, written_pages


def chunk_hashes(path: Path, chunk_size: int) -> list[str]:
    data = path.read_bytes()
    return [hashlib.sha256(data[i:i + chunk_size]).hexdigest() for i in range(0, len(data), chunk_size)]


statement = st.one_of(
    st.builds(lambda n, size: f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
              f"INSERT INTO t (b) SELECT randomblob({size}) FROM c",
              st.integers(1, 20), st.integers(0, 9000)),
    st.builds(lambda k: f"DELETE FROM t WHERE a % {k} = 0", st.integers(1, 5)),
    st.builds(lambda k, size: f"UPDATE t SET b = randomblob({size}) WHERE a % 7 = {k}",
              st.integers(0, 6), st.integers(0, 6000)),
    st.just("CREATE INDEX IF NOT EXISTS tb ON t (length(b))"),
    st.just("DROP INDEX IF EXISTS tb"),
)


@settings(max_examples=40, deadline=None)
@given(transactions=st.lists(st.lists(statement, min_size=1, max_size=4), min_size=1, max_size=5),
       chunk_size=st.sampled_from([1024, 4096, 16384]), page_size=st.sampled_from([1024, 4096]),
       auto_vacuum=st.booleans())
def test_the_log_names_every_changed_chunk(tmp_path_factory: object, transactions: list[list[str]],
                                           chunk_size: int, page_size: int, auto_vacuum: bool) -> None:
    folder = tmp_path_factory.mktemp("wal")  # type: ignore[attr-defined]
    path = folder / "db.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {page_size}")
    conn.execute(f"PRAGMA auto_vacuum = {'FULL' if auto_vacuum else 'NONE'}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for transaction in transactions:
        before = chunk_hashes(path, chunk_size)
        old_size = path.stat().st_size
        conn.execute("BEGIN IMMEDIATE")
        for sql in transaction:
            conn.execute(sql)
        conn.execute("COMMIT")
        pages = written_pages(Path(f"{path}-wal"))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        after = chunk_hashes(path, chunk_size)
        dirty = dirty_chunks(pages, page_size, chunk_size, old_size, path.stat().st_size)
        changed = {i for i, digest in enumerate(after) if i >= len(before) or before[i] != digest}
        assert changed <= dirty
        assert max(dirty, default=-1) < len(after)
    conn.close()


def test_no_log_means_no_pages(tmp_path: Path) -> None:
    assert written_pages(tmp_path / "missing-wal") == set()
