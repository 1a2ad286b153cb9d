"""The error tree: every error knows whether it is the user's (never retried) or ours (retried)."""

from __future__ import annotations

from typing import Any


class SrdbError(Exception):
    """Root of every srdb error. ``type`` is the name reported in a FAILED result."""

    retryable = False

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": str(self), "retryable": self.retryable}


class UserError(SrdbError):
    """The job itself is wrong: it fails at once and is never retried."""


class InvalidJob(UserError):
    """The job document is malformed or breaks the schema."""


class SqlError(UserError):
    """SQLite refused or failed the SQL."""


class ConstraintViolation(SqlError):
    """A UNIQUE, NOT NULL, CHECK or FOREIGN KEY constraint failed."""


class ReadOnlyViolation(UserError):
    """A job that must only read tried to write."""


class Forbidden(UserError):
    """The SQL tried to reach outside its database (ATTACH, extensions, file pragmas)."""


class DatabaseNotFound(UserError):
    """A read named a database that no write has created yet."""


class VersionNotFound(UserError):
    """A read as of a version or time that no retained snapshot matches."""


class Timeout(UserError):
    """The job ran past its time budget and was interrupted."""


class ResultTooLarge(UserError):
    """The result is larger than the configured limit."""


class InternalError(UserError):
    """The worker met an error nobody named while handling this job. It is the job's alone: the job
    fails at once (running it again would meet the same error) and the rest of the batch goes on."""

    @classmethod
    def wrapping(cls, exc: BaseException) -> InternalError:
        error = cls(f"the worker could not handle this job: {type(exc).__name__}: {exc}"[:2000])
        error.__cause__ = exc
        return error


class InfrastructureError(SrdbError):
    """AWS or the lock failed: the message goes back to SQS and is retried."""

    retryable = True


class LockTimeout(InfrastructureError):
    """The database's write lock was not acquired before the deadline."""


class LockError(InfrastructureError):
    """EC2 refused a lock call for a reason other than contention. ``code``: AWS's error code."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class StorageError(InfrastructureError):
    """S3 failed, or returned data that does not match its hash."""


class DatabaseDamaged(InfrastructureError):
    """The database's S3 objects disagree (a history without a current manifest): nothing is written
    until an operator repairs it, and its jobs are retried, then dead-lettered, never lost."""


class QueueError(InfrastructureError):
    """SQS failed (a job not sent, a dead letter not read)."""


class CommitConflict(InfrastructureError):
    """The manifest changed under the writer (412/409): its jobs run again on the new snapshot."""


class ClientError(SrdbError):
    """Raised on the client side (bad arguments, job not found, wait timed out)."""


class NotConfigured(ClientError):
    """A setting the command needs is missing."""


class JobNotFound(ClientError):
    """No job with that id was ever submitted."""


class WaitTimeout(ClientError):
    """The job did not finish before the wait's timeout."""


def describe(error: dict[str, Any]) -> str:
    """A job's error document as one line: ``Type: message``."""
    return f"{error.get('type')}: {error.get('message')}"


class JobFailed(ClientError):
    """The job ended FAILED; ``error`` holds the worker's error document."""

    def __init__(self, job_id: str, error: dict[str, Any]) -> None:
        super().__init__(f"job {job_id} failed: {describe(error)}")
        self.job_id = job_id
        self.error = error
