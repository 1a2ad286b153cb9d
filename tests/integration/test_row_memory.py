"""Result rows in a worker's memory: measured and reserved before they are encoded, all jobs together
(worker/memory.py), so concurrent big rows wait their turn and a row no worker can hold fails alone."""

from __future__ import annotations

from typing import Any

import pytest

from producer.client import Client
from shared.errors import MemoryLimit, Timeout
from shared.job.model import Job
from shared.job.result import JobState
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch
from worker.memory import ENCODING_FACTOR, RowMemory

from ..conftest import queued, sqs_event

MIB = 1024 * 1024


def test_big_rows_of_concurrent_jobs_take_turns_and_one_too_big_fails_alone(settings: Settings, aws: Any) -> None:
    """Six reads of a 3 MiB blob (about 8 MiB each while encoded) in one batch with 16 MiB for rows: at most
    two are encoded at once, every one succeeds; a 7 MiB blob (about 19 MiB) fails MemoryLimit naming the
    setting, beside them; so does the same row returned by a write, whose insert is not applied."""
    tight = settings.replace(row_memory=16 * MIB, read_concurrency=8)
    worker = Worker(tight, aws.s3, aws.sqs, aws.ec2)
    client = Client(tight, s3=aws.s3, sqs=aws.sqs)
    jobs = [Job.create("mem", "CREATE TABLE IF NOT EXISTS t (v)", job_id="create")]
    jobs += [Job.create("mem", f"SELECT zeroblob({3 * MIB}), {i}", job_id=f"fits-{i}") for i in range(6)]
    jobs += [Job.create("mem", f"SELECT zeroblob({7 * MIB})", job_id="too-big"),
             Job.create("mem", f"INSERT INTO t VALUES (zeroblob({7 * MIB})) RETURNING v", job_id="too-big-write"),
             Job.create("mem", "INSERT INTO t VALUES (1)", job_id="fine-write")]
    run_batch(worker, sqs_event(*(queued(aws.s3, tight.bucket, job) for job in jobs)))
    for i in range(6):
        result = client.wait(f"fits-{i}", 5)
        assert result.state is JobState.SUCCEEDED, result.error
        assert list(client.results(f"fits-{i}", 5)) == [[bytes(3 * MIB), i]]
    for job_id in ("too-big", "too-big-write"):
        error = client.wait(job_id, 5).error
        assert error is not None and error["type"] == "MemoryLimit" and "SRDB_ROW_MEMORY" in error["message"], error
    assert client.wait("fine-write", 5).state is JobState.SUCCEEDED
    count = Job.create("mem", "SELECT count(*), max(length(v)) FROM t", job_id="count")
    run_batch(worker, sqs_event(queued(aws.s3, tight.bucket, count)))
    assert client.wait("count", 5).values() == [[1, 1]]  # the fine write's row only
    assert 0 < worker.memory.peak <= 16 * MIB and worker.memory.used == 0


def test_a_reservation_waits_only_while_others_hold_memory_and_never_past_its_deadline() -> None:
    memory = RowMemory(10 * MIB)
    assert memory.try_take(6 * MIB) and not memory.try_take(6 * MIB)
    with pytest.raises(Timeout, match="waiting for other jobs' results"):
        memory.take(6 * MIB, deadline=0.0)  # already past: no wait at all
    memory.give(6 * MIB)
    memory.take(6 * MIB, deadline=0.0)  # free now: taken without waiting, whatever the deadline
    assert (memory.used, memory.peak) == (6 * MIB, 6 * MIB)
    with pytest.raises(MemoryLimit, match="more than a worker can hold"):
        memory.try_take(10 * MIB + ENCODING_FACTOR)
