"""Running one job's statements on a SQLite connection and turning what happens into an outcome."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConstraintViolation, ReadOnlyViolation, SqlError, SrdbError, Timeout, UserError
from shared.jobs import Job
from shared.results import ResultPart
from shared.sql import Guard
from shared.values import encode_row
from worker.coltypes import ValueTypes, declared_types, merge
from worker.results import ResultSink

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

    @classmethod
    def failed(cls, job_id: str, error: SrdbError) -> Outcome:
        return cls(job_id, False, error=error.to_json())


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
    guard.deadline = start + budget
    guard.enabled = True
    cursor = conn.cursor()
    rowcount = 0
    columns: list[str] = []
    types: list[str] = []
    try:
        for index, statement in enumerate(job.statements):
            guard.refusal = None
            params = statement.decoded()
            try:
                if len(params) == 1:
                    cursor.execute(statement.sql, params[0])
                else:
                    cursor.executemany(statement.sql, params)
                rowcount += max(cursor.rowcount, 0)
                last = index == len(job.statements) - 1
                if cursor.description is not None:
                    columns = [d[0] for d in cursor.description]
                    seen = ValueTypes(len(columns))
                    fetched = _drain(cursor, sink if last else None, seen)
                    if last:
                        rowcount = fetched if guard.read_only else max(rowcount, fetched)
                        types = merge(_declared(conn, guard, statement.sql, len(columns)), seen.found)
            except sqlite3.Error as exc:
                raise _job_error(exc, guard, index if len(job.statements) > 1 else None,
                                 budget) from None
        rows, parts = sink.finish()
        columns = columns if cursor.description is not None else []
        lastrowid = None if guard.read_only else cursor.lastrowid
        if lastrowid is None and not guard.read_only and job.kind == "many":
            # sqlite3 leaves lastrowid unset after executemany; SQLite itself knows it.
            lastrowid = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        return Outcome(job.job_id, True, columns, types if columns else [], rows, parts, rowcount, lastrowid,
                       run_ms=(clock() - start) * 1000)
    except UserError as exc:
        return Outcome(job.job_id, False, error=exc.to_json(), run_ms=(clock() - start) * 1000)
    finally:
        guard.enabled = False
        guard.deadline = float("inf")
        cursor.close()


def _declared(conn: sqlite3.Connection, guard: Guard, sql: str, width: int) -> list[str]:
    """Declared column types on the read path; a write's rows (RETURNING) are typed by their values."""
    if not guard.read_only:
        return [""] * width
    guard.enabled = False
    try:
        return declared_types(conn, sql, width)
    finally:
        guard.enabled = True


def _drain(cursor: sqlite3.Cursor, sink: ResultSink | None, seen: ValueTypes) -> int:
    count = 0
    while batch := cursor.fetchmany(FETCH_ROWS):
        count += len(batch)
        seen.feed(batch)
        if sink is not None:
            sink.add(encode_row(row) for row in batch)
    return count


def _job_error(exc: sqlite3.Error, guard: Guard, index: int | None, budget: float) -> SrdbError:
    where = f"statements[{index}]: " if index is not None else ""
    message = str(exc)
    if guard.refusal is not None:
        refusal = guard.refusal
        return type(refusal)(where + str(refusal))
    if message == "interrupted":
        return Timeout(f"{where}job ran past its time budget of {budget:g}s and was interrupted")
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintViolation(where + message)
    if "readonly database" in message:
        return ReadOnlyViolation(where + "a read-only job tried to write: " + message)
    return SqlError(where + message)
