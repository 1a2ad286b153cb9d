"""What both clients do the same way, without I/O: the QUEUED document, the message, the poll schedule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from shared.errors import ClientError
from shared.jobs import Job
from shared.messages import MAX_INLINE_MESSAGE, claim_check
from shared.results import JobResult, JobState


@dataclass(frozen=True)
class Submission:
    """A job ready to send: its QUEUED document, its message body, and its payload when claim-checked."""

    job: Job
    queued: JobResult
    body: str
    payload: str | None


def prepare(job: Job) -> Submission:
    text = job.to_text()
    queued = JobResult(job.job_id, JobState.QUEUED, database=job.database, submitted_at=job.submitted_at,
                       job_digest=job.digest())
    if len(text.encode()) > MAX_INLINE_MESSAGE:
        return Submission(job, queued, claim_check(job.job_id), text)
    return Submission(job, queued, text, None)


def resend_needed(submission: Submission, existing: JobResult | None) -> bool:
    """A job id was already used. Same job still QUEUED: send again (an earlier submit may have died
    before its message left; the worker applies it once). Same job finished: nothing to do."""
    if existing is None:
        return True
    digest = submission.queued.job_digest
    if existing.job_digest is not None and existing.job_digest != digest:
        raise ClientError(f"job id {submission.job.job_id} was already used for a different job")
    return existing.state is JobState.QUEUED


def poll_delays(first: float = 0.05, factor: float = 1.5, cap: float = 1.0) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)
