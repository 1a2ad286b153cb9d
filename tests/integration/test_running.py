"""RUNNING, and cancel that stops: a job that runs long is shown RUNNING with its start time, a cancel
interrupts it within about a second, and a cancelled write leaves the database untouched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from producer.aio import AsyncClient
from producer.client import Client
from producer.core import cancel
from shared.job.result import JobResult, JobState
from shared.settings import Settings
from worker.batch import Worker

from ..conftest import until

# Runs until its budget ends (or a cancel interrupts it).
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.mark.slow
def test_a_long_job_is_shown_running_and_a_short_one_never_is(client: Client, serving: Worker) -> None:
    short = client.submit("run", "SELECT 1")
    long = client.submit("run", ENDLESS, timeout=3)
    running = until(lambda: (r := client.status(long)).state is JobState.RUNNING and r)
    assert running.started_at is not None and running.database == "run"
    assert client.wait(short, 10).state is JobState.SUCCEEDED
    done = client.wait(long, 20)
    assert done.state is JobState.FAILED and done.error is not None and done.error["type"] == "Timeout"
    assert done.started_at is not None
    assert client.status(short).started_at is not None  # the final document says when it started too


def test_cancelling_a_running_read_interrupts_it(client: Client, serving: Worker) -> None:
    job_id = client.submit("run", ENDLESS, timeout=20)
    until(lambda: client.status(job_id).state is JobState.RUNNING)
    assert client.cancel(job_id) is JobState.CANCELLED
    final = client.status(job_id)
    assert final.state is JobState.CANCELLED and final.finished_at is not None  # the worker said so
    # Interrupted by the cancel, not by its 20 s budget (that would be a Timeout).
    assert final.error is not None and final.error["type"] == "Cancelled"
    assert "while it ran" in final.error["message"]


@pytest.mark.slow
def test_cancelling_a_running_write_rolls_it_back(client: Client, serving: Worker) -> None:
    assert client.query("runw", "CREATE TABLE t (a)").state is JobState.SUCCEEDED
    job_id = client.submit_statements("runw", [("INSERT INTO t VALUES (1)", None),
                                               ("INSERT INTO t " + ENDLESS, None)], timeout=20)
    until(lambda: client.status(job_id).state is JobState.RUNNING)
    assert client.cancel(job_id) is JobState.CANCELLED
    assert client.query("runw", "SELECT count(*) FROM t").values() == [[0]]
    other = client.query("runw", "INSERT INTO t VALUES (2)")  # the database goes on
    assert other.state is JobState.SUCCEEDED
    assert client.query("runw", "SELECT a FROM t").values() == [[2]]


def test_a_cancel_after_the_job_ended_changes_nothing(client: Client, drain: Callable[..., int]) -> None:
    job_id = client.submit("runz", "CREATE TABLE t (a)")
    drain()
    assert client.cancel(job_id) is JobState.SUCCEEDED
    assert client.status(job_id).state is JobState.SUCCEEDED


def test_a_cancel_the_worker_never_answers_stands_when_its_message_comes_back(
        client: Client, settings: Settings, aws: Any, worker: Worker, drain: Callable[..., int]) -> None:
    """A worker that died mid-job never acknowledges the cancel: the cancel returns CANCELLED after its
    settle time, and the redelivered message does not run the job."""
    job_id = client.submit("runc", "CREATE TABLE t (a)")
    current, etag = client.store.get(job_id)
    assert current is not None
    current.state, current.started_at = JobState.RUNNING, "2026-01-01T00:00:00.000+00:00"
    client.store.put(current, if_match=etag)  # as a worker that then died would have left it
    assert client._run(cancel(job_id, settle=0.5)) is JobState.CANCELLED
    drain()
    assert client.status(job_id).state is JobState.CANCELLED
    read = client.submit("runc", "SELECT * FROM t")
    drain()
    failed = client.wait(read, 5)
    assert failed.error is not None and "no such table" in failed.error["message"]


@pytest.mark.slow
def test_the_dbapi_driver_and_the_async_client_show_running(client: Client, serving: Worker,
                                                            settings: Settings) -> None:
    from producer import dbapi

    seen: list[JobResult] = []
    conn = dbapi.connect("rundb", client=client, job_timeout=2, on_wait=seen.append)
    with pytest.raises(dbapi.OperationalError, match="budget"):  # Timeout: the job's own budget of 2 s
        conn.cursor().execute(ENDLESS)
    running = [r for r in seen if r.state is JobState.RUNNING]
    assert running and running[-1].started_at is not None

    async def waited() -> set[JobState]:
        states: set[JobState] = set()
        async with AsyncClient(settings) as aclient:
            job_id = await aclient.submit("rundb", ENDLESS, timeout=2)
            await aclient.wait(job_id, 20, on_slow=lambda r: states.add(r.state))
        return states

    assert JobState.RUNNING in asyncio.run(waited())
