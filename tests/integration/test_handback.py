"""A job that could not start because earlier jobs of its batch used the batch's time goes back to its
queue as a new message: others' long jobs never use up its deliveries nor send it to the dead-letter
queue. The copy carries the original sender, believed only from the worker itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from producer.client import Client
from producer.local.poller import Poller
from shared.job.model import Job
from shared.job.result import JobState
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

from ..conftest import until
from .test_grants import error_of, sent_by
from .test_isolation import setup

RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.mark.slow
def test_others_long_jobs_never_dead_letter_an_innocent_write(
        client: Client, settings: Settings, aws: Any, drain: Callable[..., int]) -> None:
    setup(client, drain, "slow", "CREATE TABLE t (a)")
    # Every delivery is the last one: a job left to SQS redelivery even once would be dead-lettered.
    tight = settings.replace(worker_timeout=2.0, max_receive_count=1)
    worker = Worker(tight, aws.s3, aws.sqs, aws.ec2)
    try:
        longs = [client.submit_job(Job.create("slow", statements=[("INSERT INTO t VALUES (1)", None),
                                                                  (RUNAWAY, None)], timeout=1.0)) for _ in range(3)]
        innocent = client.submit("slow", "INSERT INTO t VALUES (2)", job_id="innocent")
        other = client.submit("elsewhere", "CREATE TABLE e (a)", job_id="other")
        poller = Poller(aws.sqs, settings.queue_url, lambda event, ctx: run_batch(worker, event),
                        region=settings.region, wait_seconds=0)

        def settled() -> bool:
            poller.poll_once()
            return all(client.status(j).state.final for j in [*longs, innocent, other])

        until(settled, 60)
        assert client.status(innocent).rowcount == 1, client.status(innocent).error
        assert client.status(other).state is JobState.SUCCEEDED
        assert {(client.status(j).error or {}).get("type") for j in longs} == {"Timeout"}
    finally:
        worker.close()


def test_a_handed_back_copy_keeps_its_senders_grant_and_only_the_worker_can_vouch(
        settings: Settings, aws: Any, client: Client) -> None:
    arn = aws.sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    client.grant("etl", database="*", access="write", queue=arn, sender="AROAETL:*")
    worker = Worker(settings, aws.s3, aws.sqs, aws.ec2, own_sender=lambda: "AROAWORKER:srdb-worker")
    try:
        jobs = [client.submit("s", "CREATE TABLE t (n)"), client.submit("s", "SELECT 1")]
        # The worker's own copy vouches for the ETL role; a client's "copy" vouching for it is not believed.
        event = sent_by(aws, settings, jobs, ("AROAWORKER:srdb-worker", "AIDAINTRUDER"), {
            "srdb-handbacks": {"stringValue": "1", "dataType": "Number"},
            "srdb-sender": {"stringValue": "AROAETL:nightly", "dataType": "String"}})
        assert run_batch(worker, event) == {"batchItemFailures": []}
        assert client.wait(jobs[0], 5).state is JobState.SUCCEEDED
        assert "sender AIDAINTRUDER is not among the senders" in error_of(client, jobs[1])
    finally:
        worker.close()
