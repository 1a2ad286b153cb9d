"""A FIFO job queue (shared/job/routing.py): a database's writes are one message group, so SQS never
gives two workers its writes at once and no worker takes a lock for them; reads are groups of their own.
Every job still runs once, hand-backs and redrives still reach the queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from producer.cli.dlq import DeadLetters
from producer.client import Client
from producer.local.poller import Poller
from producer.local.stack import create_resources
from shared.clients import client_kwargs
from shared.job.model import Job
from shared.job.result import JobState
from shared.job.routing import message_group, routing
from shared.lock.security_group import lock_groups
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

from ..conftest import until


@pytest.fixture
def fifo(moto_endpoint: str, tmp_path: Path) -> Settings:
    made = create_resources(moto_endpoint, visibility_timeout=30, lock_ttl=30, prefix=f"fifo{id(tmp_path)}",
                            bucket=f"srdb-fifo-{id(tmp_path)}", fifo=True)
    return made.replace(cache_dir=str(tmp_path / "cache"), lock_wait=5.0, job_timeout=5.0, lock_linger=1.0)


@pytest.fixture
def clients(fifo: Settings) -> Any:
    kwargs = client_kwargs(fifo)
    return {name: boto3.client(name, **kwargs) for name in ("s3", "sqs", "ec2")}


@pytest.fixture
def workers(fifo: Settings, clients: Any, tmp_path: Path) -> Iterator[list[Worker]]:
    made = [Worker(fifo.replace(cache_dir=str(tmp_path / f"cache-{i}")), clients["s3"], clients["sqs"],
                   clients["ec2"]) for i in range(3)]
    yield made
    for worker in made:
        worker.close()


def serve(fifo: Settings, clients: Any, workers: list[Worker], stop: threading.Event) -> list[threading.Thread]:
    """Each worker polls the queue in a thread of its own, as Lambda's containers would."""
    threads = [threading.Thread(target=Poller(clients["sqs"], fifo.queue_url,
                                              lambda event, ctx, w=w: run_batch(w, event), region=fifo.region,
                                              wait_seconds=1, stop=stop).run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    return threads


def test_writes_are_grouped_by_database_and_reads_by_themselves() -> None:
    write = Job.create("shop", "INSERT INTO t VALUES (1)")
    read = Job.create("shop", "SELECT * FROM t")
    as_of = Job.create("shop", "SELECT 1", as_of=3)
    assert (message_group(write), message_group(read), message_group(as_of)) == ("shop", read.job_id, as_of.job_id)
    first, again = routing("https://sqs/123/q.fifo", write), routing("https://sqs/123/q.fifo", write)
    assert first["MessageGroupId"] == "shop" and first["MessageDeduplicationId"] != again["MessageDeduplicationId"]
    assert routing("https://sqs/123/q", write) == {}  # a standard queue: no group, writes take the lock
    assert message_group(Job.create("shop", "SELECT 1; SELECT 2")) == "shop"  # refused by the worker, as a write


@pytest.mark.slow
def test_three_workers_on_a_fifo_queue_run_every_job_once_and_take_no_lock(
        fifo: Settings, clients: Any, workers: list[Worker]) -> None:
    client = Client(fifo, s3=clients["s3"], sqs=clients["sqs"])
    names = [f"db{i}" for i in range(4)]
    stop = threading.Event()
    threads = serve(fifo, clients, workers, stop)
    try:
        # On SQS a group's order holds, so an INSERT sent after its CREATE runs after it; moto's FIFO lets two
        # receivers take one group now and then, so the tables are made first.
        for name in names:
            client.query(name, "CREATE TABLE t (n INTEGER)", timeout=60)
        writes = [client.submit(names[i % 4], "INSERT INTO t VALUES (?)", [i]) for i in range(40)]
        results = [client.wait(job_id, 60) for job_id in writes]
        reads = [client.submit(names[i % 4], "SELECT count(*) FROM t") for i in range(8)]
        results += [client.wait(job_id, 60) for job_id in reads]
        assert {r.state for r in results} == {JobState.SUCCEEDED}, [r.error for r in results if r.error]
        counts = {name: client.query(name, "SELECT count(*), sum(n) FROM t", timeout=60).values() for name in names}
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert counts == {names[d]: [[10, sum(range(d, 40, 4))]] for d in range(4)}  # each write exactly once
    assert lock_groups(clients["ec2"], fifo.vpc_id) == []  # no lock was ever taken
    assert all(not w.locks.kept() for w in workers)


@pytest.mark.slow
def test_a_job_handed_back_on_a_fifo_queue_comes_round_again(fifo: Settings, clients: Any,
                                                             workers: list[Worker]) -> None:
    """A FIFO queue takes no DelaySeconds per message: the copy goes back with its group instead."""
    client = Client(fifo, s3=clients["s3"], sqs=clients["sqs"])
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    tight = workers[0]
    tight.settings = tight.settings.replace(worker_timeout=2.0)
    slow = [client.submit_job(Job.create("h", statements=[("CREATE TABLE IF NOT EXISTS t (a)", None),
                                                          (runaway, None)], timeout=1.0)) for _ in range(3)]
    innocent = client.submit("h", "CREATE TABLE IF NOT EXISTS u (a)", job_id="innocent-fifo")
    poller = Poller(clients["sqs"], fifo.queue_url, lambda event, ctx: run_batch(tight, event),
                    region=fifo.region, wait_seconds=0)

    def settled() -> bool:
        poller.poll_once()
        return all(client.status(j).state.final for j in [*slow, innocent])

    until(settled, 60)
    assert client.status(innocent).state is JobState.SUCCEEDED
    assert {client.status(j).error["type"] for j in slow} == {"Timeout"}  # type: ignore[index]


def test_a_dead_letter_goes_back_to_a_fifo_queue_in_its_group(fifo: Settings, clients: Any,
                                                              workers: list[Worker]) -> None:
    client = Client(fifo, s3=clients["s3"], sqs=clients["sqs"])
    job_id = client.submit("dl", "CREATE TABLE t (a)")
    sqs = clients["sqs"]
    message = sqs.receive_message(QueueUrl=fifo.queue_url, MessageSystemAttributeNames=["All"])["Messages"][0]
    assert message["Attributes"]["MessageGroupId"] == "dl"
    sqs.send_message(QueueUrl=fifo.dlq_url, MessageBody=message["Body"], MessageGroupId="dl",
                     MessageDeduplicationId="moved-by-hand")  # as SQS would move it after its deliveries
    sqs.delete_message(QueueUrl=fifo.queue_url, ReceiptHandle=message["ReceiptHandle"])
    letters = DeadLetters(sqs, client.store, fifo.queue_url, fifo.dlq_url)
    assert letters.redrive() == [job_id]
    poller = Poller(sqs, fifo.queue_url, lambda event, ctx: run_batch(workers[0], event), region=fifo.region,
                    wait_seconds=0)
    until(lambda: poller.poll_once() or client.status(job_id).state.final, 30)
    assert client.status(job_id).state is JobState.SUCCEEDED


class Pauses(threading.Event):
    """The poller's stop event, recording each pause it is asked for and returning at once."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(timeout or 0.0)
        return False


def test_a_poller_that_keeps_finding_nothing_asks_less_often_and_soon_again_after_a_batch(
        fifo: Settings, clients: Any) -> None:
    """Idle short polls of a FIFO queue back off (0.1 s doubling to 0.4 s) and start again at 0.1 s after a batch:
    a worker whose group another has taken does not keep asking every 0.1 s, and the one that ran a batch asks
    again soon, so a busy group tends to stay with it."""
    pauses = Pauses()
    poller = Poller(clients["sqs"], fifo.queue_url, lambda event, ctx: {"batchItemFailures": []},
                    region=fifo.region, wait_seconds=1, stop=pauses)
    for _ in range(4):
        assert poller.poll_once() == 0
    Client(fifo, s3=clients["s3"], sqs=clients["sqs"]).submit("idle", "CREATE TABLE t (a)")
    assert poller.poll_once() == 1
    assert poller.poll_once() == 0
    assert pauses.asked == [0.1, 0.2, 0.4, 0.4, 0.1]
