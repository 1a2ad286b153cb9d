"""Time travel: retained snapshots, reads as of a version or a time, and restore as a new version."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from producer.client import Client
from shared.errors import EXIT_UNAVAILABLE, JobFailed, StorageError, VersionNotFound
from shared.job.model import Job
from shared.job.result import JobState
from shared.settings import Settings
from tests.faults import FaultyClient
from worker.batch import Record, Worker

from ..conftest import queued


def write(client: Client, drain: Callable[..., int], sql: str) -> int:
    job_id = client.submit("h", sql)
    drain()
    result = client.wait(job_id, 5)
    assert result.state is JobState.SUCCEEDED, result.error
    assert result.version is not None
    return result.version


def read(client: Client, drain: Callable[..., int], sql: str, **kw: Any) -> list[list[Any]]:
    job_id = client.submit("h", sql, **kw)
    drain()
    return list(client.results(job_id, 5))


@pytest.fixture
def versions(client: Client, drain: Callable[..., int]) -> list[int]:
    made = [write(client, drain, "CREATE TABLE t (n INTEGER)")]
    for n in (1, 2, 3):
        made.append(write(client, drain, f"INSERT INTO t VALUES ({n})"))
    return made


def test_history_lists_the_retained_snapshots_newest_first(client: Client, versions: list[int]) -> None:
    history = client.history("h")
    assert [m.version for m in history] == versions[::-1]
    assert all(len(m.jobs) == 1 for m in history)
    assert history[0].file_size > 0 and history[0].created_at >= history[-1].created_at
    assert [m.version for m in client.history("h", limit=2)] == versions[:-3:-1]


def test_reads_as_of_a_version_or_a_time(client: Client, drain: Callable[..., int], versions: list[int]) -> None:
    assert read(client, drain, "SELECT n FROM t", as_of=versions[2]) == [[1], [2]]
    assert read(client, drain, "SELECT n FROM t", as_of=versions[0]) == []
    assert read(client, drain, "SELECT n FROM t") == [[1], [2], [3]]
    history = {m.version: m.created_at for m in client.history("h")}
    between = datetime.fromtimestamp((history[versions[1]] + history[versions[2]]) / 2, UTC)
    assert read(client, drain, "SELECT n FROM t", as_of=between) == [[1]]
    naive_utc = between.replace(tzinfo=None).isoformat()  # a time without a zone is UTC
    assert read(client, drain, "SELECT n FROM t", as_of=naive_utc) == [[1]]


def test_reads_as_of_what_never_existed_fail_clearly(client: Client, drain: Callable[..., int],
                                                     versions: list[int]) -> None:
    with pytest.raises(JobFailed, match=r"VersionNotFound: .*no version 99 yet"):
        read(client, drain, "SELECT n FROM t", as_of=99)
    with pytest.raises(JobFailed, match=r"VersionNotFound: .*did not exist yet at 2000-01-01"):
        read(client, drain, "SELECT n FROM t", as_of="2000-01-01T00:00:00+00:00")
    with pytest.raises(JobFailed, match="ReadOnlyViolation"):
        read(client, drain, "INSERT INTO t VALUES (9)", as_of=versions[1])


def test_restore_makes_an_old_version_current_as_a_new_one(client: Client, drain: Callable[..., int],
                                                          versions: list[int]) -> None:
    restored = client.restore("h", versions[1])
    assert restored.version == versions[-1] + 1 and restored.restored_from == versions[1]
    assert read(client, drain, "SELECT n FROM t") == [[1]]
    assert write(client, drain, "INSERT INTO t VALUES (4)") == restored.version + 1
    assert read(client, drain, "SELECT n FROM t") == [[1], [4]]
    # Nothing was overwritten: the versions after the restored one are still readable.
    assert read(client, drain, "SELECT n FROM t", as_of=versions[-1]) == [[1], [2], [3]]
    assert [m.restored_from for m in client.history("h", limit=2)] == [None, versions[1]]
    with pytest.raises(VersionNotFound):
        client.restore("h", 1000)


def test_a_writer_working_on_the_version_before_a_restore_applies_its_jobs_again(
        client: Client, settings: Settings, aws: Any, drain: Callable[..., int], versions: list[int]) -> None:
    s3 = FaultyClient(aws.s3)
    # The restore lands between the writer's sync and its commit: the writer's conditional PUT gets 412.
    s3.fail("put_object", when=lambda kw: kw["Key"].endswith("/manifest.json"),
            before=lambda: client.restore("h", versions[0]))
    writer = Worker(settings, s3, aws.sqs, aws.ec2)
    job_id = client.submit("h", "INSERT INTO t VALUES (5)")
    drain(writer)
    assert client.wait(job_id, 5).state is JobState.SUCCEEDED
    assert read(client, drain, "SELECT n FROM t") == [[5]]


async def test_the_async_client_reads_as_of_a_version(settings: Settings, drain: Callable[..., int],
                                                      versions: list[int]) -> None:
    from producer.aio import AsyncClient

    async with AsyncClient(settings) as aclient:
        job_id = await aclient.submit("h", "SELECT count(*) FROM t", as_of=versions[1])
        await asyncio.to_thread(drain)
        assert [row async for row in aclient.results(job_id, 5)] == [[1]]


def test_an_s3_outage_is_not_a_missing_database(settings: Settings, aws: Any, client: Client,
                                                versions: list[int]) -> None:
    s3 = FaultyClient(aws.s3)
    s3.fail("get_object", times=100, when=lambda kw: kw["Key"].endswith("manifest.json"))
    broken = Client(settings, s3=s3, sqs=aws.sqs)
    for call in (lambda: broken.history("h"), lambda: broken.restore("h", 1)):
        with pytest.raises(StorageError) as raised:
            call()
        assert raised.value.exit_code == EXIT_UNAVAILABLE
    assert len(client.history("h")) == len(versions)


def test_a_manifest_prints_short(client: Client, versions: list[int]) -> None:
    current = client.history("h", limit=1)[0]
    assert len(repr(current)) < 200 and "chunks=" in repr(current)


def test_a_message_delivered_twice_in_one_batch_is_named_in_its_versions_jobs(
        client: Client, settings: Settings, aws: Any, worker: Worker) -> None:
    job = Job.create("twice", "CREATE TABLE t (a)", job_id="twice-in-one-batch")
    body = queued(aws.s3, settings.bucket, job)
    assert worker.process([Record("m1", body), Record("m2", body)]) == []
    assert client.history("twice")[0].jobs == ["twice-in-one-batch"]
    assert client.status(job.job_id).state is JobState.SUCCEEDED


def test_a_history_entry_s3_refused_is_written_by_the_next_commit_or_the_collector(
        client: Client, settings: Settings, aws: Any) -> None:
    from reaper.gc import Collector
    from shared.s3 import Bucket
    from shared.snapshot.keys import version_key

    s3 = FaultyClient(aws.s3)
    for key in (version_key("hist2", 2), version_key("hist3", 1)):  # each refused once
        s3.fail("put_object", code="InternalError", when=lambda kw, key=key: kw.get("Key") == key)
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    try:
        jobs = [Job.create("hist2", "CREATE TABLE t (a)"), Job.create("hist2", "INSERT INTO t VALUES (1)")]
        for job in jobs:  # the second commit stands although its history entry was refused: no retry
            assert worker.process([Record(job.job_id, queued(aws.s3, settings.bucket, job))]) == []
            assert client.status(job.job_id).state is JobState.SUCCEEDED
        assert entries(aws, settings, "hist2") == [1]  # version 2 is current, its entry missing
        third = Job.create("hist2", "INSERT INTO t VALUES (2)")
        assert worker.process([Record(third.job_id, queued(aws.s3, settings.bucket, third))]) == []
        assert entries(aws, settings, "hist2") == [1, 2, 3]  # the next commit wrote it
        only = Job.create("hist3", "CREATE TABLE t (a)")
        assert worker.process([Record(only.job_id, queued(aws.s3, settings.bucket, only))]) == []
        assert entries(aws, settings, "hist3") == []
    finally:
        worker.close()
    Collector(Bucket(aws.s3, settings.bucket), retention=7 * 86400, grace=3600).collect()
    assert entries(aws, settings, "hist3") == [1]  # the collector wrote the current one's


def test_a_commits_history_entry_is_written_beside_its_results_and_before_the_batch_ends(
        client: Client, settings: Settings, aws: Any) -> None:
    """The entry is off the write's path (a round trip less before the result), yet written before the batch
    ends, so no later commit of the database comes before it. A FIFO queue's write: its database's next batch
    comes only after this one (a write that takes the lock settles its entries before giving the lock back)."""
    from shared.snapshot.keys import version_key

    s3 = FaultyClient(aws.s3)
    result_written = threading.Event()
    overlapped: list[bool] = []


    def slow_entry() -> None:  # waits for the result to be written, then takes half a second (a slow PUT)
        overlapped.append(result_written.wait(10))
        time.sleep(0.5)

    s3.fail("put_object", when=lambda kw: kw.get("Key") == version_key("beside", 1), before=slow_entry)
    s3.fail("put_object", when=lambda kw: str(kw.get("Key", "")).startswith("results/"), before=result_written.set)
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    try:
        job = Job.create("beside", "CREATE TABLE t (a)")
        fifo = f"arn:aws:sqs:{settings.region}:123456789012:srdb-jobs.fifo"
        assert worker.process([Record(job.job_id, queued(aws.s3, settings.bucket, job), source=fifo)]) == []
        assert entries(aws, settings, "beside") == [1]
    finally:
        worker.close()
    assert overlapped == [True]
    assert client.status(job.job_id).state is JobState.SUCCEEDED


def entries(aws: Any, settings: Settings, database: str) -> list[int]:
    listed = aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"db/{database}/versions/").get("Contents", [])
    return sorted(int(o["Key"].rsplit("/", 1)[1].removesuffix(".json")) for o in listed)


def test_history_jobs_and_status_say_what_each_job_was(client: Client, versions: list[int],
                                                       drain: Callable[..., int]) -> None:
    history = client.history("h")
    assert [m.labels for m in history] == [["INSERT INTO t VALUES (3)"], ["INSERT INTO t VALUES (2)"],
                                           ["INSERT INTO t VALUES (1)"], ["CREATE TABLE t (n INTEGER)"]]
    labelled = client.submit("h", "DELETE FROM t\n WHERE n = 1", label="drop the first row")
    script = client.submit_statements("h", [("\n  UPDATE t SET n = n * 10\n  WHERE n > 1", None),
                                            ("INSERT INTO t VALUES (" + "9" * 100 + ")", None)])
    assert client.status(labelled).label == "drop the first row"  # the QUEUED document says it already
    drain()
    assert client.wait(labelled, 5).label == "drop the first row"
    assert client.wait(script, 5).label == "UPDATE t SET n = n * 10 (+1 more)"
    recent = [label for m in client.history("h") if m.version > versions[-1] for label in m.labels]
    assert sorted(recent) == ["UPDATE t SET n = n * 10 (+1 more)", "drop the first row"]
    assert {r.job_id: r.label for r in client.jobs(limit=100)}[labelled] == "drop the first row"
