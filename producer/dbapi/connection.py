"""``connect`` and the connection: autocommit jobs, an optimistic transaction, statement blocks."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from producer.client import Client
from producer.dbapi.cursor import Cursor
from producer.dbapi.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    SerializationFailure,
    Warning,
    job_error,
    raised,
)
from producer.transaction import Transaction as OpenTransaction
from shared.errors import NotConfigured, SrdbError
from shared.job.model import AsOf, Job, JsonParams
from shared.job.result import JobResult, JobState
from shared.settings import Settings


@dataclass
class StatementBlock:
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
        self._transaction: StatementBlock | None = None
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
                raise raised(exc) from exc

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
    def transaction(self) -> Iterator[StatementBlock]:
        """Collect the statements executed in the block and run them as one atomic job at its end."""
        self._check_open()
        if self._transaction is not None:
            raise ProgrammingError("transaction blocks do not nest")
        self.commit()  # what the open transaction holds comes first (as sqlite3's executescript does)
        block = self._transaction = StatementBlock()
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
            raise raised(exc) from exc

    def _run(self, submit: Any) -> JobResult:
        self._check_open()
        try:
            job_id = submit()
            result = self.client.wait(job_id, self.timeout, on_slow=self.on_wait)
        except SrdbError as exc:  # refused before it was sent, or the wait failed: the error says which class
            raise raised(exc) from exc
        if result.state is JobState.SUCCEEDED:
            return result
        raise job_error(result)

    def _check_open(self) -> None:
        if self.closed:
            raise ProgrammingError("the connection is closed")

    def _check_writable(self, what: str) -> None:
        if self.as_of is not None:
            raise OperationalError(f"{what} on a connection as_of {self.as_of}: such a connection only reads, "
                                   "one execute at a time")


