"""Running one job's statements on a SQLite connection and turning what happens into an outcome.

Whatever goes wrong while a job runs is that job's outcome, never an exception that leaves this
module: a batch never fails because one job's SQL, parameters or values met a case nobody named.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from shared.errors import (
    BadValue,
    Cancelled,
    ConstraintViolation,
    InfrastructureError,
    InternalError,
    InvalidJob,
    MemoryLimit,
    ReadOnlyViolation,
    SqlError,
    SrdbError,
    Timeout,
    UserError,
)
from shared.guard import Guard
from shared.job.model import Job
from shared.job.result import ResultPart
from worker.coltypes import ValueTypes, declared_types, merge
from worker.foreign_keys import explain_statement, is_broken_key
from worker.results import ResultSink

log = logging.getLogger("srdb.worker")
FETCH_ROWS = 1000


@dataclass
class Outcome:
    """What a job did: rows and counts when it succeeded, the error when it failed."""

    job_id: str
    ok: bool
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    parts: list[ResultPart] = field(default_factory=list)
    rowcount: int = 0
    lastrowid: int | None = None
    error: dict[str, Any] | None = None
    run_ms: float = 0.0
    replayed: bool = False
    # True when the job changed nothing: a job on the write path that only read needs no record.
    read_only: bool = False

    @classmethod
    def failed(cls, job_id: str, error: SrdbError, run_ms: float = 0.0) -> Outcome:
        return cls(job_id, False, error=error.to_json(), run_ms=run_ms)


def run_job(
    conn: sqlite3.Connection,
    guard: Guard,
    job: Job,
    sink: ResultSink,
    *,
    budget: float,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Run every statement of ``job``; the caller owns the transaction around it."""
    start = clock()
    try:
        with guard.job(budget):
            outcome = _run(conn, guard, job, sink, budget)
    except UserError as exc:
        return Outcome.failed(job.job_id, exc, (clock() - start) * 1000)
    except InfrastructureError:
        raise  # S3 failed under the job (a page it read, a result part): the job is retried, not failed
    except MemoryError:  # SQLite's heap cap (guard.cap_sqlite_heap) or Python's own: this job's alone
        return Outcome.failed(job.job_id, MemoryLimit(
            "the job needed more memory than a worker allows SQLite (SRDB_SQLITE_HEAP_LIMIT, shared by the jobs "
            "a worker runs at once): make it smaller, e.g. aggregate less at once or page through the rows"),
            (clock() - start) * 1000)
    except Exception as exc:  # confined: this job fails alone, whatever was raised
        log.warning("job %s failed unexpectedly", job.job_id, exc_info=True, extra={"job_id": job.job_id})
        return Outcome.failed(job.job_id, InternalError.wrapping(exc), (clock() - start) * 1000)
    run_ms = (clock() - start) * 1000
    if guard.cancelled.is_set():  # cancelled after its last statement: still not committed, so not applied
        return Outcome.failed(job.job_id, Cancelled("job was cancelled while it ran; nothing it did was committed"),
                              run_ms)
    outcome.run_ms = run_ms
    outcome.read_only = not guard.wrote
    return outcome


def _run(conn: sqlite3.Connection, guard: Guard, job: Job, sink: ResultSink, budget: float) -> Outcome:
    cursor = conn.cursor()
    rowcount = 0
    columns: list[str] = []
    types: list[str] = []
    try:
        for index, statement in enumerate(job.statements):
            guard.refusal = None
            params = statement.decoded()
            try:
                before = conn.total_changes
                if _INCREMENTAL_VACUUM.match(statement.sql) and not guard.read_only:
                    _incremental_vacuum(conn, guard, cursor, statement.sql)
                else:
                    _start(cursor, statement.sql, params)
                changed = cursor.rowcount
                if changed < 0 and cursor.description is None and not guard.read_only:
                    # sqlite3 counts only statements that start INSERT/UPDATE/DELETE/REPLACE: WITH … INSERT too.
                    changed = conn.total_changes - before
                rowcount += max(changed, 0)
                last = index == len(job.statements) - 1
                fetched = 0
                if cursor.description is not None:
                    columns = [d[0] for d in cursor.description]
                    seen = ValueTypes(len(columns))
                    fetched = _drain(cursor, sink if last else None, seen, guard.deadline)
                    if last:
                        rowcount = fetched if guard.read_only else max(rowcount, fetched)
                        types = merge(_declared(conn, guard, statement.sql, len(columns)), seen.found)
                if last and job.transaction is not None and job.transaction.preview:
                    # A transaction's statement counts alone: the ones before it ran before, in earlier previews.
                    rowcount = fetched if cursor.description is not None else max(changed, 0)
            except sqlite3.Error as exc:
                error = job_error(exc, guard, index if len(job.statements) > 1 and job.transaction is None else None,
                                  budget)
                detail = (explain_statement(conn, guard, partial(_start, sql=statement.sql, params=params))
                          if is_broken_key(exc) else None)
                raise (ConstraintViolation(f"{error}: {detail}") if detail else error) from None
        rows, parts = sink.finish()
        columns = columns if cursor.description is not None else []
        lastrowid = None if guard.read_only else cursor.lastrowid
        if lastrowid is None and not guard.read_only and job.kind == "many":
            # sqlite3 leaves lastrowid unset after executemany; SQLite itself knows it.
            with guard.suspended():
                lastrowid = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        return Outcome(job.job_id, True, columns, types if columns else [], rows, parts, rowcount, lastrowid)
    finally:
        cursor.close()


def _start(cursor: sqlite3.Cursor, sql: str, params: list[Any]) -> None:
    """Run a statement with its one parameter set, or each of its many (executemany)."""
    if len(params) == 1:
        cursor.execute(sql, params[0])
    else:
        cursor.executemany(sql, params)


_INCREMENTAL_VACUUM = re.compile(r"\s*PRAGMA\s+(main\s*\.\s*)?incremental_vacuum\b", re.IGNORECASE)


def _incremental_vacuum(conn: sqlite3.Connection, guard: Guard, cursor: sqlite3.Cursor, sql: str) -> None:
    """sqlite3 steps a statement that returns no rows once, and each step of incremental_vacuum frees one
    page: run it until the free list stops shrinking (or it freed the pages the pragma asked for)."""
    asked = re.search(r"\(\s*(\d+)\s*\)|=\s*(\d+)", sql)
    limit = int(asked.group(1) or asked.group(2)) if asked else None
    limit = None if limit == 0 else limit  # 0 or nothing: the whole free list
    freed = 0
    while limit is None or freed < limit:
        with guard.suspended():
            before = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if before == 0:
            return
        cursor.execute(sql)
        with guard.suspended():
            after = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if after >= before:
            return
        freed += before - after


def _declared(conn: sqlite3.Connection, guard: Guard, sql: str, width: int) -> list[str]:
    """Declared column types on the read path and in previews (a scratch copy: the view made to
    learn them stays nowhere); a write's rows (RETURNING) are typed by their values."""
    if not guard.read_only and not guard.scratch:
        return [""] * width
    with guard.suspended():
        return declared_types(conn, sql, width)


def _drain(cursor: sqlite3.Cursor, sink: ResultSink | None, seen: ValueTypes, deadline: float) -> int:
    """Fetch every row. A statement whose rows are kept (the last) has each measured before it is
    encoded: a result over the limit stops before it is held, and the worker's memory for rows being
    encoded is shared by its jobs (worker/memory.py). A job encodes what it holds before it waits for
    others to give memory back. The rows of earlier statements are dropped as they come."""
    if sink is None:
        return sum(1 for _ in cursor)
    count = 0
    batch: list[Any] = []
    try:
        for row in cursor:
            if not sink.admit(row, deadline, wait=not batch):
                count += _feed(batch, sink, seen)
                sink.admit(row, deadline)
            batch.append(row)
            if len(batch) == FETCH_ROWS:
                count += _feed(batch, sink, seen)
        return count + _feed(batch, sink, seen)
    finally:
        sink.release()


def _feed(batch: list[Any], sink: ResultSink, seen: ValueTypes) -> int:
    seen.feed(batch)
    count = len(batch)
    sink.add_values(batch)  # empties the batch as it encodes it
    return count


# Python's sqlite3 refuses a second statement itself, with no SQLite error code: its message is all there is.
_ONE_STATEMENT = "You can only execute one statement at a time."
_BAD_VALUE_CODES = {sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG}


def job_error(exc: sqlite3.Error, guard: Guard, index: int | None, budget: float) -> SrdbError:
    """The job's error, decided by SQLite's own error code (the message is only shown)."""
    where = f"statements[{index}]: " if index is not None else ""
    message = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if guard.refusal is not None:
        refusal = guard.refusal
        return type(refusal)(where + str(refusal))
    if primary == sqlite3.SQLITE_INTERRUPT and guard.cancelled.is_set():
        return Cancelled(f"{where}job was cancelled while it ran and was interrupted; nothing it did was committed")
    if primary == sqlite3.SQLITE_INTERRUPT:
        return Timeout(f"{where}job ran past its time budget of {budget:g}s and was interrupted")
    if "cannot VACUUM from within a transaction" in message:
        return SqlError(f"{where}{message}: send VACUUM as a job of its own (it rebuilds the whole file)")
    if primary is None and message == _ONE_STATEMENT:
        return InvalidJob(f"{where}sql holds more than one statement; send several as `statements`")
    if primary == sqlite3.SQLITE_CONSTRAINT or isinstance(exc, sqlite3.IntegrityError):
        return ConstraintViolation(where + message)
    if primary == sqlite3.SQLITE_READONLY:
        return ReadOnlyViolation(where + "a read-only job tried to write: " + message)
    if primary in _BAD_VALUE_CODES:
        return BadValue(where + message)
    return SqlError(where + message)
