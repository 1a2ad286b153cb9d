"""The dead-letter queue: what is there and why, and sending it back.

A message lands there after ``maxReceiveCount`` deliveries that all failed for infrastructure
reasons; its status document is FAILED with ``retryable: true`` and says why. Redriving puts
the document back to QUEUED and the message back on the job queue.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidJob
from shared.jobs import Job
from shared.messages import guess_job_id
from shared.results import JobResult, JobState
from shared.status import StatusStore


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    job_id: str | None
    database: str | None
    receive_count: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "job_id": self.job_id, "database": self.database,
                "receive_count": self.receive_count, "reason": self.reason}


class DeadLetters:
    def __init__(self, sqs: Any, store: StatusStore, queue_url: str, dlq_url: str) -> None:
        self.sqs, self.store, self.queue_url, self.dlq_url = sqs, store, queue_url, dlq_url

    def peek(self, limit: int = 1000) -> list[DeadLetter]:
        """Peek at the dead letters (receive with no visibility timeout, delete nothing)."""
        seen: dict[str, DeadLetter] = {}
        idle = 0
        while len(seen) < limit and idle < 2:
            messages = self._receive(visibility=0)
            fresh = [m for m in messages if m["MessageId"] not in seen]
            idle = 0 if fresh else idle + 1
            for message in fresh:
                seen[message["MessageId"]] = self._describe(message)
        return list(seen.values())[:limit]

    def redrive(self, limit: int = 1000) -> list[str]:
        """Send dead letters back to the job queue; returns the job (or message) ids sent."""
        sent: list[str] = []
        while len(sent) < limit:
            messages = self._receive(visibility=60)
            if not messages:
                return sent
            for message in messages:
                job_id = guess_job_id(message["Body"])
                if job_id is not None:
                    self._requeue(job_id)
                self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"])
                self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"])
                sent.append(job_id or message["MessageId"])
        return sent

    def _receive(self, visibility: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                            VisibilityTimeout=visibility, MessageSystemAttributeNames=["All"])
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _describe(self, message: dict[str, Any]) -> DeadLetter:
        body = message["Body"]
        job_id = guess_job_id(body)
        database = None
        with contextlib.suppress(InvalidJob):
            database = Job.from_text(body).database
        reason = "no status document"
        if job_id is not None:
            status, _ = self.store.get(job_id)
            if status is not None:
                reason = (status.error or {}).get("message", status.state.value)
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0))
        return DeadLetter(message["MessageId"], job_id, database, count, reason)

    def _requeue(self, job_id: str) -> None:
        status, etag = self.store.get(job_id)
        if status is not None and status.state is JobState.FAILED and (status.error or {}).get("retryable"):
            queued = JobResult(job_id, JobState.QUEUED, database=status.database, submitted_at=status.submitted_at,
                               job_digest=status.job_digest)
            self.store.put(queued, if_match=etag)
