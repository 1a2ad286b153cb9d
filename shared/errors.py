"""The error tree: every error knows whether it is the user's (never retried) or ours (retried), the
exit code the CLI ends with when it meets it, and the PEP 249 exception a driver raises for it."""

from __future__ import annotations

from typing import Any, ClassVar

# The CLI's exit codes (README, "The command line").
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_TIMEOUT, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells count it (128 + SIGINT)


class SrdbError(Exception):
    """Root of every srdb error. ``type`` is the name reported in a FAILED result."""

    retryable = False
    exit_code: ClassVar[int] = EXIT_USAGE
    dbapi: ClassVar[str] = "OperationalError"  # the name of the PEP 249 exception class

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": str(self), "retryable": self.retryable}


class UserError(SrdbError):
    """The job itself is wrong: it fails at once and is never retried."""


class InvalidJob(UserError):
    """The job document is malformed or breaks the schema."""

    dbapi = "ProgrammingError"


class SqlError(UserError):
    """SQLite refused or failed the SQL."""

    dbapi = "ProgrammingError"


class BadValue(SqlError):
    """A value does not fit where it goes: a datatype mismatch, a text or blob too big, an integer overflow."""

    dbapi = "DataError"


class ConstraintViolation(SqlError):
    """A UNIQUE, NOT NULL, CHECK or FOREIGN KEY constraint failed."""

    dbapi = "IntegrityError"


class ReadOnlyViolation(UserError):
    """A job that must only read tried to write."""


class Forbidden(UserError):
    """The SQL tried to reach outside its database (ATTACH, extensions, file pragmas)."""

    dbapi = "NotSupportedError"


def no_version_yet(database: str) -> str:
    """How every part of srdb says that a database has no version: no write has created it."""
    return f"database {database} has no version yet: no write has created it"


class DatabaseNotFound(UserError):
    """History, restore or drop named a database that no write has created yet (the CLI's exit 3, not found)."""

    exit_code = EXIT_NOT_FOUND


class VersionNotFound(UserError):
    """A read as of a version or time that no retained snapshot matches."""

    dbapi = "ProgrammingError"


class Timeout(UserError):
    """The job ran past its time budget and was interrupted."""


class Cancelled(UserError):
    """The job was cancelled while it ran: interrupted, and nothing it did was committed."""


class SerializationFailure(UserError):
    """An interactive transaction's commit found the database changed since the transaction began:
    nothing of it was applied, and running the whole transaction again is the way on."""


class MemoryLimit(UserError):
    """The job needed more memory than SQLite may take in a worker (``SRDB_SQLITE_HEAP_LIMIT``)."""


class ResultTooLarge(UserError):
    """The result is larger than the configured limit."""

    dbapi = "DataError"


class InternalError(UserError):
    """The worker met an error nobody named while handling this job. It is the job's alone: the job
    fails at once (running it again would meet the same error) and the rest of the batch goes on."""

    dbapi = "InternalError"

    @classmethod
    def wrapping(cls, exc: BaseException) -> InternalError:
        error = cls(f"the worker could not handle this job: {type(exc).__name__}: {exc}"[:2000])
        error.__cause__ = exc
        return error


class InfrastructureError(SrdbError):
    """AWS or the lock failed: the message goes back to SQS and is retried."""

    retryable = True
    exit_code = EXIT_UNAVAILABLE


class LockTimeout(InfrastructureError):
    """The database's write lock was not acquired before the deadline. ``held``: another writer held it
    (rather than EC2 throttling or S3 failing every try)."""

    held = False


class LockBusy(LockTimeout):
    """Another worker held the lock past the hand-off wait (it was told the lock is wanted)."""

    held = True


class LockError(InfrastructureError):
    """EC2 refused a lock call for a reason other than contention. ``code``: AWS's error code."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class StorageError(InfrastructureError):
    """S3 failed, or returned data that does not match its hash."""


class WorkerFault(InfrastructureError):
    """The worker itself failed in a way nobody named (a bug): the jobs are retried, and its log holds the
    traceback."""


class DatabaseDamaged(InfrastructureError):
    """The database's S3 objects disagree (a history without a current manifest): nothing is written
    until an operator repairs it, and its jobs are retried, then dead-lettered, never lost."""


class QueueError(InfrastructureError):
    """SQS failed (a job not sent, a dead letter not read)."""


class CommitConflict(InfrastructureError):
    """The manifest changed under the writer (412/409): its jobs run again on the new snapshot."""


class ClientSideError(SrdbError):
    """Raised on the client side (bad arguments, a job id used for another job, job not found, wait
    timed out). Not botocore's ClientError, whose name it once shared."""

    dbapi = "InterfaceError"


class NotConfigured(ClientSideError):
    """A setting the command needs is missing."""

    exit_code = EXIT_UNAVAILABLE


class JobNotFound(ClientSideError):
    """No job with that id was ever submitted."""

    exit_code = EXIT_NOT_FOUND
    dbapi = "ProgrammingError"


class WaitTimeout(ClientSideError):
    """The job did not finish before the wait's timeout."""

    exit_code = EXIT_TIMEOUT
    dbapi = "OperationalError"


def describe(error: dict[str, Any]) -> str:
    """A job's error document as one line: ``Type: message``."""
    return f"{error.get('type')}: {error.get('message')}"


class JobFailed(ClientSideError):
    """The job ended FAILED; ``error`` holds the worker's error document (``error_class`` its class)."""

    exit_code = EXIT_FAILED

    def __init__(self, job_id: str, error: dict[str, Any]) -> None:
        super().__init__(f"job {job_id} failed: {describe(error)}")
        self.job_id = job_id
        self.error = error
        self.shown = False  # the command line printed the job's document already


def error_class(type_name: object) -> type[SrdbError]:
    """The class a job's error document names (``{"type": "ConstraintViolation", ...}``); an unknown
    name (from a newer worker) is an SrdbError, whose meaning is the root's."""
    pending: list[type[SrdbError]] = [SrdbError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == type_name:
            return cls
        pending.extend(cls.__subclasses__())
    return SrdbError
