"""A PEP 249 (DB-API 2.0) driver: srdb's job path behind ``connect``, ``cursor`` and ``execute``.

As PEP 249 asks, a connection is transactional: the first ``execute`` begins an optimistic
transaction (``producer/transaction.py``) whose statements run on its snapshot plus its own
writes, visible to nobody else; ``commit()`` applies them if the database has not changed since
the transaction began and raises ``SerializationFailure`` (an ``OperationalError``; run the
transaction again) if it has; ``rollback()`` forgets them. With ``autocommit = True`` every
``execute`` is one job, committed when it returns. ``executemany`` sends every parameter set in
one job: the batch path.

A block of statements runs as one atomic job inside ``with connection.transaction():`` (or
``cursor.executescript``): the statements are collected and sent when the block ends; if it
raises, or ``rollback()`` is called inside it, nothing is sent.

    >>> import producer.dbapi as srdb
    >>> conn = srdb.connect(database="shop")            # settings from SRDB_* or .srdb/local.env
    >>> cur = conn.cursor()
    >>> cur.execute("SELECT name FROM users WHERE id = ?", (1,))
    >>> cur.fetchone()
"""

from __future__ import annotations

import datetime
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from producer.client import Client
from producer.transaction import Transaction as OpenTransaction
from shared.errors import JobFailed, NotConfigured, SrdbError, describe, error_class
from shared.job.model import AsOf, Job, JsonParams
from shared.job.result import JobResult, JobState
from shared.job.script import statements_of
from shared.job.values import SqlValue, decode_row, encode_value
from shared.settings import Settings

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "qmark"  # :name parameters (a mapping) are accepted too

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])


# -- exceptions ------------------------------------------------------------------------------


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


def _dbapi_class(error: type[SrdbError]) -> type[Error]:
    """The PEP 249 exception an srdb error names for itself (``SrdbError.dbapi``)."""
    if error.__name__ == "SerializationFailure":
        return SerializationFailure
    found = globals().get(error.dbapi)
    return found if isinstance(found, type) and issubclass(found, Error) else OperationalError


def _raised(exc: SrdbError) -> Error:
    if isinstance(exc, JobFailed):  # a job of a transaction failed: the class its error names
        return _dbapi_class(error_class(exc.error.get("type")))(describe(exc.error), job_id=exc.job_id,
                                                                 error=exc.error)
    return _dbapi_class(type(exc))(f"{exc.type}: {exc}")


def _job_error(result: JobResult) -> Error:
    if result.state is JobState.CANCELLED:
        return OperationalError(f"job {result.job_id} was cancelled", job_id=result.job_id)
    error = result.error or {}
    return _dbapi_class(error_class(error.get("type")))(describe(error), job_id=result.job_id, error=error)


# -- types -----------------------------------------------------------------------------------


class DBAPITypeObject:
    """Compares equal to every declared type with one of these SQLite affinities."""

    def __init__(self, *affinities: str) -> None:
        self.affinities = frozenset(affinities)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and affinity(other) in self.affinities

    def __hash__(self) -> int:
        return hash(self.affinities)

    def __repr__(self) -> str:
        return f"DBAPITypeObject{tuple(sorted(self.affinities))}"


def affinity(declared: str) -> str:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html#affinity_name_examples);
    a type that names a date or time is DATETIME here, as PEP 249 asks."""
    name = declared.upper()
    if "INT" in name:
        return "INTEGER"
    if any(word in name for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in name or not name:
        return "BLOB"
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    if "DATE" in name or "TIME" in name:
        return "DATETIME"
    return "NUMERIC"


STRING = DBAPITypeObject("TEXT")
BINARY = DBAPITypeObject("BLOB")
NUMBER = DBAPITypeObject("INTEGER", "REAL", "NUMERIC")
DATETIME = DBAPITypeObject("DATETIME")
ROWID = DBAPITypeObject("INTEGER")


def adapt(value: Any) -> Any:
    """A Python value as a job parameter, adapted as sqlite3 adapts it."""
    if value is None or isinstance(value, (str, int, float)):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return encode_value(bytes(value))
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise ProgrammingError(f"parameter of type {type(value).__name__} is not supported "
                           "(integers, reals, text, bytes, None, dates and times are)")


def _params(params: Sequence[Any] | Mapping[str, Any] | None) -> JsonParams:
    if params is None:
        return []
    if isinstance(params, Mapping):
        return {str(k).lstrip(":@$"): adapt(v) for k, v in params.items()}
    if isinstance(params, (str, bytes)):
        raise ProgrammingError("parameters must be a sequence or a mapping, not a single string")
    return [adapt(v) for v in params]


# -- connection ------------------------------------------------------------------------------


@dataclass
class Transaction:
    """The statements of a ``transaction()`` block; ``result`` is the job's result once it ran."""

    statements: list[tuple[str, JsonParams]] = field(default_factory=list)
    result: JobResult | None = None


def connect(database: str, *, as_of: AsOf | datetime.datetime | None = None, timeout: float | None = 60.0,
            job_timeout: float | None = None, client: Client | None = None, settings: Settings | None = None,
            on_wait: Callable[[JobResult], None] | None = None, create: bool = True, autocommit: bool = False,
            **overrides: Any) -> Connection:
    """Open a connection to ``database``. Settings come from ``settings``, ``overrides`` (the
    Settings field names: bucket, queue_url, endpoint_url, region...), ``SRDB_*`` variables or
    ``.srdb/local.env``. ``as_of`` (a version or a time) makes a read-only connection to an old
    snapshot. ``timeout``: seconds to wait for each job; ``job_timeout``: each job's run budget;
    ``on_wait``: called with the job's status (QUEUED, then RUNNING with ``started_at``) on each poll once
    a wait has passed a second; ``create=False``: a write to a database that does not exist fails
    (OperationalError, DatabaseNotFound) instead of creating it; ``autocommit=True``: each execute is
    committed when it returns, instead of when ``commit()`` is called."""
    try:
        client = client or Client(settings, **overrides)
    except NotConfigured as exc:
        raise InterfaceError(str(exc)) from exc
    except (TypeError, SrdbError) as exc:
        raise InterfaceError(f"cannot connect: {exc}") from exc
    try:
        Job.create(database, "SELECT 1", as_of=as_of)  # the same checks a job gets, now rather than later
    except SrdbError as exc:
        raise ProgrammingError(str(exc)) from exc
    return Connection(client, database, as_of=as_of, timeout=timeout, job_timeout=job_timeout, on_wait=on_wait,
                      create=create, autocommit=autocommit)


class Connection:
    # PEP 249's optional extension: the exception classes as attributes of the connection.
    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError
    SerializationFailure = SerializationFailure

    def __init__(self, client: Client, database: str, *, as_of: AsOf | datetime.datetime | None = None,
                 timeout: float | None = 60.0, job_timeout: float | None = None,
                 on_wait: Callable[[JobResult], None] | None = None, create: bool = True,
                 autocommit: bool = False) -> None:
        self.client, self.database, self.as_of, self.create = client, database, as_of, create
        self.timeout, self.job_timeout, self.on_wait = timeout, job_timeout, on_wait
        self.closed = False
        self._transaction: Transaction | None = None
        self._autocommit = autocommit
        self._open: OpenTransaction | None = None  # the optimistic transaction autocommit off keeps

    @property
    def autocommit(self) -> bool:
        """False (PEP 249's default): statements wait for commit(). An as_of connection only reads,
        one job at a time, whatever this says."""
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if value and self._open is not None:
            self.commit()  # as sqlite3 does: turning autocommit on commits what is pending
        self._autocommit = bool(value)

    def cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self)

    def commit(self) -> None:
        """Apply the open transaction (SerializationFailure if the database changed since it began;
        nothing is applied then). With autocommit on, nothing is pending."""
        self._check_open()
        pending, self._open = self._open, None
        if pending is not None:
            try:
                pending.commit()
            except SrdbError as exc:
                raise _raised(exc) from exc

    def rollback(self) -> None:
        """Forget the open transaction (nothing of it was applied); inside a transaction block, drop
        the statements collected so far (nothing was sent)."""
        self._check_open()
        if self._open is not None:
            self._open.rollback()
            self._open = None
        if self._transaction is not None:
            self._transaction.statements.clear()

    def close(self) -> None:
        """Close; an open transaction is rolled back (PEP 249)."""
        self._check_open()
        if self._open is not None:
            self._open.rollback()
            self._open = None
        self.closed = True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Collect the statements executed in the block and run them as one atomic job at its end."""
        self._check_open()
        if self._transaction is not None:
            raise ProgrammingError("transaction blocks do not nest")
        self.commit()  # what the open transaction holds comes first (as sqlite3's executescript does)
        block = self._transaction = Transaction()
        try:
            yield block
        finally:
            self._transaction = None
        if block.statements:
            block.result = self.run_statements(block.statements)

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None

    def run_statements(self, statements: list[tuple[str, JsonParams]]) -> JobResult:
        self._check_writable("a transaction block or script")
        if self._transaction is None:
            self.commit()  # a script outside a block: the open transaction's statements come first
        return self._run(lambda: self.client.submit_statements(
            self.database, [(sql, params) for sql, params in statements], timeout=self.job_timeout,
            create=self.create))

    def run(self, sql: str, params: JsonParams, many: list[JsonParams] | None = None) -> JobResult:
        """Run one statement as one job and wait for it; a failed job raises its DB-API error."""
        if self._transaction is not None:
            if many is not None:
                raise NotSupportedError("executemany inside a transaction block: use one execute per set, "
                                        "or executemany outside the block (it is one atomic job already)")
            self._transaction.statements.append((sql, params))
            return JobResult("", JobState.QUEUED)
        if not self._autocommit and self.as_of is None:
            return self._in_transaction(sql, params, many)
        if many is not None:
            self._check_writable("executemany")
            return self._run(lambda: self.client.submit_many(self.database, sql, many, timeout=self.job_timeout,
                                                             create=self.create))
        return self._run(lambda: self.client.submit(self.database, sql, params, timeout=self.job_timeout,
                                                    as_of=self.as_of, read_only=self.as_of is not None,
                                                    create=self.create))

    def _in_transaction(self, sql: str, params: JsonParams, many: list[JsonParams] | None) -> JobResult:
        self._check_open()
        if self._open is not None and not self._open.steps.writes and self._open.steps.expired():
            self._open = None  # a transaction that only read ends as it would commit: nothing to apply
        if self._open is None:
            self._open = self.client.transaction(self.database, timeout=self.timeout, job_timeout=self.job_timeout,
                                                 create=self.create, on_slow=self.on_wait)
        try:
            return self._open.executemany(sql, many) if many is not None else self._open.execute(sql, params)
        except SrdbError as exc:
            raise _raised(exc) from exc

    def _run(self, submit: Any) -> JobResult:
        self._check_open()
        try:
            job_id = submit()
            result = self.client.wait(job_id, self.timeout, on_slow=self.on_wait)
        except SrdbError as exc:  # refused before it was sent, or the wait failed: the error says which class
            raise _raised(exc) from exc
        if result.state is JobState.SUCCEEDED:
            return result
        raise _job_error(result)

    def _check_open(self) -> None:
        if self.closed:
            raise ProgrammingError("the connection is closed")

    def _check_writable(self, what: str) -> None:
        if self.as_of is not None:
            raise OperationalError(f"{what} on a connection as_of {self.as_of}: such a connection only reads, "
                                   "one execute at a time")


# -- cursor ----------------------------------------------------------------------------------


class Cursor:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self.closed = False
        self._result: JobResult | None = None
        self._rows: Iterator[list[Any]] = iter(())

    # -- PEP 249 attributes --------------------------------------------------------------------

    @property
    def description(self) -> tuple[tuple[str, str | None, None, None, None, None, None], ...] | None:
        result = self._result
        if result is None or not result.columns:
            return None
        types = result.types or [""] * len(result.columns)
        return tuple((name, kind.upper() or None, None, None, None, None, None)
                     for name, kind in zip(result.columns, types, strict=True))

    @property
    def rowcount(self) -> int:
        return -1 if self._result is None or not self._result.state.final else self._result.rowcount

    @property
    def lastrowid(self) -> int | None:
        return None if self._result is None else self._result.lastrowid

    @property
    def job_id(self) -> str | None:
        """The id of the job the last execute ran (srdb extension)."""
        return self._result.job_id if self._result is not None else None

    @property
    def version(self) -> int | None:
        """The snapshot version the last execute read or committed (srdb extension)."""
        return self._result.version if self._result is not None else None

    # -- execute -------------------------------------------------------------------------------

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        self._check_open()
        self._set(self.connection.run(sql, _params(parameters)))
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterator[Any] | Sequence[Any]) -> Cursor:
        self._check_open()
        sets = [_params(p) for p in seq_of_parameters]
        if not sets:
            self._set(JobResult("", JobState.SUCCEEDED))
            return self
        self._set(self.connection.run(sql, [], many=sets))
        return self

    def executescript(self, script: str) -> Cursor:
        """Run every statement of ``script`` as one atomic job (srdb's ``statements``)."""
        self._check_open()
        statements = statements_of(script)
        if not statements:
            return self
        if self.connection.in_transaction:
            for sql in statements:
                self.connection.run(sql, [])
            self._set(JobResult("", JobState.QUEUED))
        else:
            self._set(self.connection.run_statements([(sql, []) for sql in statements]))
        return self

    def _set(self, result: JobResult) -> None:
        self._result = result
        store = self.connection.client.store
        self._rows = store.iter_rows(result) if result.state is JobState.SUCCEEDED else iter(())

    # -- fetch ---------------------------------------------------------------------------------

    def fetchone(self) -> tuple[SqlValue, ...] | None:
        self._check_result()
        row = next(self._rows, None)
        return None if row is None else tuple(decode_row(row))

    def fetchmany(self, size: int | None = None) -> list[tuple[SqlValue, ...]]:
        self._check_result()
        out = []
        for _ in range(self.arraysize if size is None else size):
            row = next(self._rows, None)
            if row is None:
                break
            out.append(tuple(decode_row(row)))
        return out

    def fetchall(self) -> list[tuple[SqlValue, ...]]:
        self._check_result()
        return [tuple(decode_row(row)) for row in self._rows]

    def __iter__(self) -> Iterator[tuple[SqlValue, ...]]:
        return self

    def __next__(self) -> tuple[SqlValue, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def setinputsizes(self, sizes: Any) -> None:
        self._check_open()

    def setoutputsize(self, size: int, column: int | None = None) -> None:
        self._check_open()

    def close(self) -> None:
        self._check_open()
        self.closed = True
        self._rows = iter(())

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ProgrammingError("the cursor is closed")
        self.connection._check_open()

    def _check_result(self) -> None:
        self._check_open()
        if self._result is None:
            raise ProgrammingError("no statement has been executed")
        if not self._result.state.final:
            raise ProgrammingError("statements in a transaction block have no results until the block ends")
        if not self._result.columns:
            raise ProgrammingError("the last statement returned no rows to fetch")


# The SQLite that runs the SQL is the worker's; workers and clients on the same Python share it.
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info
