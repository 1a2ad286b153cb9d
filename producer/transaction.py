"""Interactive transactions, optimistic: BEGIN, read, write, COMMIT or ROLLBACK with no server to hold them.

A transaction begins at the snapshot its first statement runs on (its *base*). Each statement is a
job that runs the transaction's statements so far, and then the new one, on a scratch copy of the
base snapshot, returns the new one's result and commits nothing (a *preview*): the transaction
reads its own writes, and nobody else sees them. COMMIT sends every statement as one write job that
applies them, under the lock, only if the database is still at the base version — nothing
committed since — and otherwise fails ``SerializationFailure`` having applied nothing. ROLLBACK sends
nothing. A transaction that only read commits nothing and cannot fail.

The rule gives **serializable** isolation: a commit applies exactly the statements the client saw
run, on exactly the state they ran on, so the transaction takes effect as if it ran alone at the
moment of its commit. The price is that any commit to the same database in between — even one to
another table — fails it; retrying is the client's part (``Client.run_transaction`` does it). SQL
whose result is not a function of the database (``random()``, ``datetime('now')``) is evaluated
again by the commit: the stored value may differ from the one the preview returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.errors import ClientSideError, JobFailed, SerializationFailure, SrdbError
from shared.job.classify import is_read_statement
from shared.job.model import MAX_STATEMENTS, Job, JsonParams, TxStep
from shared.job.result import JobResult, JobState

# Each preview runs every earlier statement again, so a transaction's cost grows with the square of its
# length: a thousand statements, and an hour (well inside the retention window that keeps its base).
MAX_TRANSACTION_SECONDS = 3600.0


class TransactionClosed(ClientSideError):
    """The transaction was committed or rolled back already."""


class Steps:
    """What both clients' transactions keep: the base, the statements that ran, whether one wrote;
    the jobs to send next, and what their results mean. No I/O."""

    def __init__(self, database: str, *, job_timeout: float | None, create: bool, clock: Callable[[], float],
                 max_seconds: float) -> None:
        self.database, self.job_timeout, self.create = database, job_timeout, create
        self.clock, self.max_seconds = clock, max_seconds
        self.base: int | None = None  # the snapshot version it began at (after its first statement)
        self.snapshot: str | None = None  # and that snapshot's id, which no other database's shares
        self.statements: list[tuple[str, list[JsonParams]]] = []
        self.writes = False
        self.closed = False
        self.started = clock()

    def preview(self, sql: str, param_sets: list[JsonParams]) -> Job:
        self.check_open()
        if len(self.statements) >= MAX_STATEMENTS:
            raise ClientSideError(f"a transaction holds at most {MAX_STATEMENTS} statements: commit and begin another")
        if self.expired():
            raise ClientSideError(f"the transaction has been open longer than {self.max_seconds:g}s, the longest "
                                  "srdb keeps one: roll it back and begin again")
        return Job.create(self.database, statement_sets=[*self.statements, (sql, param_sets)],
                          timeout=self.job_timeout, create=self.create,
                          transaction=TxStep(self.base, preview=True, snapshot=self.snapshot))

    def expired(self) -> bool:
        return self.clock() - self.started > self.max_seconds

    def ran(self, sql: str, param_sets: list[JsonParams], result: JobResult) -> JobResult:
        """A preview's result: the statement is the transaction's now (a failed one is not: JobFailed)."""
        _succeeded(result)
        if self.base is None:
            self.base, self.snapshot = result.version or 0, result.snapshot
        self.statements.append((sql, param_sets))
        self.writes = self.writes or not _reads_only(sql)
        return result

    def commit_job(self) -> Job | None:
        """The commit to send; None when the transaction only read (nothing to apply). Ends it."""
        self.check_open()
        self.closed = True
        if not self.writes:
            return None
        assert self.base is not None
        return Job.create(self.database, statement_sets=self.statements, timeout=self.job_timeout,
                          create=self.create, transaction=TxStep(self.base, preview=False, snapshot=self.snapshot))

    @staticmethod
    def committed(result: JobResult) -> JobResult:
        return _succeeded(result)

    def check_open(self) -> None:
        if self.closed:
            raise TransactionClosed("the transaction has ended (committed or rolled back): begin another")


class Transaction:
    """One optimistic transaction on one database (``Client.transaction``)."""

    def __init__(self, client: Any, database: str, *, timeout: float | None = 60.0, job_timeout: float | None = None,
                 create: bool = True, on_slow: Callable[[JobResult], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_seconds: float = MAX_TRANSACTION_SECONDS) -> None:
        self.client, self.timeout, self.on_slow = client, timeout, on_slow
        self.steps = Steps(database, job_timeout=job_timeout, create=create, clock=clock, max_seconds=max_seconds)

    @property
    def base(self) -> int | None:
        return self.steps.base

    def execute(self, sql: str, params: JsonParams | None = None) -> JobResult:
        """Run ``sql`` inside the transaction and return its result; JobFailed if it fails (the
        transaction goes on without it, as a failed statement in SQLite's own transactions)."""
        return self.executemany(sql, [params if params is not None else []])

    def executemany(self, sql: str, param_sets: list[JsonParams]) -> JobResult:
        job = self.steps.preview(sql, param_sets)
        return self.steps.ran(sql, param_sets, self._wait(self.client.submit_job(job)))

    def commit(self) -> JobResult | None:
        """Apply the transaction if the database is still at its base; SerializationFailure otherwise.
        None when it only read (nothing to apply)."""
        job = self.steps.commit_job()
        return None if job is None else self.steps.committed(self._wait(self.client.submit_job(job)))

    def rollback(self) -> None:
        """Forget the transaction: nothing of it was ever applied."""
        self.steps.closed = True

    def _wait(self, job_id: str) -> JobResult:
        result: JobResult = self.client.wait(job_id, self.timeout, on_slow=self.on_slow)
        return result

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if self.steps.closed:
            return
        if kind is None:
            self.commit()
        else:
            self.rollback()


class AsyncTransaction:
    """``Transaction`` for the ``AsyncClient``: ``async with client.transaction(db) as tx:``."""

    def __init__(self, client: Any, database: str, *, timeout: float | None = 60.0, job_timeout: float | None = None,
                 create: bool = True, clock: Callable[[], float] = time.monotonic,
                 max_seconds: float = MAX_TRANSACTION_SECONDS) -> None:
        self.client, self.timeout = client, timeout
        self.steps = Steps(database, job_timeout=job_timeout, create=create, clock=clock, max_seconds=max_seconds)

    @property
    def base(self) -> int | None:
        return self.steps.base

    async def execute(self, sql: str, params: JsonParams | None = None) -> JobResult:
        return await self.executemany(sql, [params if params is not None else []])

    async def executemany(self, sql: str, param_sets: list[JsonParams]) -> JobResult:
        job = self.steps.preview(sql, param_sets)
        return self.steps.ran(sql, param_sets, await self.client.wait(await self.client.submit_job(job), self.timeout))

    async def commit(self) -> JobResult | None:
        job = self.steps.commit_job()
        if job is None:
            return None
        return self.steps.committed(await self.client.wait(await self.client.submit_job(job), self.timeout))

    async def rollback(self) -> None:
        self.steps.closed = True

    async def __aenter__(self) -> AsyncTransaction:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if self.steps.closed:
            return
        if kind is None:
            await self.commit()
        else:
            await self.rollback()


def _reads_only(sql: str) -> bool:
    try:
        return is_read_statement(sql)
    except SrdbError:
        return False


def _succeeded(result: JobResult) -> JobResult:
    """The result of a step that succeeded; SerializationFailure when the transaction cannot go on (its base
    is gone), JobFailed for a statement that failed alone."""
    if result.state is JobState.FAILED and (result.error or {}).get("type") == SerializationFailure.__name__:
        raise SerializationFailure(str((result.error or {}).get("message")))
    if result.state is not JobState.SUCCEEDED:
        raise JobFailed(result.job_id, result.error or {"type": "Cancelled", "message": "the job was cancelled"})
    return result
