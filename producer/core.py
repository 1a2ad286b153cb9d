"""One client core under both clients: every decision of submitting, waiting, cancelling and reading
results is written once here, as a generator that yields the I/O it needs and is sent the answers.
``Client`` answers with boto3, ``AsyncClient`` with aioboto3; only the awaiting differs.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from producer.protocol import Submission, check_deployable, poll_delays, resend_needed
from shared.errors import JobFailed, JobNotFound, QueueError, SrdbError, WaitTimeout
from shared.job.result import JobResult, JobState
from shared.settings import Settings
from shared.sqs_batches import send_batches

T = TypeVar("T")


@dataclass(frozen=True)
class GetStatus:
    """Answer: (JobResult | None, etag | None)."""

    job_id: str


@dataclass(frozen=True)
class PutStatus:
    """Answer: the document's new ETag, or None when its condition failed."""

    result: JobResult
    if_match: str | None = None
    if_none_match: bool = False


@dataclass(frozen=True)
class Send:
    """Store a claim-checked payload if there is one, then send the message. Answer: None."""

    submission: Submission


@dataclass(frozen=True)
class SendBatch:
    """Store each claim-checked payload, then send the messages in one SendMessageBatch.
    Answer: the ids of the jobs SQS did not take."""

    submissions: list[Submission]


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Clock:
    """Answer: the client's monotonic clock."""


Op = GetStatus | PutStatus | Send | SendBatch | Sleep | Clock
Flow = Generator[Op, Any, T]


def submit(submission: Submission, settings: Settings) -> Flow[str]:
    """QUEUED document first, then the message (see :func:`queue`). A message that cannot be sent leaves
    the job FAILED, never QUEUED for ever; submitting it again under the same id sends it."""
    etag = yield from queue(submission, settings)
    if etag is not None:
        try:
            yield Send(submission)
        except SrdbError as exc:
            yield from _not_sent([(submission, etag)], exc)
            raise
    return submission.job.job_id


def submit_batch(pairs: list[tuple[Submission, str]]) -> Flow[None]:
    """Send queued jobs (each with its QUEUED document's ETag) ten to a request; a job SQS did not take
    is left FAILED (see :func:`submit`), and QueueError names them."""
    etags = {s.job.job_id: etag for s, etag in pairs}
    for batch in send_batches([s for s, _ in pairs], lambda submission: submission.body):
        try:
            refused = yield SendBatch(batch)
        except SrdbError as exc:
            yield from _not_sent([(s, etags[s.job.job_id]) for s in batch], exc)
            raise
        if refused:
            error = QueueError(f"SQS did not take job(s) {', '.join(refused)}: submit them again under the same ids")
            yield from _not_sent([(s, etags[s.job.job_id]) for s in batch if s.job.job_id in refused], error)
            raise error


def _not_sent(pairs: list[tuple[Submission, str]], exc: SrdbError) -> Flow[None]:
    """Each job's QUEUED document becomes FAILED (retryable: submitting it again sends it), over the document
    this client wrote only: a worker that got the message after all has its say."""
    for submission, etag in pairs:
        error = {"type": exc.type, "retryable": True, "message": (
            f"the job was not sent to the queue ({exc}); submit it again under the same id (it runs once)")}
        failed = JobResult(submission.job.job_id, JobState.FAILED, database=submission.job.database,
                           error=error, submitted_at=submission.job.submitted_at,
                           job_digest=submission.queued.job_digest, label=submission.queued.label)
        with contextlib.suppress(SrdbError):  # S3 may be what failed: the send's error is the one to raise
            yield PutStatus(failed, if_match=etag)


def queue(submission: Submission, settings: Settings) -> Flow[str | None]:
    """Write the QUEUED document (If-None-Match: a job id is used once); its ETag when the message must
    be sent, None when not. A job id used before is sent again only while its job is the same and still
    QUEUED, or FAILED because its message was never sent."""
    job = submission.job
    check_deployable(job, settings)
    written: str | None = yield PutStatus(submission.queued, if_none_match=True)
    if written is not None:
        return written
    found: tuple[JobResult | None, str | None] = yield GetStatus(job.job_id)
    existing, etag = found
    if not resend_needed(submission, existing):
        return None
    if existing is None or existing.state is not JobState.QUEUED:  # queued again over its failure
        written = yield PutStatus(submission.queued, if_match=etag, if_none_match=existing is None)
        return written
    return etag


def batch_entries(submissions: list[Submission]) -> list[dict[str, str]]:
    return [{"Id": str(i), "MessageBody": s.body, **s.routing} for i, s in enumerate(submissions)]


def refused_ids(submissions: list[Submission], response: dict[str, Any]) -> list[str]:
    """The ids of the jobs a SendMessageBatch response says SQS did not take."""
    return [submissions[int(f["Id"])].job.job_id for f in response.get("Failed", [])]


def status(job_id: str) -> Flow[JobResult]:
    result, _ = yield GetStatus(job_id)
    return result or JobResult.not_found(job_id)


def wait(job_id: str, timeout: float | None, on_slow: Callable[[JobResult], None] | None = None,
         slow_after: float = 1.0) -> Flow[JobResult]:
    """Poll until the job ends. JobNotFound for an unknown id, WaitTimeout after ``timeout`` seconds;
    ``on_slow`` is called with the job's status on every poll once the wait has passed ``slow_after``
    seconds (QUEUED, then RUNNING for a job that runs long)."""
    started = yield Clock()
    deadline = None if timeout is None else started + timeout
    for delay in poll_delays():
        result = yield from status(job_id)
        if result.state is JobState.NOT_FOUND:
            raise JobNotFound(f"job {job_id} was never submitted")
        if result.state.final:
            return result
        now = yield Clock()
        if on_slow is not None and now - started > slow_after:  # said even when the wait ends now
            on_slow(result)
        if deadline is not None and now + delay > deadline:
            raise WaitTimeout(f"job {job_id} still {result.state.value} after {timeout:g}s")
        yield Sleep(delay)
    raise AssertionError("unreachable")


def cancel(job_id: str, settle: float = 5.0) -> Flow[JobState]:
    """Cancel a job no worker has finished, by a conditional write on the document it read; the state now.

    A QUEUED job never runs. A RUNNING one is interrupted by its worker within about a second and rolled
    back; this waits up to ``settle`` seconds for the worker to say so, and returns what became of the job:
    CANCELLED, or SUCCEEDED when a write had finished its statements first (its commit then stands)."""
    for _ in range(3):  # the document may change under us (QUEUED → RUNNING): read it again
        found: tuple[JobResult | None, str | None] = yield GetStatus(job_id)
        current, etag = found
        if current is None:
            return JobState.NOT_FOUND
        if current.state not in (JobState.QUEUED, JobState.RUNNING):
            return current.state
        running = current.state is JobState.RUNNING
        when = "while it ran" if running else "before it ran"
        cancelled = JobResult(job_id, JobState.CANCELLED, database=current.database,
                              submitted_at=current.submitted_at, started_at=current.started_at,
                              job_digest=current.job_digest, label=current.label,
                              error={"type": "Cancelled", "message": f"cancelled by its owner {when}"})
        if (yield PutStatus(cancelled, if_match=etag)):
            return (yield from _settled(job_id, settle)) if running else JobState.CANCELLED
    latest: JobResult = yield from status(job_id)
    return latest.state


def _settled(job_id: str, settle: float) -> Flow[JobState]:
    """The state a cancelled RUNNING job ends in: its worker writes the final document (finished_at set)."""
    started = yield Clock()
    for delay in poll_delays(first=0.2, cap=0.5):
        latest = yield from status(job_id)
        if latest.state is not JobState.CANCELLED or latest.finished_at is not None:
            return latest.state
        now = yield Clock()
        if now - started + delay > settle:
            return JobState.CANCELLED  # no word from the worker yet; its redelivery will see CANCELLED
        yield Sleep(delay)
    raise AssertionError("unreachable")


def succeeded(result: JobResult) -> JobResult:
    """The result of a job that succeeded; JobFailed naming the error otherwise (query, results)."""
    if result.state is not JobState.SUCCEEDED:
        raise JobFailed(result.job_id, result.error or {"type": result.state.value, "message": "job did not succeed"})
    return result


def transaction_attempts(attempts: int) -> Iterator[tuple[int, float]]:
    """``run_transaction``'s one retry schedule, for both clients: (attempt, seconds to pause before it);
    no pause before the first, then a short random one growing with each SerializationFailure."""
    for attempt in range(1, attempts + 1):
        yield attempt, 0.0 if attempt == 1 else random.uniform(0.05, 0.2) * (attempt - 1)
