"""Random interleavings of jobs over several workers compared with a sequential model."""

from __future__ import annotations

import itertools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from producer.client import Client
from producer.local.poller import Poller
from shared.job.model import Job
from shared.job.result import JobState
from shared.settings import Settings
from worker.batch import Record, Worker
from worker.handler import run_batch

from ..conftest import queued, until

_databases = itertools.count(1)
UPSERT = "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = v + excluded.v"

# A job: add delta to key, or a job that fails (a CHECK constraint) and must change nothing.
job_spec = st.one_of(
    st.tuples(st.just("add"), st.sampled_from("abcd"), st.integers(-5, 5)),
    st.tuples(st.just("fail"), st.sampled_from("abcd"), st.just(0)),
)
plan = st.lists(
    st.tuples(job_spec, st.integers(0, 2), st.booleans()),  # (job, which worker, delivered twice)
    min_size=1, max_size=25,
)


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plan, batch_size=st.integers(1, 6), parallel=st.booleans())
@pytest.mark.slow
def test_any_interleaving_matches_the_sequential_model(settings: Settings, aws: Any, tmp_path: Path,
                                                       plan: list[Any], batch_size: int, parallel: bool) -> None:
    database = f"prop{next(_databases)}"
    workers = [Worker(settings.replace(cache_dir=str(tmp_path / f"w{i}"), lock_wait=30), aws.s3, aws.sqs, aws.ec2)
               for i in range(3)]
    client = Client(settings, s3=aws.s3, sqs=aws.sqs)
    assert workers[0].process([Record("setup", queued(aws.s3, settings.bucket, Job.create(database, statements=[
        ("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL CHECK (v > -1000))", None),
        ("CREATE TABLE log (job_id TEXT)", None)])))]) == []

    # Deliveries come through the job queue: a database another worker holds past the hand-off goes back
    # there as a new message (worker/handback.py), which the drain below runs.
    arn = aws.sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    model: Counter[str] = Counter()
    deliveries: dict[int, list[Record]] = {0: [], 1: [], 2: []}
    for index, ((kind, key, delta), worker, twice) in enumerate(plan):
        job_id = f"{database}-{index}"
        if kind == "add":
            job = Job.create(database, statements=[(UPSERT, [key, delta]),
                                                   ("INSERT INTO log VALUES (?)", [job_id])], job_id=job_id)
            model[key] += delta
        else:
            job = Job.create(database, statements=[("INSERT INTO log VALUES (?)", [job_id]),
                                                   ("UPDATE kv SET v = -5000 WHERE k = ?", [key]),
                                                   (UPSERT, [key, -5000])], job_id=job_id)
        body = queued(aws.s3, settings.bucket, job)
        deliveries[worker].append(Record(f"m{index}", body, source=arn))
        if twice:
            deliveries[(worker + 1) % 3].append(Record(f"m{index}-again", body, source=arn))

    def run(worker: int) -> list[str]:
        records = deliveries[worker]
        retry = []
        for start in range(0, len(records), batch_size):
            retry += workers[worker].process(records[start:start + batch_size])
        return retry

    with ThreadPoolExecutor(3 if parallel else 1) as pool:
        assert [r for retries in pool.map(run, range(3)) for r in retries] == []
    poller = Poller(aws.sqs, settings.queue_url, lambda event, ctx: run_batch(workers[0], event),
                    region=settings.region, wait_seconds=1)
    until(lambda: poller.poll_once() >= 0 and all(  # the hand-backs, delayed a second each
        client.status(f"{database}-{i}").state.final for i in range(len(plan))), 60)

    reader = Worker(settings.replace(cache_dir=str(tmp_path / "reader")), aws.s3, aws.sqs, aws.ec2)
    read = Job.create(database, statements=[("SELECT k, v FROM kv WHERE v != 0 ORDER BY k", None)])
    log = Job.create(database, "SELECT job_id, count(*) FROM log GROUP BY job_id HAVING count(*) > 1")
    assert reader.process([Record("r", queued(aws.s3, settings.bucket, read)),
                           Record("l", queued(aws.s3, settings.bucket, log))]) == []
    assert client.status(read.job_id).values() == [[k, v] for k, v in sorted(model.items()) if v != 0]
    assert client.status(log.job_id).values() == []  # no job applied twice
    for index, ((kind, _, _), _, _) in enumerate(plan):
        expected = JobState.SUCCEEDED if kind == "add" else JobState.FAILED
        assert client.status(f"{database}-{index}").state is expected
