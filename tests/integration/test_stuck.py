"""No job QUEUED for ever: a message that was never sent leaves its job FAILED (and submitting it again
sends it), a dead letter says why and where, and a job that fails the same way after a redrive is settled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from producer.cli.dlq import DeadLetters
from producer.client import Client
from shared.errors import QueueError
from shared.job.model import Job
from shared.job.result import JobState
from shared.lock.security_group import SecurityGroupLock
from shared.settings import Settings
from worker.batch import Record

from ..faults import FaultyClient
from .test_faults import _dead_letters, _receive_one, dead_letter_stack


def test_a_job_whose_message_was_not_sent_is_failed_and_sent_when_submitted_again(
        settings: Settings, aws: Any, drain: Callable[..., int]) -> None:
    sqs = FaultyClient(aws.sqs)
    sqs.fail("send_message", code="AWS.SimpleQueueService.NonExistentQueue")
    client = Client(settings, s3=aws.s3, sqs=sqs)
    with pytest.raises(QueueError, match="NonExistentQueue"):
        client.submit("unsent", "CREATE TABLE t (a)", job_id="unsent-1")
    failed = client.status("unsent-1")
    assert failed.state is JobState.FAILED and failed.error is not None
    assert failed.error["type"] == "QueueError" and "not sent" in failed.error["message"]
    assert failed.database == "unsent"
    assert client.submit("unsent", "CREATE TABLE t (a)", job_id="unsent-1") == "unsent-1"
    assert client.status("unsent-1").state is JobState.QUEUED
    drain()
    assert client.wait("unsent-1", 5).state is JobState.SUCCEEDED


def test_jobs_of_a_batch_sqs_refused_are_failed_not_queued(settings: Settings, aws: Any) -> None:
    sqs = FaultyClient(aws.sqs)
    sqs.fail("send_message_batch")  # no answer: whether SQS took them is unknown, so none is left QUEUED
    client = Client(settings, s3=aws.s3, sqs=sqs)
    jobs = [Job.create("unsentb", "SELECT ?", [i]) for i in range(12)]
    with pytest.raises(QueueError):
        client.submit_jobs(jobs, concurrency=1)
    states = {client.status(j.job_id).state for j in jobs[:10]}
    assert states == {JobState.FAILED}  # the batch that failed; the next batch of two went on
    assert {client.status(j.job_id).state for j in jobs[10:]} == {JobState.QUEUED}


@pytest.mark.slow
def test_a_job_dead_lettered_again_the_same_way_is_settled(moto_endpoint: str, tmp_path: Any) -> None:
    settings, (_, sqs, ec2), client, worker = dead_letter_stack(moto_endpoint, tmp_path, max_receive_count=1)
    SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix).acquire("jam", wait=1)  # held for good
    job_id = client.submit("jam", "CREATE TABLE t (a)")
    letters = DeadLetters(sqs, client.store, settings.queue_url, settings.dlq_url)

    def deliver() -> None:
        message = _receive_one(sqs, settings.queue_url)
        assert worker.process([Record(message["MessageId"], message["Body"], 1)]) == [message["MessageId"]]

    deliver()
    first = client.status(job_id)
    assert first.error is not None and first.error["retryable"] is True and first.error["deliveries"] == 1
    listed = _dead_letters(sqs, settings.queue_url, letters)
    assert [(d.job_id, d.database, d.receive_count) for d in listed] == [(job_id, "jam", 1)]
    again = letters.peek()  # listing does not change what it lists
    assert [(d.job_id, d.database, d.receive_count, d.reason) for d in again] == [
        (d.job_id, d.database, d.receive_count, d.reason) for d in listed]
    assert letters.redrive() == [job_id]
    deliver()
    settled = client.status(job_id)
    assert settled.state is JobState.FAILED and settled.error is not None
    assert settled.error["retryable"] is False and "settled" in settled.error["message"]
    assert settled.settled
    _dead_letters(sqs, settings.queue_url, letters)
    assert letters.redrive() == [job_id]  # sent back, and ignored: the job does not run again
    message = _receive_one(sqs, settings.queue_url)
    assert worker.process([Record(message["MessageId"], message["Body"], 1)]) == []
    assert client.status(job_id).error == settled.error
