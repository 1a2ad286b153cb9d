"""Forks: a new database that names its source's chunks — made in a few requests whatever the size, written
to independently, and kept readable by the source's collector and by a drop of the source. Each race with
the collector has a test that fails without its protection (the raw storage engine and 4-byte chunks, as
in test_gc.py, so a test says exactly which chunk each version names)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producer.client import Client
from reaper.gc import GcReport
from shared.errors import ClientSideError
from shared.s3 import Bucket
from shared.settings import Settings
from shared.snapshot.catalog import Catalog
from shared.snapshot.fork import fork
from shared.snapshot.keys import chunks_prefix, database_prefix, fork_marker_key, forks_prefix, trash_prefix
from worker.batch import Worker

from .test_gc import aged, collect, collector, commit, digest, names, store

SOURCE, FORK = "g", "f"


@pytest.fixture
def bucket(settings: Settings, aws: Any) -> Bucket:
    return Bucket(aws.s3, settings.bucket)


def read(bucket: Bucket, root: Path, database: str) -> bytes:
    """The current version as a worker with an empty cache reads it."""
    return store(bucket, root).sync(database).path.read_bytes()


def test_a_fork_costs_a_few_requests_and_copies_no_chunk(bucket: Bucket, tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"aaaabbbbccccdddd" * 64)  # 256 chunk slots, 4 distinct chunks
    before = bucket.requests
    made = fork(bucket, SOURCE, FORK)
    assert bucket.requests - before <= 10
    assert names(bucket, chunks_prefix(FORK)) == set()
    assert made.origins == [SOURCE] and made.forked_from == {"database": SOURCE, "version": 1}
    assert read(bucket, tmp_path, FORK) == b"aaaabbbbccccdddd" * 64
    with pytest.raises(ClientSideError, match="exists already"):
        fork(bucket, SOURCE, FORK)


def test_writes_to_either_never_show_in_the_other(bucket: Bucket, tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"aaaabbbb")
    fork(bucket, SOURCE, FORK)
    with store(bucket, tmp_path).writer(FORK) as writer:
        writer.path.write_bytes(b"aaaaffff")
        made = writer.commit([])
    assert made.manifest is not None and made.manifest.origins == [SOURCE]  # still a fork after a write
    commit(bucket, tmp_path, b"ssssbbbb")
    assert read(bucket, tmp_path, FORK) == b"aaaaffff"
    assert read(bucket, tmp_path, SOURCE) == b"ssssbbbb"
    assert names(bucket, chunks_prefix(FORK)) == {digest(b"ffff")}  # only what it wrote


def test_the_sources_collector_keeps_what_a_fork_still_names(bucket: Bucket, tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"oldaoldb")
    fork(bucket, SOURCE, FORK)
    commit(bucket, tmp_path, b"newanewb")  # the source no longer names old chunks; its v1 leaves the window
    aged()
    collect(bucket)
    aged()
    collect(bucket)  # a second pass would purge whatever the first moved to the trash
    assert names(bucket, trash_prefix(SOURCE)) == set()
    assert read(bucket, tmp_path, FORK) == b"oldaoldb"


def test_a_fork_being_made_holds_the_collector_until_its_marker_ages(bucket: Bucket, tmp_path: Path) -> None:
    """The marker is written before the fork's manifest: a pass in between must free nothing."""
    commit(bucket, tmp_path, b"oldaoldb")
    commit(bucket, tmp_path, b"newanewb")
    bucket.put(fork_marker_key(SOURCE, FORK), b"{}")  # a fork of version 1 half made
    aged()
    bucket.put(fork_marker_key(SOURCE, FORK), b"{}")  # ... and still being made: its marker is young
    collect(bucket)
    assert len(names(bucket, chunks_prefix(SOURCE))) == 4  # nothing moved while the fork's chunks are unknown
    aged()
    collect(bucket)  # the marker outlived the grace without a fork: stale, deleted, and the pass goes on
    assert names(bucket, forks_prefix(SOURCE)) == set()
    assert len(names(bucket, trash_prefix(SOURCE))) == 2


def test_dropping_the_source_never_breaks_a_fork(bucket: Bucket, tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"aaaabbbb")
    fork(bucket, SOURCE, FORK)
    fork(bucket, FORK, "f2")  # a fork of the fork: it names the source's chunks too
    Catalog(bucket).drop(SOURCE)
    assert read(bucket, tmp_path, FORK) == b"aaaabbbb"
    Catalog(bucket).drop(FORK)
    assert read(bucket, tmp_path, "f2") == b"aaaabbbb"
    commit(bucket, tmp_path, b"zzzzyyyy")  # the source's name made again: its collector keeps f2's chunks
    aged()
    collect(bucket)
    aged()
    collect(bucket)
    assert read(bucket, tmp_path, "f2") == b"aaaabbbb"


def test_fork_through_the_client_with_history_and_databases_saying_where_it_came_from(
        client: Client, serving: Worker) -> None:
    client.query("shop", "CREATE TABLE t (a INTEGER)")
    client.query("shop", "INSERT INTO t VALUES (1), (2)")
    client.query("shop", "INSERT INTO t VALUES (3)")
    made = client.fork("shop", "shop-dev", as_of=2)
    assert made.forked_from == {"database": "shop", "version": 2}
    assert client.query("shop-dev", "SELECT sum(a) FROM t").values() == [[3]]
    client.query("shop-dev", "INSERT INTO t VALUES (100)")
    assert client.query("shop-dev", "SELECT sum(a) FROM t").values() == [[103]]
    assert client.query("shop", "SELECT sum(a) FROM t").values() == [[6]]
    assert {d.name: d.forked_from for d in client.databases()} == {"shop": None, "shop-dev": "shop@2"}
    assert client.history("shop-dev")[-1].labels == ["fork of shop at version 2"]


def test_the_worker_reads_and_writes_a_fork_from_a_cold_cache(client: Client, settings: Settings, aws: Any,
                                                              drain: Callable[..., int]) -> None:
    client.submit("src", "CREATE TABLE t (a TEXT)")
    client.submit_many("src", "INSERT INTO t VALUES (?)", [[str(i) * 200] for i in range(3000)])
    drain()
    client.fork("src", "dst")
    cold = Worker(settings.replace(cache_dir=str(Path(settings.cache_dir) / "cold")), aws.s3, aws.sqs, aws.ec2)
    job = client.submit("dst", "SELECT count(*) FROM t")
    drain(cold)
    assert client.wait(job, 5).values() == [[3000]]
    cold.close()


async def test_the_async_client_forks_pulls_and_pushes(settings: Settings, client: Client, serving: Worker,
                                                       tmp_path: Path) -> None:
    from producer.aio import AsyncClient

    client.query("a", "CREATE TABLE t (n INTEGER)")
    client.query("a", "INSERT INTO t VALUES (7)")
    async with AsyncClient(settings) as aio:
        made = await aio.fork("a", "b", as_of=1)
        assert made.forked_from == {"database": "a", "version": 1}
        pulled = await aio.pull("a", tmp_path / "a.sqlite")
        assert pulled.version == 2
        pushed = await aio.push(tmp_path / "a.sqlite", "c")
        assert pushed.version == 1
    assert client.query("b", "SELECT count(*) FROM t").values() == [[0]]
    assert client.query("c", "SELECT n FROM t").values() == [[7]]


def test_a_dropped_sources_chunks_go_once_no_fork_names_them(bucket: Bucket, tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"aaaabbbb")
    fork(bucket, SOURCE, FORK)
    with store(bucket, tmp_path).writer(FORK) as writer:  # the fork moves on from bbbb
        writer.path.write_bytes(b"aaaaffff")
        writer.commit([])
    Catalog(bucket).drop(SOURCE)  # its chunks stay: the fork names them
    for _ in range(3):  # the fork's pass expires its version 1; the source's trashes bbbb, then purges it
        aged()
        collect(bucket)
    assert names(bucket, chunks_prefix(SOURCE)) == {digest(b"aaaa")} and names(bucket, trash_prefix(SOURCE)) == set()
    assert read(bucket, tmp_path, FORK) == b"aaaaffff"
    Catalog(bucket).drop(FORK)
    for _ in range(3):  # no fork is left: everything of the source goes, markers and ledger too
        aged()
        collect(bucket)
    assert list(bucket.list(database_prefix(SOURCE))) == []


def test_a_fork_being_made_of_a_fork_holds_the_dropped_sources_collector(bucket: Bucket, tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"aaaabbbb")
    fork(bucket, SOURCE, FORK)
    with store(bucket, tmp_path).writer(FORK) as writer:
        writer.path.write_bytes(b"aaaaffff")
        writer.commit([])
    Catalog(bucket).drop(SOURCE)
    aged()
    # A fork of the fork's version 1 (which names bbbb) is being made: its marker is in the source already,
    # its manifest not yet. The fork's own pass then expires that version; the source's must still free nothing.
    bucket.put(fork_marker_key(SOURCE, "f3"), b"{}")
    passes = collector(bucket)
    passes.collect_database(FORK, GcReport())
    passes.collect_database(SOURCE, GcReport())
    assert names(bucket, chunks_prefix(SOURCE)) == {digest(b"aaaa"), digest(b"bbbb")}
