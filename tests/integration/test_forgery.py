"""Messages that prove no job — a forged claim check, a copy through another queue, a replaced payload — never
write that job's document: the job stays runnable by its real message. A status read that fails is retried,
never a reason to drop a message."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from producer.client import Client
from shared.job.model import Job
from shared.job.result import JobState
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

from ..conftest import queued, sqs_event
from ..faults import FaultyClient
from .test_grants import second_queue


def claim_checked(client: Client, database: str, job_id: str) -> str:
    """A job too big and too random for a message: it travels by claim check."""
    return client.submit(database, "SELECT length('" + os.urandom(300_000).hex() + "')", job_id=job_id)


def through(queue_arn: str, *bodies: str) -> dict[str, Any]:
    event = sqs_event(*bodies)
    for record in event["Records"]:
        record["eventSourceARN"] = queue_arn
    return event


def arn_of(aws: Any, url: str) -> str:
    return str(aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def test_a_forged_claim_check_from_another_queue_never_touches_the_victims_job(
        client: Client, worker: Worker, aws: Any, settings: Settings, drain: Callable[..., int]) -> None:
    rogue = arn_of(aws, second_queue(aws, settings, "rogue"))  # in no access group
    client.grant("writers", database="*", access="write", queue=settings.queue_url)
    victim = claim_checked(client, "shop", "order-7")
    digest = client.status(victim).job_digest
    forged = [json.dumps({"claim_check": f"jobs/{victim}/payload.json", "job_id": victim}),
              json.dumps({"claim_check": f"jobs/{victim}/payload.json", "job_id": victim, "digest": digest})]
    innocent = client.submit("shop", "SELECT 1", job_id="innocent")
    body = json.dumps(Job.create("shop", "SELECT 2", job_id="rogue-own").to_json())
    assert run_batch(worker, through(rogue, *forged, body)) == {"batchItemFailures": []}
    assert worker.last_stats.dropped == 2
    assert client.status(victim).state is JobState.QUEUED
    assert (client.status("rogue-own").error or {}).get("type") == "InvalidJob"  # no QUEUED document of its own
    drain()
    assert client.wait(victim, 5).values() == [[600_000]]
    assert client.wait(innocent, 5).values() == [[1]]


def test_a_claim_check_that_carries_no_proof_is_dropped_and_the_real_one_still_runs(
        client: Client, worker: Worker, aws: Any, settings: Settings, drain: Callable[..., int]) -> None:
    victim = claim_checked(client, "shop", "order-8")
    payload = aws.s3.get_object(Bucket=settings.bucket, Key=f"jobs/{victim}/payload.json")["Body"].read()
    aws.s3.delete_object(Bucket=settings.bucket, Key=f"jobs/{victim}/payload.json")
    forged = json.dumps({"claim_check": f"jobs/{victim}/payload.json", "job_id": victim})
    wrong = json.dumps({"claim_check": f"jobs/{victim}/payload.json", "job_id": victim, "digest": "0" * 64})
    assert run_batch(worker, sqs_event(forged, wrong)) == {"batchItemFailures": []}
    assert worker.last_stats.dropped == 2
    assert client.status(victim).state is JobState.QUEUED
    aws.s3.put_object(Bucket=settings.bucket, Key=f"jobs/{victim}/payload.json", Body=payload)
    drain()
    assert client.wait(victim, 5).values() == [[600_000]]


def test_a_payload_replaced_by_another_client_fails_its_job_saying_so(
        client: Client, worker: Worker, aws: Any, settings: Settings, drain: Callable[..., int]) -> None:
    victim = claim_checked(client, "shop", "order-9")
    other = Job.create("shop", "SELECT 'not yours'", job_id=victim)
    aws.s3.put_object(Bucket=settings.bucket, Key=f"jobs/{victim}/payload.json", Body=other.to_text().encode())
    innocent = client.submit("shop", "SELECT 1", job_id="innocent-9")
    drain()
    error = client.wait(victim, 5).error or {}
    assert error.get("type") == "InvalidJob" and "was replaced" in error.get("message", ""), error
    assert client.wait(innocent, 5).values() == [[1]]


def test_a_status_read_that_fails_is_retried_never_dropped(
        client: Client, aws: Any, settings: Settings) -> None:
    s3 = FaultyClient(aws.s3)
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    try:
        job = Job.create("shop", "SELECT 3", job_id="flaky")
        body = queued(aws.s3, settings.bucket, job)
        s3.fail("get_object", code="InternalError", when=lambda kw: kw.get("Key") == "results/flaky.json")
        assert run_batch(worker, sqs_event(body)) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
        assert client.status("flaky").state is JobState.QUEUED
        assert run_batch(worker, sqs_event(body)) == {"batchItemFailures": []}
        assert client.status("flaky").values() == [[3]]
    finally:
        worker.close()
