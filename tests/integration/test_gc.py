"""Garbage collection: the retention window, and each race content addressing invites.

The storage engine is driven directly with raw bytes and 4-byte chunks, so a test says exactly
which chunk each version names. S3 (moto) stamps objects to the whole second, so "older than the
grace period" is reached by letting the clock pass it (``aged``), never by patching time.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producer.client import Client
from reaper.gc import STAMP, Collector, GcReport
from reaper.reaper import Reaper
from shared.errors import VersionNotFound
from shared.job.keys import PAYLOADS_PREFIX, STAGING_PREFIX
from shared.s3 import Bucket
from shared.settings import Settings
from shared.snapshot.catalog import Catalog
from shared.snapshot.history import History
from shared.snapshot.keys import chunks_prefix, gc_state_key, manifest_key, trash_prefix
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import SnapshotStore
from tests.faults import FaultyClient

GRACE = 2.0
DB = "g"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bucket(settings: Settings, aws: Any) -> Bucket:
    return Bucket(aws.s3, settings.bucket)


def store(bucket: Bucket, root: Path) -> SnapshotStore:
    return SnapshotStore(bucket, root / uuid.uuid4().hex, chunk_size=4)


def commit(bucket: Bucket, root: Path, data: bytes) -> Manifest:
    with store(bucket, root).writer(DB) as writer:
        writer.path.write_bytes(data)
        committed = writer.commit([])
    assert committed.manifest is not None
    return committed.manifest


def cold_read(bucket: Bucket, root: Path) -> bytes:
    """The current version as a worker with an empty cache reads it."""
    return store(bucket, root).sync(DB).path.read_bytes()


def collector(bucket: Bucket, retention: float = 0.0) -> Collector:
    return Collector(bucket, retention=retention, grace=GRACE)


def collect(bucket: Bucket, retention: float = 0.0) -> GcReport:
    """A pass, run again while a database's pass stood down for having run a quarter of the grace (0.5 s
    here, which a loaded machine can take): what these tests check is what a pass does once it acts."""
    for _ in range(5):
        report = collector(bucket, retention).collect()
        if not report.stalled:
            break
    return report


def aged() -> None:
    """Let every object written so far grow older than the grace period on S3's whole-second clock
    (the collector adds a second to every stamp: gc.STAMP)."""
    until = int(time.time()) + GRACE + STAMP + 1.05
    while time.time() < until:
        time.sleep(0.05)


def names(bucket: Bucket, prefix: str) -> set[str]:
    return {key[len(prefix):] for key in bucket.list(prefix)}


def faulty_bucket(bucket: Bucket) -> tuple[Bucket, FaultyClient]:
    client = FaultyClient(bucket.s3)
    return Bucket(client, bucket.name), client


@pytest.mark.slow
def test_retention_zero_keeps_only_the_current_version_and_empties_the_trash(bucket: Bucket,
                                                                              tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"AAAABBBB")
    commit(bucket, tmp_path, b"AAAACCCC")
    commit(bucket, tmp_path, b"DDDDCCCC")
    aged()
    report = collect(bucket)
    assert (report.versions_deleted, report.chunks_trashed, report.trash_deleted) == (2, 2, 0)
    assert History(bucket).versions(DB) == [3]
    assert names(bucket, chunks_prefix(DB)) == {digest(b"CCCC"), digest(b"DDDD")}
    assert names(bucket, trash_prefix(DB)) == {digest(b"AAAA"), digest(b"BBBB")}
    assert cold_read(bucket, tmp_path) == b"DDDDCCCC"
    # the trash keeps what it got for a grace period (a long one: the test must not race the clock)
    assert Collector(bucket, retention=0, grace=3600).collect().trash_deleted == 0
    aged()
    report = collect(bucket)
    assert (report.trash_deleted, report.bytes_freed) == (2, 8)
    assert names(bucket, trash_prefix(DB)) == set()
    assert cold_read(bucket, tmp_path) == b"DDDDCCCC"


@pytest.mark.slow
def test_versions_inside_the_window_keep_their_chunks(bucket: Bucket, tmp_path: Path) -> None:
    commit(bucket, tmp_path, b"AAAA")
    commit(bucket, tmp_path, b"BBBB")
    aged()
    report = collect(bucket, retention=3600)
    assert (report.versions_deleted, report.chunks_trashed) == (0, 0)
    assert History(bucket).versions(DB) == [1, 2]
    assert names(bucket, chunks_prefix(DB)) == {digest(b"AAAA"), digest(b"BBBB")}


@pytest.mark.slow
def test_a_chunk_uploaded_by_a_commit_in_flight_is_left_alone(bucket: Bucket, tmp_path: Path) -> None:
    """The commit has uploaded its new chunk and not yet written the manifest that names it: the
    chunk is named by no version, and only its age (the grace period) tells the collector to wait."""
    commit(bucket, tmp_path, b"AAAA")
    commit(bucket, tmp_path, b"BBBB")
    aged()
    slow, client = faulty_bucket(bucket)
    reports: list[GcReport] = []
    client.fail("put_object", when=lambda kw: kw["Key"] == manifest_key(DB),
                before=lambda: reports.append(collect(bucket)))
    with store(slow, tmp_path).writer(DB) as writer:
        writer.path.write_bytes(b"CCCC")
        writer.commit([])
    assert reports[0].chunks_trashed == 1  # AAAA: only version 1 named it
    assert digest(b"CCCC") in names(bucket, chunks_prefix(DB))
    assert cold_read(bucket, tmp_path) == b"CCCC"


@pytest.mark.slow
def test_a_commit_that_names_a_collected_chunk_again_still_reads_it(bucket: Bucket, tmp_path: Path) -> None:
    """The collector listed AAAA as old and dead; before it moves it, a commit uploads AAAA again and
    names it. The move happens anyway: readers find it in the trash, and the next pass puts it back."""
    commit(bucket, tmp_path, b"AAAA")
    commit(bucket, tmp_path, b"BBBB")
    aged()
    slow, client = faulty_bucket(bucket)
    client.fail("put_object", when=lambda kw: kw["Key"] == gc_state_key(DB),
                before=lambda: commit(bucket, tmp_path, b"AAAA") and None)
    # The commit in between is the race under test, not a slow pass: it may take what a loaded machine takes.
    report = Collector(slow, retention=0, grace=GRACE, stall=60).collect()
    assert report.chunks_trashed == 1 and digest(b"AAAA") not in names(bucket, chunks_prefix(DB))
    assert cold_read(bucket, tmp_path) == b"AAAA"
    assert collect(bucket).chunks_restored == 1
    assert digest(b"AAAA") in names(bucket, chunks_prefix(DB))
    aged()
    collect(bucket)
    aged()
    collect(bucket)
    assert names(bucket, chunks_prefix(DB)) == {digest(b"AAAA")}
    assert cold_read(bucket, tmp_path) == b"AAAA"


@pytest.mark.slow
def test_a_restore_racing_the_collector_keeps_the_old_versions_chunks(bucket: Bucket, tmp_path: Path) -> None:
    """The restore has read version 1; the collector then expires it and collects its chunk; the
    restore commits version 4 naming that chunk. Nothing of version 4 may be lost."""
    commit(bucket, tmp_path, b"AAAA")
    commit(bucket, tmp_path, b"BBBB")
    commit(bucket, tmp_path, b"CCCC")
    aged()
    slow, client = faulty_bucket(bucket)
    reports: list[GcReport] = []
    client.fail("put_object", when=lambda kw: kw["Key"] == manifest_key(DB),
                before=lambda: reports.append(collect(bucket)))
    restored = History(slow).restore(DB, 1)
    assert restored.version == 4 and reports[0].versions_deleted == 2 and reports[0].chunks_trashed == 2
    assert cold_read(bucket, tmp_path) == b"AAAA"
    aged()
    report = collect(bucket)
    assert report.chunks_restored == 1 and report.trash_deleted == 1  # AAAA back; BBBB gone for good
    aged()
    collect(bucket)
    assert names(bucket, chunks_prefix(DB)) == {digest(b"AAAA")}
    assert names(bucket, trash_prefix(DB)) == set()
    assert cold_read(bucket, tmp_path) == b"AAAA"


@pytest.mark.slow
def test_a_pass_too_slow_to_act_leaves_its_work_to_the_next(bucket: Bucket, tmp_path: Path) -> None:
    """A pass that has run for a quarter of the grace when its ledger is written touches nothing; the next
    pass must still do what it planned. Here that is only the expiry of version 1 (its chunk is the current
    version's too), which no later time would make due by itself: without a commit, it had to happen now."""
    commit(bucket, tmp_path, b"AAAA")
    commit(bucket, tmp_path, b"AAAA")
    aged()
    slow, client = faulty_bucket(bucket)
    late = [0.0]  # how far the slow pass's clock is past the real one

    def stall() -> None:
        late[0] = GRACE  # S3 took that long to answer the ledger write

    client.fail("put_object", when=lambda kw: kw["Key"] == gc_state_key(DB), before=stall)
    report = Collector(slow, retention=0, grace=GRACE, now=lambda: time.time() + late[0]).collect()
    assert report.stalled == report.skipped == [DB] and report.versions_deleted == 0
    assert History(bucket).versions(DB) == [1, 2]
    assert collect(bucket).versions_deleted == 1
    assert History(bucket).versions(DB) == [2]
    assert cold_read(bucket, tmp_path) == b"AAAA"


@pytest.mark.slow
def test_two_collectors_at_once_one_acts(bucket: Bucket, tmp_path: Path) -> None:
    """Both read the same ledger; the one whose conditional ledger write loses deletes nothing."""
    commit(bucket, tmp_path, b"AAAA")
    commit(bucket, tmp_path, b"BBBB")
    collect(bucket, retention=3600)  # a ledger exists: both collectors read the same one
    aged()
    first, client = faulty_bucket(bucket)
    second: list[GcReport] = []
    client.fail("put_object", when=lambda kw: kw["Key"] == gc_state_key(DB),
                before=lambda: second.append(collect(bucket)))
    report = Collector(first, retention=0, grace=GRACE).collect()
    assert report.skipped == [DB] and (report.versions_deleted, report.chunks_trashed) == (0, 0)
    assert (second[0].versions_deleted, second[0].chunks_trashed) == (1, 1)
    assert cold_read(bucket, tmp_path) == b"BBBB"


@pytest.mark.slow
def test_a_ledger_counts_only_new_versions_and_a_bounded_pass_moves_nothing(bucket: Bucket,
                                                                           tmp_path: Path) -> None:
    for data in (b"AAAA", b"BBBB", b"CCCC", b"DDDD"):
        commit(bucket, tmp_path, data)
    aged()
    bounded = Collector(bucket, retention=3600, grace=GRACE, max_versions=1)
    report = bounded.collect()
    assert report.behind == [DB] and report.chunks_trashed == 0
    gets: list[str] = []

    def seen(kw: dict[str, Any]) -> bool:
        gets.append(kw["Key"])
        return False

    counting, client = faulty_bucket(bucket)
    client.fail("get_object", when=seen)
    Collector(counting, retention=3600, grace=GRACE).collect()
    # Version 1 was counted (it is read again only to check it is the same history); 4 is current.
    assert sorted(key.rsplit("/", 1)[1] for key in gets if "/versions/" in key) == [
        f"{v:012d}.json" for v in (1, 2, 3)]


@pytest.mark.slow
def test_a_ledger_left_from_a_dropped_database_is_not_trusted(bucket: Bucket, tmp_path: Path) -> None:
    """A collector that wrote its ledger just after a drop leaves one that names the old history;
    the database made again under the same name has versions it never counted."""
    commit(bucket, tmp_path, b"AAAA")
    commit(bucket, tmp_path, b"BBBB")
    collect(bucket, retention=3600)
    stale = bucket.get(gc_state_key(DB))
    assert stale is not None
    Catalog(bucket).drop(DB)
    bucket.put(gc_state_key(DB), stale.body)
    for data in (b"CCCC", b"DDDD", b"EEEE"):
        commit(bucket, tmp_path, data)
    aged()
    report = collect(bucket, retention=3600)
    assert (report.versions_deleted, report.chunks_trashed) == (0, 0)
    assert names(bucket, chunks_prefix(DB)) == {digest(b"CCCC"), digest(b"DDDD"), digest(b"EEEE")}


def test_old_payloads_and_staged_loads_are_collected(bucket: Bucket) -> None:
    bucket.put(f"{PAYLOADS_PREFIX}01J/payload.json", b"{}")
    bucket.put(f"{STAGING_PREFIX}01J/orders.csv", b"id\n1\n")
    assert Collector(bucket, retention=0, grace=GRACE).collect().payloads_deleted == 0
    later = time.time() + 15 * 24 * 3600
    assert Collector(bucket, retention=0, grace=GRACE, now=lambda: later).collect().payloads_deleted == 2
    assert list(bucket.list(PAYLOADS_PREFIX)) == list(bucket.list(STAGING_PREFIX)) == []


def test_time_travel_says_where_the_window_begins(client: Client, drain: Callable[..., int],
                                                  settings: Settings, aws: Any) -> None:
    for sql in ("CREATE TABLE t (n INTEGER)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"):
        client.submit(DB, sql)
        drain()
    created = client.history(DB)[-1].created_at
    report = Reaper.for_settings(settings.replace(retention="0"), ec2=aws.ec2, s3=aws.s3).run()
    assert report.gc is not None and report.gc.versions_deleted == 2
    assert [m.version for m in client.history(DB)] == [3]
    assert client.oldest(DB).version == 3
    with pytest.raises(VersionNotFound, match="version 1 of g is no longer retained: history begins at version 3"):
        client.restore(DB, 1)
    job = client.submit(DB, "SELECT count(*) FROM t", as_of=1)
    drain()
    assert "no longer retained" in str(client.wait(job, 5).error)
    job = client.submit(DB, "SELECT count(*) FROM t", as_of=time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime(created - 1)))
    drain()
    assert "before what g retains" in str(client.wait(job, 5).error)
    job = client.submit(DB, "SELECT count(*) FROM t")
    drain()
    assert list(client.results(job, 5)) == [[2]]
