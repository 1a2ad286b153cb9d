"""Shared fixtures: one moto server on 127.0.0.1 for the session, fresh resources for each test."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from moto.server import ThreadedMotoServer

from producer.client import Client
from producer.local.poller import Poller
from producer.local.stack import create_resources, free_port
from producer.protocol import prepare
from shared.clients import client_kwargs
from shared.job.model import Job
from shared.job.status import StatusStore
from shared.s3 import Bucket
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

T = TypeVar("T")

_names = itertools.count(1)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def settings(moto_endpoint: str, tmp_path: Path) -> Settings:
    """A bucket, queues and VPC of this test's own, and a cache folder of its own."""
    n = next(_names)
    made = create_resources(moto_endpoint, visibility_timeout=30, lock_ttl=30, prefix=f"t{n}",
                            bucket=f"srdb-test-{n}")
    # A short linger: tests hand a database from one worker to another within a 5 s lock wait.
    return made.replace(cache_dir=str(tmp_path / "cache"), lock_wait=5.0, job_timeout=5.0, lock_linger=1.0)


@pytest.fixture
def aws(settings: Settings) -> Any:
    """Real boto3 clients on the moto server."""
    kwargs = client_kwargs(settings)

    class Clients:
        s3 = boto3.client("s3", **kwargs)
        sqs = boto3.client("sqs", **kwargs)
        ec2 = boto3.client("ec2", **kwargs)

    return Clients


@pytest.fixture
def worker(settings: Settings, aws: Any) -> Iterator[Worker]:
    worker = Worker(settings, aws.s3, aws.sqs, aws.ec2)
    yield worker
    worker.close()


@pytest.fixture
def client(settings: Settings, aws: Any) -> Client:
    return Client(settings, s3=aws.s3, sqs=aws.sqs)


@pytest.fixture
def drain(settings: Settings, aws: Any, worker: Worker) -> Callable[..., int]:
    """Feed the job queue to a worker, as the event source mapping does, until it is empty."""

    def run(target: Worker | None = None, *, max_batches: int = 1000) -> int:
        handler = target or worker
        poller = Poller(aws.sqs, settings.queue_url, lambda event, ctx: run_batch(handler, event),
                        region=settings.region, wait_seconds=0)
        batches = 0
        while batches < max_batches and poller.poll_once():
            batches += 1
        return batches

    return run


@pytest.fixture
def serving(settings: Settings, aws: Any, worker: Worker) -> Iterator[Worker]:
    """A worker polling the job queue in the background for the whole test, as the Lambda would."""
    with serve(settings, aws, worker):
        yield worker


@contextmanager
def serve(settings: Settings, aws: Any, worker: Worker) -> Iterator[Worker]:
    """``worker`` polling the job queue in the background while the block runs."""
    stop = threading.Event()
    poller = Poller(aws.sqs, settings.queue_url, lambda event, ctx: run_batch(worker, event),
                    region=settings.region, wait_seconds=1, stop=stop)
    thread = threading.Thread(target=poller.run, name="serving-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=10)


def queued(s3: Any, bucket: str, job: Job) -> str:
    """Write ``job``'s QUEUED document as a client does, and return its message body: the worker runs a
    message only as the job its QUEUED document names."""
    submission = prepare(job)
    store = StatusStore(Bucket(s3, bucket))
    store.put(submission.queued)
    if submission.payload is not None:
        store.put_payload(job.job_id, submission.payload)
    return submission.body


def sqs_event(*bodies: str) -> dict[str, Any]:
    """A Lambda SQS event holding these bodies, for calling a handler directly."""
    return {"Records": [{
        "messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1"} for i, body in enumerate(bodies)]}


def until(check: Callable[[], T], timeout: float = 30.0) -> T:
    """The first true value ``check`` gives, polling; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"still not true after {timeout:g}s: {check}")
