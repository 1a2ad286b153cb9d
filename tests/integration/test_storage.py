"""Snapshots in S3: chunked, content-addressed, committed by a conditional manifest write."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from shared.errors import CommitConflict, StorageError
from shared.s3 import Bucket
from shared.settings import Settings
from shared.snapshot.keys import chunk_key
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import SnapshotStore

CHUNK = 4096


def store(settings: Settings, aws: Any, cache: Path, s3: Any = None) -> SnapshotStore:
    return SnapshotStore(Bucket(s3 or aws.s3, settings.bucket), cache, chunk_size=CHUNK, concurrency=4)


def write(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()


def commit(s: SnapshotStore, database: str, *statements: str) -> Any:
    with s.writer(database) as writer:
        write(writer.path, *statements)
        return writer.commit(["job"])


def test_a_database_round_trips_through_chunks(settings: Settings, aws: Any, tmp_path: Path) -> None:
    writer = store(settings, aws, tmp_path / "a")
    assert writer.sync("sales").manifest is None
    committed = commit(writer, "sales", "CREATE TABLE t (a, b)", "INSERT INTO t VALUES (1, zeroblob(50000))")
    assert committed.version == 1
    assert len(committed.manifest.chunks) == committed.manifest.file_size // CHUNK
    reader = store(settings, aws, tmp_path / "b").sync("sales")
    assert reader.path.read_bytes() == committed.path.read_bytes()
    assert sqlite3.connect(reader.path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_commit_uploads_only_the_chunks_it_changed(settings: Settings, aws: Any, tmp_path: Path) -> None:
    s = store(settings, aws, tmp_path / "a")
    commit(s, "big", "CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB)",
           *[f"INSERT INTO t VALUES ({i}, zeroblob(3000))" for i in range(200)])
    s.stats.bytes_up = 0
    committed = commit(s, "big", "UPDATE t SET b = x'01' WHERE a = 7")
    assert committed.version == 2
    manifest_bytes = len(committed.manifest.to_bytes())  # written twice: manifest.json and versions/
    assert committed.manifest.file_size > 500_000
    assert s.stats.bytes_up <= 4 * CHUNK + 2 * manifest_bytes  # a few chunks, not the 600 KB file


def test_a_warm_reader_downloads_nothing_when_unchanged(settings: Settings, aws: Any, tmp_path: Path) -> None:
    commit(store(settings, aws, tmp_path / "w"), "warm", "CREATE TABLE t (a)", "INSERT INTO t VALUES (zeroblob(40000))")
    reader = store(settings, aws, tmp_path / "r")
    reader.sync("warm")
    reader.stats.bytes_down, reader.stats.requests = 0, 0
    snapshot = reader.sync("warm")
    assert snapshot.version == 1
    assert (reader.stats.bytes_down, reader.stats.requests) == (0, 1)


def test_a_warm_reader_fetches_only_changed_chunks(settings: Settings, aws: Any, tmp_path: Path) -> None:
    writer = store(settings, aws, tmp_path / "w")
    commit(writer, "inc", "CREATE TABLE t (a)", *["INSERT INTO t VALUES (zeroblob(3000))"] * 100)
    reader = store(settings, aws, tmp_path / "r")
    reader.sync("inc")
    commit(writer, "inc", "INSERT INTO t VALUES (1)")
    reader.stats.bytes_down = 0
    snapshot = reader.sync("inc")
    assert snapshot.version == 2
    assert reader.stats.bytes_down < 4 * CHUNK + 10_000
    assert snapshot.path.read_bytes() == (tmp_path / "w" / "inc" / "db.sqlite").read_bytes()


def test_a_stale_writer_cannot_overwrite_a_newer_snapshot(settings: Settings, aws: Any, tmp_path: Path) -> None:
    first, second = store(settings, aws, tmp_path / "1"), store(settings, aws, tmp_path / "2")
    commit(first, "race", "CREATE TABLE t (a)")
    with pytest.raises(CommitConflict, match="changed under this writer"), second.writer("race") as stale:
        commit(first, "race", "INSERT INTO t VALUES ('winner')")
        write(stale.path, "INSERT INTO t VALUES ('loser')")
        stale.commit(["loser"])
    assert not second.local_path("race").exists()  # a writer that fails leaves no copy behind
    fresh = second.sync("race")
    assert sqlite3.connect(fresh.path).execute("SELECT a FROM t").fetchall() == [("winner",)]


def test_two_first_commits_cannot_both_win(settings: Settings, aws: Any, tmp_path: Path) -> None:
    first, second = store(settings, aws, tmp_path / "1"), store(settings, aws, tmp_path / "2")
    with first.writer("new") as a, second.writer("new") as b:
        for w in (a, b):
            write(w.path, "CREATE TABLE t (a)")
        a.commit([])
        with pytest.raises(CommitConflict):
            b.commit([])


def test_every_committed_version_is_kept(settings: Settings, aws: Any, tmp_path: Path) -> None:
    s = store(settings, aws, tmp_path / "a")
    commit(s, "hist", "CREATE TABLE t (a)")
    commit(s, "hist", "INSERT INTO t VALUES (1)")
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix="db/hist/versions/")["Contents"]]
    assert keys == ["db/hist/versions/000000000001.json", "db/hist/versions/000000000002.json"]
    body = aws.s3.get_object(Bucket=settings.bucket, Key=keys[1])["Body"].read()
    assert Manifest.from_bytes(body).jobs == ["job"]


class CorruptingS3:
    """Fault at the client boundary: chunk reads return the wrong bytes ``bad`` times."""

    def __init__(self, s3: Any, bad: int) -> None:
        self.s3, self.bad = s3, bad

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)

    def get_object(self, **kwargs: Any) -> Any:
        response = self.s3.get_object(**kwargs)
        if "/chunks/" in kwargs["Key"] and self.bad > 0:
            self.bad -= 1
            response["Body"].read()
            response["Body"] = type("Body", (), {"read": lambda self: b"garbage"})()
        return response


def test_a_chunk_that_fails_its_hash_is_fetched_again(settings: Settings, aws: Any, tmp_path: Path) -> None:
    commit(store(settings, aws, tmp_path / "w"), "hash", "CREATE TABLE t (a)")
    snapshot = store(settings, aws, tmp_path / "r", CorruptingS3(aws.s3, bad=1)).sync("hash")
    assert sqlite3.connect(snapshot.path).execute("SELECT count(*) FROM t").fetchone() == (0,)
    with pytest.raises(StorageError, match="does not match its hash"):
        store(settings, aws, tmp_path / "r2", CorruptingS3(aws.s3, bad=100)).sync("hash")


def test_chunks_are_content_addressed(settings: Settings, aws: Any, tmp_path: Path) -> None:
    committed = commit(store(settings, aws, tmp_path / "a"), "cas", "CREATE TABLE t (a)")
    digest = committed.manifest.chunks[0]
    data = aws.s3.get_object(Bucket=settings.bucket, Key=chunk_key("cas", digest))["Body"].read()
    assert hashlib.sha256(data).hexdigest() == digest


@pytest.mark.slow
def test_a_commit_from_the_log_matches_a_full_rehash(settings: Settings, aws: Any, tmp_path: Path) -> None:
    from shared.snapshot.wal import written_pages

    s = store(settings, aws, tmp_path / "a")
    commit(s, "wal", "CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB)",
           *[f"INSERT INTO t VALUES ({i}, zeroblob(2000))" for i in range(300)])
    with s.writer("wal") as writer:
        conn = sqlite3.connect(writer.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        writer.commit([], None)  # the switch to WAL rewrote the header: one full commit
        conn.close()
    with s.writer("wal") as writer:
        conn = sqlite3.connect(writer.path, isolation_level=None)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("UPDATE t SET b = randomblob(10) WHERE a IN (3, 150, 299)")
        pages = written_pages(Path(f"{writer.path}-wal"))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        s.stats.bytes_up = 0
        committed = writer.commit(["j"], pages)
    data = committed.path.read_bytes()
    assert committed.manifest.chunks == [hashlib.sha256(data[i:i + CHUNK]).hexdigest()
                                         for i in range(0, len(data), CHUNK)]
    assert s.stats.bytes_up < len(data) // 4
    assert store(settings, aws, tmp_path / "cold").sync("wal").path.read_bytes() == data


def test_a_writer_left_without_a_commit_puts_the_copy_back(settings: Settings, aws: Any, tmp_path: Path) -> None:
    s = store(settings, aws, tmp_path / "a")
    commit(s, "back", "CREATE TABLE t (a)", "INSERT INTO t VALUES (zeroblob(20000))")
    with s.writer("back") as writer:
        assert writer.version == 1
    s.stats.bytes_down = 0
    assert s.sync("back").version == 1 and s.stats.bytes_down == 0  # still the snapshot it was
    with pytest.raises(RuntimeError, match="boom"), s.writer("back") as writer:
        write(writer.path, "INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert not s.local_path("back").exists()  # a copy changed and not committed is never reused
