"""Writes on pages (worker/overlay.py): random write workloads give, version after version, the very database
plain SQLite gives on a file, and each version's chunks rebuild the overlay's bytes exactly."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from shared.snapshot.manifest import Manifest
from worker.overlay import Overlay
from worker.page_writes import OnOverlay

CHUNK = 16 * 1024


class Chunks:
    """A chunk store by name, as the chunk cache serves one (and counts what it was asked for)."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.asked: set[str] = set()

    def get(self, database: str, origins: list[str], digest: str) -> bytes:
        self.asked.add(digest)
        return self.stored[digest]


def statement(rng: random.Random, step: int) -> str:
    table = rng.choice(["a", "b"])
    blob = f"x'{rng.randbytes(rng.randint(0, 64)).hex()}' || zeroblob({rng.randint(0, 9000)})"  # the same both sides
    return rng.choice([
        f"INSERT INTO {table} (n, s, pad) VALUES ({rng.randint(-99, 99)}, 'v{step}', {blob})",
        f"INSERT INTO {table} (n, s, pad) SELECT n + 1, s || 'x', pad FROM {table} WHERE n % 7 = {rng.randint(0, 6)}",
        f"UPDATE {table} SET pad = zeroblob({rng.randint(0, 20000)}) WHERE n > {rng.randint(-99, 99)}",
        f"DELETE FROM {table} WHERE n < {rng.randint(-99, 99)}",
        f"DELETE FROM {table} WHERE id % {rng.randint(2, 5)} = 0",
        f"CREATE INDEX IF NOT EXISTS {table}_s{step % 3} ON {table} (s)",
        f"DROP INDEX IF EXISTS {table}_s{rng.randint(0, 2)}",
        "VACUUM",
        "PRAGMA incremental_vacuum",
    ])


def run(conn: Any, sql: str) -> None:
    try:
        conn.execute(sql)
    except Exception as exc:  # sqlite3's or APSW's: no statement of the workload may fail on either side
        raise AssertionError(f"{sql}: {exc}") from exc


def dump(conn: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for table in ("a", "b")
            for row in conn.execute(f"SELECT id, n, s, hex(pad) FROM {table} ORDER BY id")]


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_over_versions_are_plain_sqlites(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    plain = sqlite3.connect(tmp_path / "plain.sqlite", isolation_level=None)
    chunks = Chunks()
    base: Manifest | None = None
    setup = ["PRAGMA auto_vacuum = INCREMENTAL" if seed % 2 else "SELECT 1",
             "CREATE TABLE a (id INTEGER PRIMARY KEY, n INTEGER, s TEXT, pad BLOB)",
             "CREATE TABLE b (id INTEGER PRIMARY KEY, n INTEGER, s TEXT, pad BLOB)"]
    for version in range(1, 9):
        overlay = Overlay("d", base, chunks, CHUNK, tmp_path)  # type: ignore[arg-type]
        target = OnOverlay(overlay)
        with target.own() as conn:
            for sql in (setup if version == 1 else
                        [statement(rng, version * 100 + i) for i in range(rng.randint(1, 12))]):
                run(plain, sql)
                run(conn, sql)
            assert dump(conn) == dump(plain)
            assert [tuple(r) for r in conn.execute("PRAGMA integrity_check")] == [("ok",)]
        names, new = overlay.chunks()
        image = overlay.read(overlay.size, 0)
        chunks.stored.update(new)
        rebuilt = b"".join(chunks.stored[name] for name in names)
        # The same bytes, but for the header's transaction counters where page 1 changed in nothing else.
        assert len(rebuilt) == len(image)
        assert (rebuilt[:24], rebuilt[28:92], rebuilt[96:]) == (image[:24], image[28:92], image[96:])
        base = Manifest(version, overlay.size, overlay.page_size(), CHUNK, names, 0.0, writer=f"w{version}")
        overlay.close()
    plain.close()
    # The last version, read back whole by stock SQLite, is the plain file's database.
    (tmp_path / "last.sqlite").write_bytes(b"".join(chunks.stored[name] for name in base.chunks))
    with sqlite3.connect(tmp_path / "last.sqlite") as last, sqlite3.connect(tmp_path / "plain.sqlite") as again:
        assert dump(last) == dump(again)
        assert last.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_write_reads_only_the_chunks_it_touches(tmp_path: Path) -> None:
    chunks = Chunks()
    overlay = Overlay("d", None, chunks, CHUNK, tmp_path)  # type: ignore[arg-type]
    with OnOverlay(overlay).own() as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)")
        conn.execute("BEGIN")
        for i in range(4000):
            conn.execute("INSERT INTO t VALUES (?, ?)", (i, f"{i:0300d}"))
        conn.execute("COMMIT")
    names, new = overlay.chunks()
    chunks.stored.update(new)
    base = Manifest(1, overlay.size, overlay.page_size(), CHUNK, names, 0.0, writer="w1")
    overlay.close()
    assert len(names) > 60
    again = Overlay("d", base, chunks, CHUNK, tmp_path)  # type: ignore[arg-type]
    with OnOverlay(again).own() as conn:
        conn.execute("UPDATE t SET pad = 'changed' WHERE id = 2345")
    touched, fresh = again.chunks()
    assert len(chunks.asked) <= 4  # the header's chunk, the B-tree's path to the row
    # Only the row's chunk is new: the first one changed in its transaction counters alone (_counters_only).
    assert len(fresh) == 1 and touched[0] == names[0]
    assert sum(a != b for a, b in zip(names, touched, strict=True)) == 1
    again.close()


def test_a_version_last_written_in_wal_mode_takes_writes(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (a)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    image = path.read_bytes()
    assert image[18:20] == b"\x02\x02"  # what srdb's whole-copy writer (SRDB_READ_PAGES=0) leaves
    chunks = Chunks()
    names = []
    for start in range(0, len(image), CHUNK):
        digest = hashlib.sha256(image[start:start + CHUNK]).hexdigest()
        chunks.stored[digest] = image[start:start + CHUNK]
        names.append(digest)
    overlay = Overlay("d", Manifest(1, len(image), 4096, CHUNK, names, 0.0), chunks, CHUNK, tmp_path)  # type: ignore[arg-type]
    with OnOverlay(overlay).own() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        assert [tuple(r) for r in conn.execute("SELECT a FROM t ORDER BY a")] == [(1,), (2,)]
    (tmp_path / "after.sqlite").write_bytes(overlay.read(overlay.size, 0))
    overlay.close()
    with sqlite3.connect(tmp_path / "after.sqlite") as after:
        assert after.execute("SELECT a FROM t ORDER BY a").fetchall() == [(1,), (2,)]
        assert after.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert not list(tmp_path.glob("*-wal")) and not list(Path.cwd().glob("srdb-*"))


def test_what_a_truncation_cut_off_reads_as_zeros_when_the_file_grows_again(tmp_path: Path) -> None:
    chunks = Chunks()
    image = bytes(range(256)) * (4 * CHUNK // 256)  # four chunks of the base, none of them zeros
    names = []
    for start in range(0, len(image), CHUNK):
        names.append(hashlib.sha256(image[start:start + CHUNK]).hexdigest())
        chunks.stored[names[-1]] = image[start:start + CHUNK]
    overlay = Overlay("d", Manifest(1, len(image), 4096, CHUNK, names, 0.0), chunks, CHUNK, tmp_path)  # type: ignore[arg-type]
    overlay.truncate(CHUNK + 100)  # into the second chunk
    overlay.write(b"x" * 10, 3 * CHUNK)  # grows again, into the fourth, leaving a gap
    assert overlay.read(overlay.size, 0) == image[:CHUNK + 100] + bytes(2 * CHUNK - 100) + b"x" * 10
    after, new = overlay.chunks()
    assert after[0] == names[0] and len(after) == 4
    assert b"".join(new.get(n) or chunks.stored[n] for n in after) == overlay.read(overlay.size, 0)
    overlay.close()
