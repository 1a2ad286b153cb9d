"""Per-database grants, end to end over two access groups: each has its own job queue, and the
worker tells them apart by the queue a message came through (SQS sets it; no sender can forge it).
moto gives every sender the same SenderId, so the SenderId path runs on records built by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from producer.client import Client
from producer.local.poller import Poller
from shared.errors import ClientSideError
from shared.grants import GRANTS_KEY, Grants
from shared.job.envelope import guess_job_id
from shared.job.result import JobState
from shared.s3 import Bucket
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

from ..conftest import sqs_event
from ..faults import FaultyClient


def second_queue(aws: Any, settings: Settings, name: str) -> str:
    return str(aws.sqs.create_queue(QueueName=f"{settings.bucket}-{name}")["QueueUrl"])


def drain_queue(aws: Any, settings: Settings, worker: Worker, url: str) -> None:
    poller = Poller(aws.sqs, url, lambda event, ctx: run_batch(worker, event), region=settings.region,
                    wait_seconds=0, batch_size=10)
    while poller.poll_once():
        pass


def error_of(client: Client, job_id: str) -> str:
    result = client.wait(job_id, 5)
    assert result.state is JobState.FAILED and result.error is not None, result
    assert result.error["type"] == "Forbidden"
    return str(result.error["message"])


def test_a_job_outside_its_groups_grant_is_refused_beside_the_groups_other_jobs(
        settings: Settings, aws: Any, worker: Worker, client: Client, drain: Callable[..., int]) -> None:
    readers_url = second_queue(aws, settings, "readers")
    client.grant("writers", database="*", access="write", queue=settings.queue_url)
    client.grant("readers", database="shop", access="read", queue=readers_url)
    client.grant("readers", database="pub_*", access="write")
    for sql in ("CREATE TABLE t (n INTEGER)", "INSERT INTO t VALUES (1)"):
        client.submit("shop", sql)
        client.submit("hr", sql)
    drain()
    reader = Client(settings.replace(queue_url=readers_url), s3=aws.s3, sqs=aws.sqs)
    read_shop = reader.submit("shop", "SELECT n FROM t")
    write_shop = reader.submit("shop", "INSERT INTO t VALUES (2)")
    read_hr = reader.submit("hr", "SELECT n FROM t")
    as_of_shop = reader.submit("shop", "SELECT count(*) FROM t", as_of=1)
    own = reader.submit("pub_notes", "CREATE TABLE n (x)")
    drain_queue(aws, settings, worker, readers_url)  # one batch: refused jobs beside granted ones

    assert reader.wait(read_shop, 5).values() == [[1]]
    assert error_of(reader, write_shop) == "access group readers may only read database shop; this job writes"
    assert error_of(reader, read_hr) == "access group readers has no grant on database hr"
    assert reader.wait(as_of_shop, 5).values() == [[1]]
    assert reader.wait(own, 5).state is JobState.SUCCEEDED
    check = client.submit("shop", "SELECT count(*) FROM t")
    drain()
    assert client.wait(check, 5).values() == [[1]]  # the refused write changed nothing


def test_a_queue_in_no_group_reaches_nothing_once_grants_exist_and_revoke_opens_again(
        settings: Settings, aws: Any, worker: Worker, client: Client, drain: Callable[..., int]) -> None:
    stray_url = second_queue(aws, settings, "stray")
    stray = Client(settings.replace(queue_url=stray_url), s3=aws.s3, sqs=aws.sqs)
    before = stray.submit("open", "CREATE TABLE t (n)")
    drain_queue(aws, settings, worker, stray_url)
    assert stray.wait(before, 5).state is JobState.SUCCEEDED  # no grants: srdb as before, open to every queue
    client.grant("writers", database="*", access="write", queue=settings.queue_url)
    refused = stray.submit("open", "SELECT 1")
    drain_queue(aws, settings, worker, stray_url)
    assert error_of(stray, refused).startswith(f"queue {settings.bucket}-stray belongs to no access group")
    with pytest.raises(ClientSideError, match="no access group nobody"):
        client.revoke("nobody")
    assert client.revoke("writers").open
    after = stray.submit("open", "SELECT 1")
    drain_queue(aws, settings, worker, stray_url)
    assert stray.wait(after, 5).values() == [[1]]


def sent_by(aws: Any, settings: Settings, jobs: list[str], senders: tuple[str, ...],
            attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The queued messages of ``jobs`` as one event, each stamped with its SenderId (moto stamps one for all)."""
    arn = aws.sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    messages = aws.sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = {guess_job_id(m["Body"]): m["Body"] for m in messages}
    event = sqs_event(*(bodies[job] for job in jobs))
    for record, sender in zip(event["Records"], senders, strict=True):
        record["eventSourceARN"] = arn
        record["attributes"]["SenderId"] = sender
        record["messageAttributes"] = attributes or {}
    return event


def test_the_sender_id_must_match_the_groups_senders(settings: Settings, aws: Any, worker: Worker,
                                                      client: Client) -> None:
    arn = aws.sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    client.grant("etl", database="*", access="write", queue=arn, sender="AROAETL:*")
    jobs = [client.submit("s", "CREATE TABLE t (n)"), client.submit("s", "SELECT 1")]
    event = sent_by(aws, settings, jobs, ("AROAETL:nightly", "AIDAINTRUDER"))
    assert run_batch(worker, event) == {"batchItemFailures": []}
    assert client.wait(jobs[0], 5).state is JobState.SUCCEEDED
    assert error_of(client, jobs[1]) == (f"sender AIDAINTRUDER is not among the senders of access group(s) etl "
                                         f"that queue {arn.rsplit(':', 1)[1]} serves")


def test_grants_that_do_not_parse_stop_every_job_until_mended(settings: Settings, aws: Any, worker: Worker,
                                                             client: Client) -> None:
    bucket = Bucket(aws.s3, settings.bucket)
    bucket.put(GRANTS_KEY, b'{"groups": {"g": {"databases": {"*": "admin"}}}}')
    job = client.submit("x", "SELECT 1")
    event = sent_by(aws, settings, [job], ("AIDAANY",))
    assert run_batch(worker, event) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert client.status(job).state is JobState.QUEUED  # left to SQS: a job never runs on a guess
    bucket.put(GRANTS_KEY, Grants().to_bytes())
    assert run_batch(worker, event) == {"batchItemFailures": []}
    assert client.wait(job, 5).values() == [[1]]
    assert json.loads(bucket.get(GRANTS_KEY).body) == {"groups": {}}  # type: ignore[union-attr]


def test_a_readers_statement_too_long_to_classify_runs_on_the_read_path(
        settings: Settings, aws: Any, worker: Worker, client: Client, drain: Callable[..., int]) -> None:
    readers_url = second_queue(aws, settings, "readers")
    client.grant("writers", database="*", access="write", queue=settings.queue_url)
    client.grant("readers", database="shop", access="read", queue=readers_url)
    client.submit("shop", "CREATE TABLE t (n INTEGER)")
    drain()
    reader = Client(settings.replace(queue_url=readers_url), s3=aws.s3, sqs=aws.sqs)
    long_in = ",".join(str(i) for i in range(6000))  # over 20,000 characters: sqlparse is not asked
    select = reader.submit("shop", f"SELECT count(*) FROM t WHERE n IN ({long_in})")
    insert = reader.submit("shop", f"INSERT INTO t SELECT value FROM json_each('[{long_in}]')")
    drain_queue(aws, settings, worker, readers_url)
    assert reader.wait(select, 5).values() == [[0]]
    error = reader.wait(insert, 5).error or {}
    assert error.get("type") in ("ReadOnlyViolation", "Forbidden"), error
    count = client.submit("shop", "SELECT count(*) FROM t")
    drain()
    assert client.wait(count, 5).values() == [[0]]


def test_a_grants_read_that_fails_once_fails_no_job(settings: Settings, aws: Any, client: Client) -> None:
    """The batch starts its grants read beside the status reads; when that read times out, the first job
    that needs the grants reads them again, and every job of the batch runs."""
    s3 = FaultyClient(aws.s3)
    failed = s3.fail("get_object", when=lambda kw: kw["Key"] == GRANTS_KEY)
    worker = Worker(settings, s3, aws.sqs, aws.ec2)
    jobs = [client.submit(f"g{i}", "CREATE TABLE t (n INTEGER)") for i in range(3)]
    drain_queue(aws, settings, worker, settings.queue_url)
    worker.close()
    assert failed.fired == 1
    assert [client.wait(job, 5).state for job in jobs] == [JobState.SUCCEEDED] * 3
