"""The Python API: submit, status, wait, results, cancel; sync on boto3 and async on aioboto3."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from producer.aio import AsyncClient
from producer.client import Client
from shared.errors import ClientSideError, InvalidJob, JobFailed, JobNotFound, WaitTimeout
from shared.job.model import Job
from shared.job.result import JobState
from shared.settings import Settings


def test_an_unknown_job_is_not_found(client: Client) -> None:
    assert client.status("01NEVERSUBMITTED").state is JobState.NOT_FOUND
    with pytest.raises(JobNotFound):
        client.wait("01NEVERSUBMITTED", 1)


def test_a_new_job_is_queued_until_a_worker_runs_it(settings: Settings, aws: Any) -> None:
    clock = {"t": 0.0}

    def sleep(seconds: float) -> None:
        clock["t"] += seconds

    client = Client(settings, s3=aws.s3, sqs=aws.sqs, sleep=sleep, clock=lambda: clock["t"])
    job_id = client.submit("q", "SELECT 1")
    assert client.status(job_id).state is JobState.QUEUED
    with pytest.raises(WaitTimeout, match="still QUEUED after 5s"):
        client.wait(job_id, 5)
    assert clock["t"] <= 5


def test_a_client_job_id_is_an_idempotency_token(client: Client, settings: Settings, aws: Any,
                                                  drain: Callable[..., int]) -> None:
    client.submit("i", "CREATE TABLE t (a)", job_id="create-t")
    assert client.submit("i", "CREATE TABLE t (a)", job_id="create-t") == "create-t"
    drain()
    assert client.wait("create-t", 5).state is JobState.SUCCEEDED
    assert client.submit("i", "CREATE TABLE t (a)", job_id="create-t") == "create-t"
    with pytest.raises(ClientSideError, match="already used for a different job"):
        client.submit("i", "DROP TABLE t", job_id="create-t")


def test_invalid_jobs_are_refused_before_they_are_sent(client: Client) -> None:
    with pytest.raises(InvalidJob, match="database name"):
        client.submit("Not A Name", "SELECT 1")
    with pytest.raises(InvalidJob, match="job id"):
        client.submit("ok", "SELECT 1", job_id="../x")


def test_query_raises_the_job_error(client: Client, settings: Settings, aws: Any,
                                    drain: Callable[..., int]) -> None:
    done = threading.Event()
    runner = threading.Thread(target=lambda: (drain_until(done, drain)))
    runner.start()
    try:
        with pytest.raises(JobFailed) as failed:
            client.query("e", "SELECT * FROM missing", timeout=10)
        assert failed.value.error["type"] == "SqlError"
        assert failed.value.error["message"] == "no such table: missing (database e has no version yet: no write has " \
                                                "created it)"
    finally:
        done.set()
        runner.join()


def drain_until(done: threading.Event, drain: Callable[..., int]) -> None:
    while not done.is_set():
        if not drain():
            done.wait(0.05)


@pytest.mark.slow
async def test_the_async_client_submits_and_awaits_many_jobs(settings: Settings, aws: Any,
                                                             drain: Callable[..., int]) -> None:
    async with AsyncClient(settings) as client:
        create = await client.submit("a", "CREATE TABLE t (a INTEGER)")
        inserts = await asyncio.gather(*(client.submit("a", "INSERT INTO t VALUES (?)", [i]) for i in range(40)))
        await asyncio.to_thread(drain)
        assert (await client.wait(create, 5)).state is JobState.SUCCEEDED
        results = await asyncio.gather(*(client.wait(j, 5) for j in inserts))
        assert {r.state for r in results} == {JobState.SUCCEEDED}
        read = await client.submit("a", "SELECT sum(a) FROM t")
        await asyncio.to_thread(drain)
        assert [row async for row in client.results(read, 5)] == [[sum(range(40))]]
        assert (await client.status("nope")).state is JobState.NOT_FOUND
        queued = await client.submit("a", "SELECT 1")
        assert await client.cancel(queued) is JobState.CANCELLED


def test_the_async_client_has_every_call_of_the_sync_client() -> None:
    public = {name for name in dir(Client) if not name.startswith("_")}
    assert public <= {name for name in dir(AsyncClient) if not name.startswith("_")}


async def test_the_async_client_reports_slow_waits_and_reads_history(settings: Settings,
                                                                      drain: Callable[..., int]) -> None:
    slow: list[JobState] = []
    async with AsyncClient(settings) as client:
        job_id = await client.submit("ah", "CREATE TABLE t (a)")
        with pytest.raises(WaitTimeout):
            await client.wait(job_id, 1.0, on_slow=lambda r: slow.append(r.state), slow_after=0.1)
        assert slow and set(slow) == {JobState.QUEUED}
        drain()
        assert (await client.wait(job_id, 5)).state is JobState.SUCCEEDED
        [current] = await client.history("ah")
        assert current.version == 1
        restored = await client.restore("ah", 1)
        assert (restored.version, restored.restored_from) == (2, 1)


class CountingSQS:
    """Counts the SQS calls made through it (a real client underneath)."""

    def __init__(self, sqs: Any) -> None:
        self.sqs, self.calls = sqs, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self.sqs, name)


def test_many_jobs_are_sent_ten_to_a_request(settings: Settings, aws: Any, drain: Callable[..., int]) -> None:
    sqs = CountingSQS(aws.sqs)
    client = Client(settings, s3=aws.s3, sqs=sqs)
    made = client.submit("bulk", "CREATE TABLE t (a)")
    drain()
    assert client.wait(made, 5).state is JobState.SUCCEEDED
    sqs.calls.clear()
    jobs = [Job.create("bulk", "INSERT INTO t VALUES (?)", [i]) for i in range(25)]
    ids = client.submit_jobs(jobs)
    assert ids == [j.job_id for j in jobs]
    assert sqs.calls == Counter({"send_message_batch": 3})  # 25 jobs, three requests
    assert client.submit_jobs(jobs[:3]) == [j.job_id for j in jobs[:3]]  # already queued: nothing sent twice
    assert sqs.calls["send_message_batch"] == 4
    drain()
    count = client.submit("bulk", "SELECT count(*) FROM t")
    drain()
    assert client.wait(count, 5).values() == [[25]]


async def test_the_async_client_sends_many_jobs_in_batches_too(settings: Settings, drain: Callable[..., int]) -> None:
    async with AsyncClient(settings) as client:
        ids = await client.submit_jobs([Job.create("abulk", "SELECT ?", [i]) for i in range(12)])
        drain()
        assert [(await client.wait(i, 5)).values() for i in ids] == [[[i]] for i in range(12)]
