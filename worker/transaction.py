"""Applying a group of write jobs to the local copy, each in a transaction and on a connection of its
own, exactly once.

Each job runs on a fresh connection: whatever it leaves behind on a connection (TEMP tables,
views and triggers, ``last_insert_rowid()``, ``PRAGMA defer_foreign_keys``, prepared statements)
goes when the connection closes, so no job of a batch can see or change another's. A failing job
rolls back its own transaction and nothing else.

Each job's id is written to ``_srdb_jobs`` inside the same transaction as its writes, so the
snapshot that holds a job's effect also holds the proof that it ran. A redelivered message
finds its id there and gets the recorded outcome back instead of running again.

The jobs run on a write target (worker/targets.py): the version the group writes on, as a whole local
copy or as pages on demand, which also knows what the group changed when it commits.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from shared.errors import ConstraintViolation, Forbidden, InternalError, SerializationFailure, SqlError
from shared.guard import Guard
from shared.job.model import Job
from shared.job.result import ResultPart
from shared.names import sql_identifier
from worker import foreign_keys
from worker.execute import Outcome, job_error, run_job
from worker.results import ResultSink
from worker.targets import WriteTarget

JOBS_TABLE = "_srdb_jobs"
# Every statement of the worker's names ``main.``: a job may leave TEMP objects on its connection, and
# an unqualified name would resolve to a TEMP table of the same name first.
_CREATE = (f"CREATE TABLE IF NOT EXISTS main.{JOBS_TABLE} "
           "(job_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, applied_at REAL NOT NULL) WITHOUT ROWID")
_INDEX = f"CREATE INDEX IF NOT EXISTS main.{JOBS_TABLE}_applied ON {JOBS_TABLE} (applied_at)"
_RECORD = f"INSERT INTO main.{JOBS_TABLE} (job_id, outcome, applied_at) VALUES (?, ?, ?)"
_RECORDED = f"SELECT outcome FROM main.{JOBS_TABLE} WHERE job_id = ?"
# srdb's own objects, in every schema of a connection (names compared case-blind, as SQLite does).
_OWN_OBJECTS = ("SELECT 'main', type, name FROM main.sqlite_schema WHERE lower(name) LIKE '\\_srdb\\_%' ESCAPE '\\' "
                "UNION ALL SELECT 'temp', type, name FROM temp.sqlite_schema "
                "WHERE lower(name) LIKE '\\_srdb\\_%' ESCAPE '\\'")
# A job's record outlives every delivery of its message: SQS keeps a message (and its dead letter,
# counted from the first enqueue) at most 14 days. Older records are deleted with the next commit.
KEEP_RECORDS_SECONDS = 14 * 24 * 3600.0


@dataclass
class Applied:
    """What a group of write jobs did: the outcome of each job that ran (a job missing from
    ``outcomes`` was not started, for want of time), and whether anything was committed."""

    outcomes: dict[str, Outcome]
    changed: bool


def apply_writes(
    target: WriteTarget,
    jobs: list[Job],
    make_sink: Callable[[Job], ResultSink],
    budget: Callable[[Job], float | None],
    now: Callable[[], float] = time.time,
    watch: Callable[[Job], AbstractContextManager[threading.Event]] | None = None,
    load: Callable[[Any, Guard, Job, float], Outcome] | None = None,
) -> Applied:
    """Run ``jobs`` in order on ``target`` (worker/targets.py: the version the writes apply to).
    ``budget(job)``: the seconds the job may run, or None when the batch has no time left to start it.
    ``watch(job)``: held while the job runs; its event is set when the job is cancelled
    (worker.progress). ``load``: runs a load job (worker.load). A transaction's commit applies only
    while the database is still its base: that version (and that very snapshot, ``target.base``: its manifest's
    writer), and nothing written before it in this group."""
    watching = watch or (lambda job: nullcontext(threading.Event()))
    version, snapshot = target.version, target.base
    with target.own() as own:
        changed = _repair(own)
        outcomes: dict[str, Outcome] = {}
        for job in jobs:
            if job.job_id in outcomes:  # its message delivered twice in one batch: one outcome serves both
                continue
            seconds = budget(job)
            if seconds is None:
                break
            stale = None
            remade = bool(job.transaction and job.transaction.snapshot and snapshot
                          and job.transaction.snapshot != snapshot)
            if job.transaction is not None and (changed or job.transaction.base != version or remade):
                since = " and written since" if changed else ""
                stale = SerializationFailure(
                    f"database {job.database} changed since this transaction began at version "
                    f"{job.transaction.base} (it is at {version}{since}"
                    f"{'; it was dropped and made again meanwhile' if remade else ''}): "
                    "nothing of the transaction was applied; run it again")
            with watching(job) as cancelled:
                outcome = _apply_one(target, job, make_sink(job), seconds, now, cancelled, load, stale)
            outcomes[job.job_id] = outcome
            changed = changed or (outcome.ok and not outcome.replayed and not outcome.read_only)
        if changed:
            _transaction(own, f"DELETE FROM main.{JOBS_TABLE} WHERE applied_at < ?", (now() - KEEP_RECORDS_SECONDS,))
    return Applied(outcomes, changed)


def _transaction(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run the worker's own ``sql`` in a transaction of its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(sql, params)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _apply_one(target: WriteTarget, job: Job, sink: ResultSink, seconds: float, now: Callable[[], float],
               cancelled: threading.Event,
               load: Callable[[Any, Guard, Job, float], Outcome] | None,
               stale: SerializationFailure | None = None) -> Outcome:
    guard = Guard(read_only=False, cancelled=cancelled)
    conn = target.connect(guard)
    try:
        if not foreign_keys.enforced(job):  # the job turns them off for itself: only outside a transaction
            conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_CREATE)
        conn.execute(_INDEX)
        recorded = conn.execute(_RECORDED, (job.job_id,)).fetchone()
        if recorded:
            conn.execute("ROLLBACK")
            return _replay(job.job_id, recorded[0])
        if stale is not None:  # checked after the record: a redelivered commit that applied gets its outcome
            conn.execute("ROLLBACK")
            return Outcome.failed(job.job_id, stale)
        if is_vacuum(job):
            conn.execute("ROLLBACK")
            return _vacuum(conn, guard, job, seconds, now)
        own = _own_objects(conn, guard)
        if job.load is not None:
            if load is None:
                raise InternalError(f"job {job.job_id} is a load, and this worker was given no loader")
            outcome = load(conn, guard, job, seconds)
        else:
            outcome = run_job(conn, guard, job, sink, budget=seconds)
        if not conn.in_transaction and (outcome.error or {}).get("type") != "Cancelled":
            # SQLite ended the transaction itself (ON CONFLICT ROLLBACK, RAISE(ROLLBACK), an interrupted write).
            error = outcome.error or SqlError("the job ended its own transaction").to_json()
            error["message"] = (f"{error['message']} (SQLite rolled back the whole transaction: "
                                "none of this job's writes were applied)").lstrip()
            return Outcome(job.job_id, False, error=error, run_ms=outcome.run_ms)
        return _settle(conn, guard, job, outcome, own, now)
    finally:
        conn.close()


def _settle(conn: Any, guard: Guard, job: Job, outcome: Outcome, own: set[tuple[str, str, str]],
            now: Callable[[], float]) -> Outcome:
    """Commit a job that succeeded with its record, or roll it back. Whatever goes wrong here is this
    job's failure alone: it is rolled back and the group goes on."""
    try:
        if outcome.ok and not outcome.read_only:
            made = sorted(_own_objects(conn, guard) - own)
            if made:
                conn.execute("ROLLBACK")
                return Outcome.failed(job.job_id, Forbidden(
                    f"{made[0][0]}.{made[0][2]}: names beginning with {JOBS_TABLE[:6]} belong to srdb, and no job "
                    "may create or rename an object into them (any case, any schema); nothing of the job was "
                    "applied"), outcome.run_ms)
            with guard.bookkeeping():
                conn.execute(_RECORD, (job.job_id, _record(outcome), now()))
                conn.execute("COMMIT")
        elif conn.in_transaction:  # an interrupted (cancelled) write: SQLite may have rolled it back itself
            conn.execute("ROLLBACK")
        return outcome
    except sqlite3.Error as exc:
        broken = foreign_keys.broken_key(conn, guard) if foreign_keys.is_broken_key(exc) else None
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if foreign_keys.is_broken_key(exc):  # checks the job deferred to its end
            return Outcome.failed(job.job_id, ConstraintViolation(
                f"FOREIGN KEY constraint failed when the job ended (its checks were deferred)"
                f"{': ' + broken if broken else ''}; nothing of the job was applied"), outcome.run_ms)
        return Outcome.failed(job.job_id, Forbidden(
            f"the worker could not record this job ({exc}): something the job left on its connection stood in "
            "the way of srdb's own bookkeeping; nothing of the job was applied"), outcome.run_ms)


def _own_objects(conn: Any, guard: Guard) -> set[tuple[str, str, str]]:
    with guard.bookkeeping():
        return {(str(schema), str(kind), str(name)) for schema, kind, name in conn.execute(_OWN_OBJECTS)}


_VACUUM = re.compile(r"\s*VACUUM(\s+main)?\s*;?\s*", re.IGNORECASE)
_AUTO_VACUUM = re.compile(r"\s*PRAGMA\s+auto_vacuum\s*=\s*(NONE|FULL|INCREMENTAL|[012])\s*;?\s*", re.IGNORECASE)


def is_vacuum(job: Job) -> bool:
    """A job that is VACUUM alone (of its own database), perhaps after ``PRAGMA auto_vacuum = …`` (which
    only a VACUUM on the same connection makes stick): it rebuilds the file, outside any transaction."""
    sqls = [s.sql for s in job.statements]
    if job.kind == "statements" and len(sqls) == 2 and _AUTO_VACUUM.fullmatch(sqls[0]):
        sqls = sqls[1:]
    return job.kind in ("sql", "statements") and len(sqls) == 1 and _VACUUM.fullmatch(sqls[0]) is not None


def _vacuum(conn: Any, guard: Guard, job: Job, seconds: float, now: Callable[[], float]) -> Outcome:
    """VACUUM cannot run in a transaction: it runs alone, then its record is committed. It is the worker's
    statement, not the job's text (the job is exactly ``VACUUM``): it copies srdb's own tables too, and
    SQLite attaches a temporary copy of its own to do it. Its budget and cancel still apply. Run twice (a
    redelivery after a crash between the two) it only rebuilds an already compact file again."""
    started = time.monotonic()
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 1)
    try:
        with guard.job(seconds), guard.suspended():
            for statement in job.statements:  # checked by is_vacuum: [PRAGMA auto_vacuum = …;] VACUUM
                conn.execute(statement.sql)
    except sqlite3.Error as exc:
        return Outcome.failed(job.job_id, job_error(exc, guard, None, seconds), (time.monotonic() - started) * 1000)
    finally:
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    outcome = Outcome(job.job_id, True, run_ms=(time.monotonic() - started) * 1000)
    conn.execute("BEGIN IMMEDIATE")
    with guard.bookkeeping():
        conn.execute(_RECORD, (job.job_id, _record(outcome), now()))
    conn.execute("COMMIT")
    return outcome


def _repair(conn: Any) -> bool:
    """Drop triggers and indexes on srdb's tables that a job made before the authorizer refused them
    (a trigger on ``_srdb_jobs`` could turn exactly-once off). True when something was dropped."""
    found = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'index') AND sql IS NOT NULL "
        "AND substr(lower(tbl_name), 1, 6) = '_srdb_' AND name != ?", (f"{JOBS_TABLE}_applied",)).fetchall()
    for kind, name in found:
        _transaction(conn, f"DROP {kind.upper()} IF EXISTS {sql_identifier(name)}")
    return bool(found)


def _record(outcome: Outcome) -> str:
    return json.dumps({"columns": outcome.columns, "types": outcome.types, "rows": outcome.rows,
                       "rowcount": outcome.rowcount,
                       "lastrowid": outcome.lastrowid, "parts": [p.to_json() for p in outcome.parts]},
                      separators=(",", ":"))


def _replay(job_id: str, text: str) -> Outcome:
    try:
        doc = json.loads(text)
        return Outcome(job_id, True, doc["columns"], doc.get("types", []), doc["rows"],
                       [ResultPart(p["key"], p["rows"]) for p in doc["parts"]],
                       doc["rowcount"], doc["lastrowid"], replayed=True)
    except (ValueError, KeyError, TypeError) as exc:
        # Applied already, so it must not run again; only its result is lost.
        error = InternalError(f"job {job_id} was applied, but its recorded outcome does not read back: {exc!r}")
        return Outcome.failed(job_id, error)
