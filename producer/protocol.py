"""What both clients do the same way, without I/O: the QUEUED document, the message, the poll schedule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from shared.errors import ClientSideError, InvalidJob
from shared.job.envelope import COMPRESS_ABOVE, MAX_INLINE_MESSAGE, claim_check, compressed
from shared.job.model import Job
from shared.job.result import JobResult, JobState
from shared.job.routing import routing
from shared.names import queue_name
from shared.settings import Settings


@dataclass(frozen=True)
class Submission:
    """A job ready to send: its QUEUED document, its message body, and its payload when claim-checked."""

    job: Job
    queued: JobResult
    body: str
    payload: str | None
    text_bytes: int = 0  # the job's JSON before compression
    # MessageGroupId and MessageDeduplicationId on a FIFO queue (shared/job/routing.py), else nothing.
    routing: dict[str, str] = field(default_factory=dict)

    @property
    def inline(self) -> bool:
        return self.payload is None

    @property
    def compressed(self) -> bool:
        return self.inline and self.text_bytes > COMPRESS_ABOVE


def prepare(job: Job, queue_url: str | None = None) -> Submission:
    """The job as it travels: plain JSON, compressed above COMPRESS_ABOVE, by claim check when even
    compressed it does not fit a message (the stored payload is the plain text). ``queue_url``: where it
    will be sent; its QUEUED document names that queue, and the worker runs no copy from another."""
    text = job.to_text()
    queued = JobResult(job.job_id, JobState.QUEUED, database=job.database, submitted_at=job.submitted_at,
                       job_digest=job.digest(), queue=queue_name(queue_url) if queue_url else None, label=job.summary)
    size = len(text.encode())
    fields = routing(queue_url or "", job)
    if size <= COMPRESS_ABOVE:
        return Submission(job, queued, text, None, size, fields)
    body = compressed(job.job_id, text)
    if len(body) > MAX_INLINE_MESSAGE:
        return Submission(job, queued, claim_check(job.job_id, job.digest()), text, size, fields)
    return Submission(job, queued, body, None, size, fields)


def check_deployable(job: Job, settings: Settings) -> None:
    """Refuse before sending what the worker would refuse on arrival: a budget over SRDB_MAX_JOB_TIMEOUT."""
    if job.timeout is not None and job.timeout > settings.max_job_timeout:
        raise InvalidJob(f"timeout {job.timeout:g}s is over the limit of {settings.max_job_timeout:g}s "
                         "(SRDB_MAX_JOB_TIMEOUT, below the worker's own timeout)")


def resend_needed(submission: Submission, existing: JobResult | None) -> bool:
    """A job id was already used. Same job still QUEUED: send again (an earlier submit may have died
    before its message left; the worker applies it once); FAILED but retryable (its message was never
    sent, or it was dead-lettered): queue it again. Same job running or finished: nothing to do. A document
    that does not carry this job's digest is another job's, or a forged message's: a conflict."""
    if existing is None:
        return True
    if existing.job_digest != submission.queued.job_digest:
        raise ClientSideError(f"job id {submission.job.job_id} was already used for a different job "
                          f"(its status is {existing.state.value}); submit under another id")
    return existing.state is JobState.QUEUED or (existing.state.final and not existing.settled)


def poll_delays(first: float = 0.05, factor: float = 1.25, cap: float = 1.0) -> Iterator[float]:
    """Pauses between polls, each ``factor`` times the last, up to ``cap``: a job that ends after t seconds is
    seen by about 1.25 t (a 0.25 s write at 0.29 s rather than at 0.41 s, as a factor of 1.5 had it), and
    no wait polls more than once a second once it has waited one. About eleven GETs for a job that takes
    two seconds; a wait queue needs none."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)
