"""One transaction and one connection per job, and each job's id recorded with its writes: on a whole local
file (sqlite3) and on pages (an overlay, APSW) alike."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.job.model import Job
from worker.overlay import Overlay
from worker.page_writes import OnOverlay
from worker.results import ResultSink
from worker.targets import LocalCopy
from worker.transaction import KEEP_RECORDS_SECONDS, apply_writes


def sink(job: Job) -> ResultSink:
    return ResultSink(job.job_id, lambda key, body: None, inline_limit=1 << 20, max_bytes=1 << 30)


class Db:
    """A database the jobs write: a local file, or an overlay with no base (every chunk written here)."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.path = folder / "db.sqlite"
        self.overlay = Overlay("d", None, cache=None, chunk_size=64 * 1024, folder=folder) if kind == "pages" else None
        self.target: Any = OnOverlay(self.overlay) if self.overlay else LocalCopy(self.path)

    def image(self) -> bytes:
        return self.overlay.read(self.overlay.size, 0) if self.overlay else self.path.read_bytes()

    def rows(self, sql: str) -> list[tuple]:
        if self.overlay is None:
            with sqlite3.connect(self.path) as conn:
                return conn.execute(sql).fetchall()
        with self.target.own() as conn:
            return [tuple(row) for row in conn.execute(sql)]


def apply(db: Db, *jobs: Job) -> tuple[dict, bool]:
    applied = apply_writes(db.target, list(jobs), sink, lambda job: 5.0)
    return applied.outcomes, applied.changed


def rows(db: Db | Path, sql: str) -> list[tuple]:
    """The rows ``sql`` reads from ``db`` (or a SQLite file)."""
    if isinstance(db, Path):
        with sqlite3.connect(db) as conn:
            return conn.execute(sql).fetchall()
    return db.rows(sql)


@pytest.fixture(params=["file", "pages"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    db = Db(request.param, tmp_path)
    apply(db, Job.create("d", "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)", job_id="setup"))
    yield db
    if db.overlay is not None:
        db.overlay.close()


def test_a_failing_job_rolls_back_alone(path: Db) -> None:
    good = Job.create("d", "INSERT INTO t VALUES (1, 'one')", job_id="good")
    bad = Job.create("d", statements=[("INSERT INTO t VALUES (2, 'two')", None),
                                      ("INSERT INTO t VALUES (1, 'dup')", None)], job_id="bad")
    later = Job.create("d", "INSERT INTO t VALUES (3, 'three')", job_id="later")
    outcomes, changed = apply(path, good, bad, later)
    assert changed
    assert outcomes["good"].ok and outcomes["later"].ok
    assert outcomes["bad"].error["type"] == "ConstraintViolation"
    assert outcomes["bad"].error["message"].startswith("statements[1]: UNIQUE constraint failed")
    assert rows(path, "SELECT a FROM t ORDER BY a") == [(1,), (3,)]


def test_a_job_applied_once_returns_its_recorded_outcome(path: Db) -> None:
    job = Job.create("d", "INSERT INTO t (b) VALUES ('x') RETURNING a", job_id="once")
    first, _ = apply(path, job)
    again, changed = apply(path, job)
    assert not changed
    assert again["once"].replayed and not first["once"].replayed
    assert again["once"].rows == first["once"].rows == [[1]]
    assert rows(path, "SELECT count(*) FROM t") == [(1,)]
    assert rows(path, "SELECT job_id FROM _srdb_jobs WHERE job_id = 'once'") == [("once",)]


def test_failed_jobs_change_nothing_and_commit_nothing(path: Db) -> None:
    before = path.image()
    outcomes, changed = apply(path, Job.create("d", "INSERT INTO nowhere VALUES (1)", job_id="f"))
    assert not changed and not outcomes["f"].ok
    assert path.image() == before


def test_a_statement_that_rolls_back_the_transaction_fails_alone(path: Db) -> None:
    apply(path, Job.create("d", "INSERT INTO t VALUES (1, 'one')", job_id="first"))
    before = Job.create("d", "INSERT INTO t VALUES (2, 'two')", job_id="before")
    rollback = Job.create("d", "INSERT OR ROLLBACK INTO t VALUES (1, 'again')", job_id="rollback")
    after = Job.create("d", "INSERT INTO t VALUES (3, 'three')", job_id="after")
    outcomes, _ = apply(path, before, rollback, after)
    assert outcomes["before"].ok and outcomes["after"].ok
    assert "rolled back the whole transaction" in outcomes["rollback"].error["message"]
    assert rows(path, "SELECT a FROM t ORDER BY a") == [(1,), (2,), (3,)]


def test_executemany_counts_every_row(path: Db) -> None:
    job = Job.create("d", "INSERT INTO t (b) VALUES (?)", param_sets=[[str(i)] for i in range(250)], job_id="m")
    outcomes, _ = apply(path, job)
    assert outcomes["m"].rowcount == 250
    assert outcomes["m"].lastrowid == 250


def job(sql: str, params: list | None = None, job_id: str | None = None) -> Job:
    return Job.create("d", sql, params, job_id=job_id)


def test_temp_objects_never_outlive_their_job(path: Db) -> None:
    apply(path, job("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)"),
)
    outcomes, _ = apply(
        path,
        job("CREATE TEMP TABLE orders (id, note)", job_id="shadow"),
        job("INSERT INTO orders (note) VALUES ('victim')", job_id="victim"),
        job("CREATE TEMP TRIGGER rewrite AFTER INSERT ON main.orders BEGIN "
            "UPDATE orders SET note = 'forged' WHERE id = new.id; END", job_id="trigger"),
        job("INSERT INTO orders (note) VALUES ('second')", job_id="second"),
        job("CREATE TEMP VIEW seen AS SELECT 1", job_id="view-a"),
        job("CREATE TEMP VIEW seen AS SELECT 2", job_id="view-b"),
        job("CREATE TEMP TABLE scratch (a)", job_id="scratch-a"),
        job("CREATE TEMP TABLE scratch (a)", job_id="scratch-b"),
        Job.create("d", statements=[("CREATE TEMP TABLE tt (a)", None), ("CREATE INDEX temp.tti ON tt (a)", None)],
                   job_id="temp-index"),
        job("SELECT name FROM sqlite_temp_master", job_id="temp-schema"),
        job("SELECT last_insert_rowid(), changes(), total_changes()", job_id="connection-state"),
        job("PRAGMA defer_foreign_keys = ON", job_id="defer"),
        job("PRAGMA defer_foreign_keys", job_id="deferred"),
    )
    assert all(o.ok for o in outcomes.values()), {j: o.error for j, o in outcomes.items() if o.error}
    assert outcomes["victim"].rowcount == 1
    assert outcomes["temp-schema"].rows == []
    assert outcomes["connection-state"].rows == [[0, 0, 0]]
    assert outcomes["deferred"].rows == [[0]]
    assert rows(path, "SELECT note FROM orders ORDER BY id") == [("victim",), ("second",)]
    assert rows(path, "SELECT name FROM sqlite_master WHERE name IN ('tt', 'tti', 'seen', 'scratch')") == []


# The worker's own statements, byte for byte: a job that sends one gets a statement of its own,
# which the authorizer judges as a job's.
WORKER_STATEMENTS = [
    ("INSERT INTO _srdb_jobs VALUES (?, ?, ?)",
     ["victim", '{"columns":[],"types":[],"rows":[],"rowcount":7,"lastrowid":null,"parts":[]}', 0.0]),
    ("SELECT outcome FROM _srdb_jobs WHERE job_id = ?", ["victim"]),
    ("DELETE FROM _srdb_jobs WHERE applied_at < ?", [1e12]),
    ("CREATE TABLE IF NOT EXISTS _srdb_jobs (job_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, "
     "applied_at REAL NOT NULL) WITHOUT ROWID", None),
    ("CREATE INDEX IF NOT EXISTS _srdb_jobs_applied ON _srdb_jobs (applied_at)", None),
    ("BEGIN IMMEDIATE", None), ("COMMIT", None), ("ROLLBACK", None),
    ("SAVEPOINT job", None), ("RELEASE job", None), ("ROLLBACK TO job", None),
    ("PRAGMA journal_mode = WAL", None), ("PRAGMA wal_autocheckpoint = 0", None),
    ("PRAGMA synchronous = OFF", None), ("PRAGMA wal_checkpoint(TRUNCATE)", None),
    ("CREATE TEMP VIEW _srdb_columns AS SELECT 1", None), ("DROP VIEW temp._srdb_columns", None),
]


@pytest.mark.parametrize(("sql", "params"), WORKER_STATEMENTS)
def test_the_workers_own_statements_replayed_by_a_job_are_refused(path: Db, sql: str, params: list | None) -> None:
    # In one batch: by the time the forger runs, the worker has prepared its own statements for "warm".
    warm = job("INSERT INTO t VALUES (1, 'first')", job_id="warm")
    forger = job(sql, params, job_id="forger")
    victim = job("INSERT INTO t VALUES (2, 'victim')", job_id="victim")
    outcomes, _ = apply(path, warm, forger, victim)
    forger_outcome = outcomes["forger"]
    if forger_outcome.ok:  # CREATE INDEX IF NOT EXISTS: SQLite finds it there and does nothing
        assert "IF NOT EXISTS" in sql and forger_outcome.read_only
    else:
        assert forger_outcome.error["type"] in {"Forbidden", "SqlError"}, forger_outcome.error
    assert outcomes["victim"].ok and not outcomes["victim"].replayed and outcomes["victim"].rowcount == 1
    assert rows(path, "SELECT a, b FROM t ORDER BY a") == [(1, "first"), (2, "victim")]
    assert rows(path, "SELECT job_id FROM _srdb_jobs ORDER BY job_id") == [("setup",), ("victim",), ("warm",)]


def test_a_read_on_the_write_path_records_nothing(path: Db) -> None:
    before = path.image()
    outcomes, changed = apply(path, job("SELECT 1 WHERE 1 IN (" + ",".join(map(str, range(6000))) + ")", job_id="r"))
    assert outcomes["r"].rows == [[1]] and not changed
    assert path.image() == before


def test_triggers_and_indexes_left_on_srdbs_tables_are_dropped(path: Db) -> None:
    with path.target.own() as conn:
        conn.execute("CREATE TRIGGER off BEFORE INSERT ON _srdb_jobs BEGIN SELECT RAISE(IGNORE); END")
        conn.execute("CREATE INDEX odd ON _srdb_jobs (outcome)")
    first, changed = apply(path, job("INSERT INTO t VALUES (5, 'x')", job_id="once"))
    again, _ = apply(path, job("INSERT INTO t VALUES (5, 'x')", job_id="once"))
    assert changed and first["once"].ok and again["once"].replayed
    assert rows(path, "SELECT name FROM sqlite_master WHERE name IN ('off', 'odd')") == []


def test_old_job_records_expire(path: Db) -> None:
    clock = [1_000_000.0]
    applied = apply_writes(path.target, [job("INSERT INTO t VALUES (1, 'old')", job_id="old")], sink, lambda j: 5.0,
                           now=lambda: clock[0])
    assert applied.changed
    clock[0] += KEEP_RECORDS_SECONDS + 1
    apply_writes(path.target, [job("INSERT INTO t VALUES (2, 'new')", job_id="new")], sink, lambda j: 5.0,
                 now=lambda: clock[0])
    assert rows(path, "SELECT job_id FROM _srdb_jobs WHERE job_id IN ('old', 'new')") == [("new",)]


def test_jobs_not_started_for_want_of_time_have_no_outcome(path: Db) -> None:
    budgets = iter([5.0, None])
    applied = apply_writes(path.target, [job("INSERT INTO t VALUES (1, 'a')", job_id="a"),
                                  job("INSERT INTO t VALUES (2, 'b')", job_id="b")], sink, lambda j: next(budgets))
    assert list(applied.outcomes) == ["a"]
    assert rows(path, "SELECT a FROM t") == [(1,)]
