"""No write lost, none applied twice, whatever the infrastructure does (faults at the client boundary)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config

from producer.cli.dlq import DeadLetters
from producer.client import Client
from producer.local.poller import Poller
from shared.clients import client_kwargs
from shared.errors import EXIT_UNAVAILABLE, QueueError
from shared.job.model import Job
from shared.job.result import JobState
from shared.lock.security_group import SecurityGroupLock, lock_groups
from shared.settings import Settings
from worker.batch import Record, Worker
from worker.handler import run_batch

from ..conftest import queued, until
from ..faults import FaultyClient, ThrottledEC2, http_errors


def counter(client: Client, drain: Callable[..., int], holder: Worker, database: str = "c") -> None:
    """A counter at 0, made by ``holder`` (the worker ``drain`` feeds), which then lets go of the lock it kept: the
    test's own worker is the only writer, and never has to wait for an idle holder to hand the lock over."""
    client.submit_statements(database, [("CREATE TABLE n (v INTEGER)", None), ("INSERT INTO n VALUES (0)", None)])
    drain()
    holder.locks.close()


def value(client: Client, drain: Callable[..., int], database: str = "c") -> int:
    job_id = client.submit(database, "SELECT v FROM n")
    drain()
    return int(client.wait(job_id, 5).values()[0][0])


def increment(database: str = "c", job_id: str | None = None) -> Job:
    return Job.create(database, "UPDATE n SET v = v + 1", job_id=job_id)


def test_a_stale_writer_is_fenced_and_its_jobs_run_on_the_new_snapshot(
        settings: Settings, aws: Any, client: Client, drain: Callable[..., int], worker: Worker, tmp_path: Any) -> None:
    counter(client, drain, worker)
    rival = Worker(settings.replace(cache_dir=str(tmp_path / "rival")), aws.s3, aws.sqs, aws.ec2)
    stalled_s3 = FaultyClient(aws.s3)
    stalled = Worker(settings, stalled_s3, aws.sqs, aws.ec2)
    rival_job = increment(job_id="rival")

    def lock_broken_meanwhile() -> None:
        # While the stalled writer sits before its commit, the reaper frees its lock and a rival commits.
        for group in lock_groups(aws.ec2, settings.vpc_id):
            aws.ec2.delete_security_group(GroupId=group["group_id"])
        assert rival.process([Record("r", queued(aws.s3, settings.bucket, rival_job))]) == []

    fault = stalled_s3.fail("put_object", before=lock_broken_meanwhile,
                            when=lambda kw: kw["Key"].endswith("/manifest.json"))
    assert stalled.process([Record("s", queued(aws.s3, settings.bucket, increment(job_id="stalled")))]) == []
    assert fault.fired == 1
    assert value(client, drain) == 2  # both increments, neither lost
    assert client.status("stalled").state is JobState.SUCCEEDED


@pytest.mark.parametrize("code", ["PreconditionFailed", "ConditionalRequestConflict"])
def test_a_commit_refused_twice_goes_back_to_the_queue(
        settings: Settings, aws: Any, client: Client, drain: Callable[..., int], worker: Worker, code: str) -> None:
    counter(client, drain, worker)
    s3 = FaultyClient(aws.s3)
    s3.fail("put_object", code=code, times=2, when=lambda kw: kw["Key"].endswith("/manifest.json"))
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    job = increment(job_id="refused")
    client.submit_job(job)
    assert worker.process([Record("m", job.to_text())]) == ["m"]
    assert client.status("refused").state is JobState.QUEUED
    assert lock_groups(aws.ec2, settings.vpc_id) == []  # the lock was released
    assert worker.process([Record("m", job.to_text())]) == []
    assert value(client, drain) == 1


def test_a_commit_whose_response_was_lost_is_not_applied_twice(
        settings: Settings, aws: Any, client: Client, drain: Callable[..., int], worker: Worker) -> None:
    counter(client, drain, worker)
    s3 = FaultyClient(aws.s3)
    s3.fail("put_object", after_call=True, when=lambda kw: kw["Key"].endswith("/manifest.json"))
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    assert worker.process([Record("m", queued(aws.s3, settings.bucket, increment(job_id="lost-response")))]) == []
    assert client.status("lost-response").state is JobState.SUCCEEDED
    assert value(client, drain) == 1


def test_a_write_redelivered_after_an_ambiguous_failure_runs_once(
        settings: Settings, aws: Any, client: Client, drain: Callable[..., int], worker: Worker) -> None:
    counter(client, drain, worker)
    s3 = FaultyClient(aws.s3)
    # The commit lands, then every status write fails: SQS will deliver the job again.
    s3.fail("put_object", code="InternalError", times=1, when=lambda kw: kw["Key"] == "results/twice.json")
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    job = increment(job_id="twice")
    client.submit_job(job)
    assert worker.process([Record("m", job.to_text())]) == ["m"]
    assert worker.process([Record("m", job.to_text())]) == []
    assert client.status("twice").state is JobState.SUCCEEDED
    assert value(client, drain) == 1


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "SlowDown"), (503, "ServiceUnavailable")])
@pytest.mark.slow
def test_s3_errors_are_retried_with_backoff(settings: Settings, client: Client, drain: Callable[..., int],
                                            worker: Worker, aws: Any, status: int, code: str) -> None:
    counter(client, drain, worker)
    s3 = boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 8}),
                      **client_kwargs(settings))
    chunk_fails = http_errors(s3, "GetObject", status, code, times=3)
    put_fails = http_errors(s3, "PutObject", status, code, times=3)
    worker = Worker(settings.replace(cache_dir=settings.cache_dir + "-cold"), s3, aws.sqs, aws.ec2)
    assert worker.process([Record("m", queued(aws.s3, settings.bucket, increment(job_id="retried")))]) == []
    assert (chunk_fails[0], put_fails[0]) == (3, 3)
    assert client.status("retried").state is JobState.SUCCEEDED
    assert value(client, drain) == 1


def test_s3_timeouts_become_retries_not_failures(settings: Settings, aws: Any, client: Client,
                                                 drain: Callable[..., int], worker: Worker) -> None:
    counter(client, drain, worker)
    s3 = FaultyClient(aws.s3)
    s3.fail("get_object", times=1, when=lambda kw: kw["Key"].endswith("/manifest.json"))
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    job = increment(job_id="timeout")
    client.submit_job(job)
    assert worker.process([Record("m", job.to_text())]) == ["m"]
    assert client.status("timeout").state is JobState.QUEUED
    assert worker.process([Record("m", job.to_text())]) == []
    assert value(client, drain) == 1


def test_a_lock_group_not_yet_visible_is_released_anyway(settings: Settings, aws: Any) -> None:
    ec2 = FaultyClient(aws.ec2)
    ec2.fail("delete_security_group", code="InvalidGroup.NotFound", times=1)
    naps: list[float] = []
    lock = SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix, sleep=naps.append)
    assert lock.release(lock.acquire("d", wait=1)) is True
    assert lock_groups(aws.ec2, settings.vpc_id) == []
    assert naps == [0.2]


def test_a_lost_create_response_still_takes_the_lock(settings: Settings, aws: Any) -> None:
    ec2 = FaultyClient(aws.ec2)
    ec2.fail("create_security_group", after_call=True)
    lock = SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix, sleep=lambda s: None)
    handle = lock.acquire("d", wait=5)
    assert [g["group_id"] for g in lock_groups(aws.ec2, settings.vpc_id)] == [handle.token]


@pytest.mark.slow
def test_poison_messages_end_in_the_dead_letter_queue_saying_why(moto_endpoint: str, tmp_path: Any) -> None:
    settings, (_, sqs, ec2), client, worker = dead_letter_stack(moto_endpoint, tmp_path, max_receive_count=2)
    holder = SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix)
    handle = holder.acquire("stuck", wait=1)
    job_id = client.submit("stuck", "CREATE TABLE t (a)")
    for count in (1, 2):
        message = _receive_one(sqs, settings.queue_url)
        record = Record(message["MessageId"], message["Body"], int(message["Attributes"]["ApproximateReceiveCount"]))
        assert record.receive_count == count
        assert worker.process([record]) == [record.message_id]
    status = client.status(job_id)
    assert status.state is JobState.FAILED
    assert status.error and status.error["retryable"] is True and status.error["type"] == "LockBusy"
    assert "gave up after 2 deliveries" in status.error["message"]
    letters = DeadLetters(sqs, client.store, settings.queue_url, settings.dlq_url)
    [letter] = _dead_letters(sqs, settings.queue_url, letters)
    assert (letter.job_id, letter.database) == (job_id, "stuck")
    assert "held by another worker" in letter.reason
    holder.release(handle)
    assert letters.redrive() == [job_id]
    assert client.status(job_id).state is JobState.QUEUED
    message = _receive_one(sqs, settings.queue_url)
    assert worker.process([Record(message["MessageId"], message["Body"])]) == []
    assert client.status(job_id).state is JobState.SUCCEEDED
    assert letters.peek() == []


def dead_letter_stack(endpoint: str, tmp_path: Any, max_receive_count: int) -> tuple[Settings, tuple[Any, Any, Any],
                                                                                   Client, Worker]:
    """Queues of their own whose dead-letter queue takes a message after ``max_receive_count`` deliveries;
    settings, boto3 clients (s3, sqs, ec2), a client, and a worker that waits 0.1 s for a lock."""
    settings = _resources(endpoint, tmp_path, max_receive_count=max_receive_count)
    kwargs = client_kwargs(settings)
    s3, sqs, ec2 = (boto3.client(n, **kwargs) for n in ("s3", "sqs", "ec2"))
    return (settings, (s3, sqs, ec2), Client(settings, s3=s3, sqs=sqs),
            Worker(settings.replace(lock_wait=0.1), s3, sqs, ec2))


def _resources(endpoint: str, tmp_path: Any, **kwargs: Any) -> Settings:
    from producer.local.stack import create_resources

    name = f"dlq{id(tmp_path) % 100000}"
    return create_resources(endpoint, visibility_timeout=1, prefix=name, bucket=f"srdb-{name}",
                            **kwargs).replace(cache_dir=str(tmp_path / "cache"))


def _dead_letters(sqs: Any, url: str, letters: DeadLetters) -> list[Any]:
    """SQS moves a message to the dead-letter queue when it is next received past maxReceiveCount."""
    for _ in range(50):
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None
        found = letters.peek()
        if found:
            return found
    raise AssertionError("nothing reached the dead-letter queue")


def _receive_one(sqs: Any, url: str) -> dict[str, Any]:
    """Receive the next delivery, polling through the visibility timeout of the last one."""
    for _ in range(50):
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"])
        if messages.get("Messages"):
            return dict(messages["Messages"][0])
    raise AssertionError("no message arrived")


def test_every_dead_letter_is_listed_and_stays_there(settings: Settings, aws: Any, client: Client) -> None:
    for i in range(25):
        aws.sqs.send_message(QueueUrl=settings.dlq_url, MessageBody=json.dumps({"job_id": f"dead-{i}"}))
    letters = DeadLetters(aws.sqs, client.store, settings.queue_url, settings.dlq_url)
    assert sorted(letter.job_id or "" for letter in letters.peek()) == sorted(f"dead-{i}" for i in range(25))
    assert len(letters.peek()) == 25  # listing hid nothing for long: every message is there again


def test_a_network_error_while_freeing_a_lock_retries_only_that_database(
        settings: Settings, aws: Any, client: Client) -> None:
    dead = SecurityGroupLock(aws.ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=0.0)
    dead.acquire("stale", wait=1)  # a holder that died: its lock has expired already
    ec2 = FaultyClient(aws.ec2)
    ec2.fail("delete_security_group", times=1)  # no answer: botocore's ReadTimeoutError
    worker = Worker(settings.replace(lock_wait=0.5), aws.s3, aws.sqs, ec2)
    stale, other = Job.create("stale", "CREATE TABLE t (a)"), Job.create("other", "CREATE TABLE t (a)")
    records = [Record("m-stale", queued(aws.s3, settings.bucket, stale)),
               Record("m-other", queued(aws.s3, settings.bucket, other))]
    assert worker.process(records) == ["m-stale"]
    assert client.status(other.job_id).state is JobState.SUCCEEDED
    assert client.status(stale.job_id).state is JobState.QUEUED
    assert worker.process(records[:1]) == []  # the next delivery frees the lock and runs


def test_an_sqs_failure_while_listing_dead_letters_is_one_error_not_a_traceback(
        settings: Settings, aws: Any, client: Client) -> None:
    sqs = FaultyClient(aws.sqs)
    sqs.fail("receive_message", code="AWS.SimpleQueueService.NonExistentQueue")
    letters = DeadLetters(sqs, client.store, settings.queue_url, settings.dlq_url)
    with pytest.raises(QueueError, match="receive_message") as raised:
        letters.peek()
    assert raised.value.exit_code == EXIT_UNAVAILABLE


@pytest.mark.slow
def test_many_databases_under_ec2s_throttle_lose_nothing_and_burn_no_retry(
        settings: Settings, aws: Any, client: Client, tmp_path: Any) -> None:
    # EC2's buckets, shared by every worker as by every Lambda of an account, at a fifth of their size
    # so that a short test spends them: Create/DeleteSecurityGroup 1 a second, burst 10.
    ec2 = ThrottledEC2(aws.ec2, now=time.monotonic, scale=0.2)
    roomy = settings.replace(lock_wait=120, lock_ttl=300, worker_timeout=300)  # time for a throttled batch
    workers = [Worker(roomy.replace(cache_dir=str(tmp_path / f"w{i}")), aws.s3, aws.sqs, ec2)
               for i in range(3)]
    databases = [f"many{i}" for i in range(12)]
    jobs = {db: [Job.create(db, statements=[("CREATE TABLE IF NOT EXISTS t (a)", None),
                                             ("INSERT INTO t VALUES (?)", [n])], job_id=f"{db}-{n}") for n in range(2)]
            for db in databases}
    arn = aws.sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    records = [Record(j.job_id, queued(aws.s3, settings.bucket, j), source=arn)
               for db in databases for j in jobs[db]]
    batches = [records[i::3] for i in range(3)]  # each worker a batch holding a job of most databases
    with ThreadPoolExecutor(3) as pool:
        retried = list(pool.map(lambda wb: wb[0].process(wb[1]), zip(workers, batches, strict=True)))
    # Throttled calls were waited out, never a delivery used: a database another worker held past the
    # hand-off wait went back to the queue as a new message, which the next batches run.
    assert retried == [[], [], []]
    assert sum(ec2.throttled.values()) > 0
    poller = Poller(aws.sqs, settings.queue_url, lambda event, ctx: run_batch(workers[0], event),
                    region=settings.region, wait_seconds=1)
    until(lambda: poller.poll_once() >= 0 and all(client.status(j.job_id).state.final
                                                  for db in databases for j in jobs[db]), 120)
    assert all(client.status(j.job_id).state is JobState.SUCCEEDED for db in databases for j in jobs[db])
    counts = [Job.create(db, "SELECT count(*) FROM t") for db in databases]
    assert workers[0].process([Record(c.job_id, queued(aws.s3, settings.bucket, c)) for c in counts]) == []
    assert [client.status(c.job_id).values() for c in counts] == [[[2]]] * len(databases)  # each job once


def test_an_unexpected_error_writing_a_result_retries_the_job_instead_of_dropping_it(
        settings: Settings, aws: Any, client: Client, drain: Callable[..., int], worker: Worker) -> None:
    counter(client, drain, worker)
    s3 = FaultyClient(aws.s3)
    s3.fail("put_object", error=ValueError("not a botocore error"), when=lambda kw: kw["Key"] == "results/odd.json")
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    job = increment(job_id="odd")
    client.submit_job(job)
    assert worker.process([Record("m", job.to_text())]) == ["m"]  # not published: SQS delivers it again
    assert client.status("odd").state is JobState.QUEUED
    assert worker.process([Record("m", job.to_text())]) == []
    assert client.status("odd").state is JobState.SUCCEEDED
    assert value(client, drain) == 1  # applied once: the second delivery found its record


def test_a_bug_in_the_worker_is_named_as_one_with_its_traceback_not_as_a_storage_error(
        settings: Settings, aws: Any, client: Client, caplog: pytest.LogCaptureFixture) -> None:
    s3 = FaultyClient(aws.s3)
    s3.fail("get_object", times=10, error=ValueError("a bug, not S3"),
            when=lambda kw: str(kw.get("Key", "")).endswith("manifest.json"))
    worker = Worker(settings.replace(max_receive_count=1), s3, aws.sqs, aws.ec2)
    try:
        job = Job.create("buggy", "CREATE TABLE t (a)")
        assert worker.process([Record("m", queued(aws.s3, settings.bucket, job))]) == ["m"]
    finally:
        worker.close()
    error = client.status(job.job_id).error or {}
    assert error.get("type") == "WorkerFault" and "ValueError: a bug, not S3" in error.get("message", ""), error
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)
