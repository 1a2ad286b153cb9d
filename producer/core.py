"""One client core under both clients: every decision of submitting, waiting, cancelling and reading
results is written once here, as a generator that yields the I/O it needs and is sent the answers.
``Client`` answers with boto3, ``AsyncClient`` with aioboto3; only the awaiting differs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from producer.protocol import Submission, check_deployable, poll_delays, resend_needed
from shared.errors import JobFailed, JobNotFound, QueueError, WaitTimeout
from shared.job.result import JobResult, JobState
from shared.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class GetStatus:
    """Answer: (JobResult | None, etag | None)."""

    job_id: str


@dataclass(frozen=True)
class PutStatus:
    """Answer: True when written, False when its condition failed."""

    result: JobResult
    if_match: str | None = None
    if_none_match: bool = False


@dataclass(frozen=True)
class Send:
    """Store a claim-checked payload if there is one, then send the message. Answer: None."""

    submission: Submission


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Clock:
    """Answer: the client's monotonic clock."""


Op = GetStatus | PutStatus | Send | Sleep | Clock
Flow = Generator[Op, Any, T]


def submit(submission: Submission, settings: Settings) -> Flow[str]:
    """QUEUED document first, then the message (see :func:`queue`)."""
    if (yield from queue(submission, settings)):
        yield Send(submission)
    return submission.job.job_id


def queue(submission: Submission, settings: Settings) -> Flow[bool]:
    """Write the QUEUED document (If-None-Match: a job id is used once); True when the message must
    be sent. A job id used before is sent again only while its job is the same and still QUEUED."""
    job = submission.job
    check_deployable(job, settings)
    if not (yield PutStatus(submission.queued, if_none_match=True)):
        existing, _ = yield GetStatus(job.job_id)
        return resend_needed(submission, existing)
    return True


def message_batches(submissions: list[Submission], *, count: int = 10,
                    size: int = 256 * 1024 - 1024) -> Iterator[list[Submission]]:
    """Submissions grouped for SendMessageBatch: at most ``count`` messages and ``size`` bytes a batch."""
    batch: list[Submission] = []
    total = 0
    for submission in submissions:
        length = len(submission.body.encode())
        if batch and (len(batch) == count or total + length > size):
            yield batch
            batch, total = [], 0
        batch.append(submission)
        total += length
    if batch:
        yield batch


def batch_entries(submissions: list[Submission]) -> list[dict[str, str]]:
    return [{"Id": str(i), "MessageBody": s.body} for i, s in enumerate(submissions)]


def check_batch_sent(submissions: list[Submission], response: dict[str, Any]) -> None:
    """QueueError naming the jobs SQS did not take; their QUEUED documents stand, so submitting the same
    jobs again under the same ids sends them."""
    failed = [submissions[int(f["Id"])].job.job_id for f in response.get("Failed", [])]
    if failed:
        raise QueueError(f"SQS did not take job(s) {', '.join(failed)}: submit them again under the same ids")


def status(job_id: str) -> Flow[JobResult]:
    result, _ = yield GetStatus(job_id)
    return result or JobResult.not_found(job_id)


def wait(job_id: str, timeout: float | None, on_slow: Callable[[JobResult], None] | None = None,
         slow_after: float = 1.0) -> Flow[JobResult]:
    """Poll until the job ends. JobNotFound for an unknown id, WaitTimeout after ``timeout`` seconds;
    ``on_slow`` is called once with the job's status when the wait passes ``slow_after`` seconds."""
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
            on_slow = None
        if deadline is not None and now + delay > deadline:
            raise WaitTimeout(f"job {job_id} still {result.state.value} after {timeout:g}s")
        yield Sleep(delay)
    raise AssertionError("unreachable")


def cancel(job_id: str) -> Flow[JobState]:
    """Mark a QUEUED job CANCELLED by a conditional write on the document it read; the state now."""
    found: tuple[JobResult | None, str | None] = yield GetStatus(job_id)
    current, etag = found
    if current is None:
        return JobState.NOT_FOUND
    if current.state is not JobState.QUEUED:
        return current.state
    current.state = JobState.CANCELLED
    if (yield PutStatus(current, if_match=etag)):
        return JobState.CANCELLED
    latest: JobResult = yield from status(job_id)
    return latest.state


def succeeded(result: JobResult) -> JobResult:
    """The result of a job that succeeded; JobFailed naming the error otherwise (query, results)."""
    if result.state is not JobState.SUCCEEDED:
        raise JobFailed(result.job_id, result.error or {"type": result.state.value, "message": "job did not succeed"})
    return result
