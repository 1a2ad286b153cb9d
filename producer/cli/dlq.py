"""The dead-letter queue: what is there and why, and sending it back.

A message lands there after ``maxReceiveCount`` deliveries that all failed for infrastructure
reasons; its status document is FAILED with ``retryable: true``, the deliveries and why. Redriving
puts the document back to QUEUED (remembering that error) and the message back on the job queue; a
job dead-lettered again the same way is settled FAILED, and a redrive sends its message to no effect.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from shared.errors import QueueError, SrdbError
from shared.job.envelope import guess_job_id, open_envelope
from shared.job.model import Job
from shared.job.result import JobResult, JobState
from shared.job.routing import fifo_fields, is_fifo
from shared.job.status import StatusStore
from shared.names import queue_name
from shared.sqs_batches import tens


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


PEEK_SECONDS = 30


class DeadLetters:
    def __init__(self, sqs: Any, store: StatusStore, queue_url: str, dlq_url: str) -> None:
        self.sqs, self.store, self.queue_url, self.dlq_url = sqs, store, queue_url, dlq_url

    def peek(self, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters, deleting nothing. SQS can only show a message by receiving it: each is
        hidden for a moment so the next receive shows others, then made visible again at once (so
        listing adds one to each message's receive count, as the AWS console's poll does)."""
        seen: dict[str, DeadLetter] = {}
        handles: list[str] = []
        try:
            while len(seen) < limit:
                messages = [m for m in self._receive(visibility=PEEK_SECONDS) if m["MessageId"] not in seen]
                if not messages:
                    break
                for message in messages:
                    seen[message["MessageId"]] = self._describe(message)
                    handles.append(message["ReceiptHandle"])
        finally:
            for batch in tens(handles):
                entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(batch)]
                self._sqs("change_message_visibility_batch", QueueUrl=self.dlq_url, Entries=entries)
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
                # On a FIFO queue the message keeps its group (a standard DLQ's has none: its job's id).
                group = message.get("Attributes", {}).get("MessageGroupId") or job_id or message["MessageId"]
                self._sqs("send_message", QueueUrl=self.queue_url, MessageBody=message["Body"],
                          **(fifo_fields(group) if is_fifo(self.queue_url) else {}))
                self._sqs("delete_message", QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"])
                sent.append(job_id or message["MessageId"])
        return sent

    def _receive(self, visibility: int) -> list[dict[str, Any]]:
        response = self._sqs("receive_message", QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                            VisibilityTimeout=visibility, MessageSystemAttributeNames=["All"])
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _sqs(self, action: str, **request: Any) -> Any:
        """SQS's botocore errors as srdb's: QueueError, which the CLI reports in one line (exit 5)."""
        try:
            return getattr(self.sqs, action)(**request)
        except (BotoClientError, BotoCoreError) as exc:
            raise QueueError(f"SQS {action} on {request.get('QueueUrl')}: {exc}") from exc

    def _describe(self, message: dict[str, Any]) -> DeadLetter:
        body = message["Body"]
        job_id = guess_job_id(body)
        database = None
        with contextlib.suppress(SrdbError):
            envelope = open_envelope(body)
            if envelope.job_text is not None:
                database = Job.from_text(envelope.job_text).database
        reason = "no status document: the message was never a job a client submitted"
        # SQS counts this listing as a receive too: the deliveries the worker recorded do not change.
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0))
        if job_id is not None:
            status, _ = self.store.get(job_id)
            if status is not None:
                database = database or status.database
                error = status.error or {}
                count = int(error.get("deliveries", count))
                reason = error.get("message") or (
                    f"still {status.state.value}: no delivery of it ended (the worker crashed or ran out of "
                    "time on each one; its log says why)")
        return DeadLetter(message["MessageId"], job_id, database, count, reason)

    def _requeue(self, job_id: str) -> None:
        status, etag = self.store.get(job_id)
        if status is not None and status.state is JobState.FAILED and (status.error or {}).get("retryable"):
            queued = JobResult(job_id, JobState.QUEUED, database=status.database, submitted_at=status.submitted_at,
                               job_digest=status.job_digest, redriven_after=status.error,
                               queue=queue_name(self.queue_url), label=status.label)  # sent back there
            self.store.put(queued, if_match=etag)
