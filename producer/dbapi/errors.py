"""PEP 249's exception classes, and the one an srdb error or a failed job's result names."""

from __future__ import annotations

from typing import Any

from shared.errors import JobFailed, SrdbError, describe, error_class
from shared.job.result import JobResult, JobState


class Warning(Exception):  # PEP 249 names it so
    pass


class Error(Exception):
    """Every driver error. ``error`` is the worker's error document when a job failed."""

    def __init__(self, message: str, *, job_id: str | None = None, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.job_id, self.error = job_id, error or {}


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


class SerializationFailure(OperationalError):
    """The transaction's commit found the database changed since it began: nothing was applied;
    roll back and run the transaction again (srdb extension)."""


def dbapi_class(error: type[SrdbError]) -> type[Error]:
    """The PEP 249 exception an srdb error names for itself (``SrdbError.dbapi``)."""
    if error.__name__ == "SerializationFailure":
        return SerializationFailure
    found = globals().get(error.dbapi)
    return found if isinstance(found, type) and issubclass(found, Error) else OperationalError


def raised(exc: SrdbError) -> Error:
    if isinstance(exc, JobFailed):  # a job of a transaction failed: the class its error names
        return dbapi_class(error_class(exc.error.get("type")))(describe(exc.error), job_id=exc.job_id,
                                                                 error=exc.error)
    return dbapi_class(type(exc))(f"{exc.type}: {exc}")


def job_error(result: JobResult) -> Error:
    if result.state is JobState.CANCELLED:
        return OperationalError(f"job {result.job_id} was cancelled", job_id=result.job_id)
    error = result.error or {}
    return dbapi_class(error_class(error.get("type")))(describe(error), job_id=result.job_id, error=error)


