"""Applying a group of write jobs in one SQLite transaction, each in its own savepoint, exactly once.

Each job's id is written to ``_srdb_jobs`` inside the same transaction as its writes, so the
snapshot that holds a job's effect also holds the proof that it ran. A redelivered message
finds its id there and gets the recorded outcome back instead of running again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import SqlError
from shared.jobs import Job
from shared.results import ResultPart
from shared.sql import Guard
from shared.wal import written_pages
from worker.execute import Outcome, run_job
from worker.results import ResultSink

JOBS_TABLE = "_srdb_jobs"
_CREATE = (f"CREATE TABLE IF NOT EXISTS {JOBS_TABLE} "
           "(job_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, applied_at REAL NOT NULL) WITHOUT ROWID")


class _TransactionLost(Exception):
    """A statement (ON CONFLICT ROLLBACK, RAISE(ROLLBACK)) rolled back the whole transaction."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.job_id)
        self.outcome = outcome


@dataclass
class Applied:
    """What a group of write jobs did: each job's outcome, whether anything was committed, and the
    pages the transaction wrote (None when unknown, and every chunk must be re-hashed)."""

    outcomes: dict[str, Outcome]
    changed: bool
    pages: set[int] | None


def apply_writes(
    path: Path,
    jobs: list[Job],
    make_sink: Callable[[Job], ResultSink],
    budget: Callable[[Job], float],
    now: Callable[[], float] = time.time,
) -> Applied:
    """Run ``jobs`` in one transaction on the local copy at ``path``."""
    excluded: dict[str, Outcome] = {}
    while True:
        try:
            applied = _attempt(path, [j for j in jobs if j.job_id not in excluded], make_sink, budget, now)
        except _TransactionLost as lost:
            excluded[lost.outcome.job_id] = lost.outcome
            continue
        applied.outcomes.update(excluded)
        return applied


def _attempt(
    path: Path,
    jobs: list[Job],
    make_sink: Callable[[Job], ResultSink],
    budget: Callable[[Job], float],
    now: Callable[[], float],
) -> Applied:
    conn = sqlite3.connect(path, isolation_level=None)
    # The log tells the commit which pages changed; only an explicit checkpoint empties it.
    was_wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    guard = Guard(read_only=False)
    guard.install(conn)
    outcomes: dict[str, Outcome] = {}
    changed = False
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_CREATE)
        for job in jobs:
            recorded = conn.execute(f"SELECT outcome FROM {JOBS_TABLE} WHERE job_id = ?", (job.job_id,)).fetchone()
            if recorded:
                outcomes[job.job_id] = _replay(job.job_id, recorded[0])
                continue
            conn.execute("SAVEPOINT job")
            outcome = run_job(conn, guard, job, make_sink(job), budget=budget(job))
            if not conn.in_transaction:
                # SQLite ended the whole transaction (ON CONFLICT ROLLBACK, RAISE(ROLLBACK), an interrupted
                # write): this job fails with its own error, and the others run again without it.
                error = outcome.error or SqlError("").to_json()
                error["message"] = (f"{error['message']} (SQLite rolled back the whole transaction; "
                                    "this job's writes were undone)").lstrip()
                raise _TransactionLost(Outcome(job.job_id, False, error=error, run_ms=outcome.run_ms))
            if outcome.ok:
                conn.execute(f"INSERT INTO {JOBS_TABLE} VALUES (?, ?, ?)",
                             (job.job_id, _record(outcome), now()))
                changed = True
            else:
                conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            outcomes[job.job_id] = outcome
        conn.execute("COMMIT" if changed else "ROLLBACK")
        pages = written_pages(Path(f"{path}-wal")) if changed and was_wal else None
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Applied(outcomes, changed, pages)
    finally:
        conn.close()


def _record(outcome: Outcome) -> str:
    return json.dumps({"columns": outcome.columns, "types": outcome.types, "rows": outcome.rows,
                       "rowcount": outcome.rowcount,
                       "lastrowid": outcome.lastrowid, "parts": [p.to_json() for p in outcome.parts]},
                      separators=(",", ":"))


def _replay(job_id: str, text: str) -> Outcome:
    doc = json.loads(text)
    return Outcome(job_id, True, doc["columns"], doc.get("types", []), doc["rows"],
                   [ResultPart(p["key"], p["rows"]) for p in doc["parts"]],
                   doc["rowcount"], doc["lastrowid"], replayed=True)
