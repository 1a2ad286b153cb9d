"""Waiting through a wait queue (producer/waiter.py): the worker's callbacks say which jobs are done,
ten to a message batch, and each wait reads its job's document once instead of polling it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from producer.client import Client
from producer.local.poller import Poller
from shared.clients import client_kwargs
from shared.job.result import JobState
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

from ..faults import FaultyClient


def waiting_client(settings: Settings, aws: Any, check_every: float = 5.0) -> tuple[Client, list[str]]:
    """A client that waits on the callback queue, on an S3 client of its own that notes every status read."""
    s3 = boto3.client("s3", **client_kwargs(settings))
    reads: list[str] = []

    def note(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Key"].startswith("results/"):
            reads.append(params["Key"])

    s3.meta.events.register("before-parameter-build.s3.GetObject", note)
    client = Client(settings.replace(wait_queue_url=settings.callback_queue_url), s3=s3, sqs=aws.sqs)
    client.check_every = check_every
    return client, reads


def test_many_waits_share_the_queue_and_read_each_document_once(settings: Settings, aws: Any,
                                                               serving: Worker) -> None:
    client, reads = waiting_client(settings, aws)
    client.query("wq", "CREATE TABLE t (a INTEGER)")
    reads.clear()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: client.wait(client.submit("wq", "INSERT INTO t VALUES (?)", [n]), 60),
                                range(20)))
    assert {r.state for r in results} == {JobState.SUCCEEDED}
    assert len(reads) == 20  # one read of each document, no polling
    assert client.query("wq", "SELECT count(*) FROM t").values() == [[20]]


def test_a_forged_or_stale_signal_costs_a_read_never_the_result(settings: Settings, aws: Any,
                                                               drain: Any) -> None:
    client, reads = waiting_client(settings, aws, check_every=30)
    job_id = client.submit("wq", "SELECT 41 + 1")
    forged = {"job_id": job_id, "state": "SUCCEEDED", "columns": ["x"], "rows": [[666]]}
    for body in (json.dumps(forged), json.dumps({"job_id": "someone-else"}), "not json"):
        aws.sqs.send_message(QueueUrl=settings.callback_queue_url, MessageBody=body)
    with ThreadPoolExecutor(1) as pool:
        waited = pool.submit(client.wait, job_id, 60)
        drain()
        assert waited.result().values() == [[42]]  # the document, not what the message said
    assert reads.count(f"results/{job_id}.json") == 2  # the forged signal cost one read


def test_a_callback_the_worker_could_not_send_still_ends_the_wait(settings: Settings, aws: Any) -> None:
    sqs = FaultyClient(aws.sqs)
    sqs.fail("send_message_batch", code="AWS.SimpleQueueService.NonExistentQueue")
    worker = Worker(settings, aws.s3, sqs, aws.ec2)
    client, _ = waiting_client(settings, aws, check_every=0.5)
    job_id = client.submit("wq", "SELECT 7")
    Poller(aws.sqs, settings.queue_url, lambda e, c: run_batch(worker, e), region=settings.region,
           wait_seconds=1).poll_once()
    assert client.wait(job_id, 30).values() == [[7]]  # read from S3 at the next check
    worker.close()
