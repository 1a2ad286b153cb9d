"""What each stage of a batch decides about a message, as values: parse decides whether it runs, the
write and read stages what its job did, publishing whether it is done. Nothing here is mutated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import InfrastructureError, SrdbError
from shared.job.model import Job
from worker.execute import Outcome


@dataclass(frozen=True)
class Record:
    """One SQS message as the event source mapping hands it over."""

    message_id: str
    body: str
    receive_count: int = 1
    source: str = ""  # the queue's ARN (eventSourceARN): which access group sent it (shared/grants.py)
    sender: str = ""  # SQS's SenderId: the IAM principal that sent it
    # A copy a worker sent back for want of time (worker/handback.py): how often, and the SenderId of the
    # message it copies (believed only when the copy's own SenderId is the worker's).
    handbacks: int = 0
    handed_back_for: str = ""


@dataclass(frozen=True)
class Task:
    """A message to run: its job, its path, and the QUEUED document it runs as (ETag and digest)."""

    record: Record
    job: Job
    read: bool
    etag: str | None
    digest: str
    redriven_after: dict[str, Any] | None = None  # the error that dead-lettered it before a redrive
    sender: str = ""  # the SenderId its grants were checked for (a handed-back copy's: the original's)


@dataclass(frozen=True)
class Refusal:
    """A message that must not run: its FAILED document is written only where it can harm no other
    job (over nothing, or over the document ``etag`` names), then the message is done."""

    record: Record
    job_id: str
    error: SrdbError
    etag: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class Ignored:
    """A message that is done without a word: its job is settled, or the id belongs to another job."""

    record: Record
    reason: str
    dropped: bool = False  # a copy that proves no job (a forgery, or a stray): counted as dropped


@dataclass(frozen=True)
class Retry:
    """A message to leave to SQS redelivery before it ran (S3 failed while reading it)."""

    record: Record
    reason: InfrastructureError


Parsed = Task | Refusal | Ignored | Retry


@dataclass(frozen=True)
class Done:
    """The job ran, or failed as a job does: its outcome is published."""

    outcome: Outcome
    version: int | None
    started: float
    created: bool = False  # its commit created the database
    snapshot: str = ""  # a preview's: the id of the snapshot it ran on (TxStep.snapshot)


@dataclass(frozen=True)
class Deferred:
    """The job did not run this time (lock, S3, time): SQS delivers it again; ``reason`` says why, for the
    status document of its last delivery."""

    reason: SrdbError


@dataclass(frozen=True)
class HandBack:
    """The job did not start because earlier jobs used the batch's time: it goes back to the queue as a
    new message (worker/handback.py), so others' long jobs never use up its deliveries."""

    reason: SrdbError
    delay: int = 0  # seconds the copy stays invisible (SQS DelaySeconds)


Verdict = Done | Deferred | HandBack


@dataclass(frozen=True)
class GroupResult:
    """What one database's group did: a verdict per message, and what it cost."""

    verdicts: dict[str, Verdict]
    lock_wait_ms: float = 0.0
    commit_bytes: int = 0


def deferred(tasks: list[Task], reason: SrdbError) -> dict[str, Verdict]:
    return {t.record.message_id: Deferred(reason) for t in tasks}
