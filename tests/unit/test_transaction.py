"""One transaction per write group, one savepoint per job, and each job's id recorded with its writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.jobs import Job
from worker.results import ResultSink
from worker.transaction import apply_writes


def sink(job: Job) -> ResultSink:
    return ResultSink(job.job_id, lambda key, body: None, inline_limit=1 << 20, max_bytes=1 << 30)


def apply(path: Path, *jobs: Job) -> tuple[dict, bool]:
    applied = apply_writes(path, list(jobs), sink, lambda job: 5.0)
    return applied.outcomes, applied.changed


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite"
    apply(path, Job.create("d", "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)", job_id="setup"))
    return path


def test_a_failing_job_rolls_back_alone(path: Path) -> None:
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


def test_a_job_applied_once_returns_its_recorded_outcome(path: Path) -> None:
    job = Job.create("d", "INSERT INTO t (b) VALUES ('x') RETURNING a", job_id="once")
    first, _ = apply(path, job)
    again, changed = apply(path, job)
    assert not changed
    assert again["once"].replayed and not first["once"].replayed
    assert again["once"].rows == first["once"].rows == [[1]]
    assert rows(path, "SELECT count(*) FROM t") == [(1,)]
    assert rows(path, "SELECT job_id FROM _srdb_jobs WHERE job_id = 'once'") == [("once",)]


def test_failed_jobs_change_nothing_and_commit_nothing(path: Path) -> None:
    before = path.read_bytes()
    outcomes, changed = apply(path, Job.create("d", "INSERT INTO nowhere VALUES (1)", job_id="f"))
    assert not changed and not outcomes["f"].ok
    assert path.read_bytes() == before


def test_a_statement_that_rolls_back_the_transaction_fails_alone(path: Path) -> None:
    apply(path, Job.create("d", "INSERT INTO t VALUES (1, 'one')", job_id="first"))
    before = Job.create("d", "INSERT INTO t VALUES (2, 'two')", job_id="before")
    rollback = Job.create("d", "INSERT OR ROLLBACK INTO t VALUES (1, 'again')", job_id="rollback")
    after = Job.create("d", "INSERT INTO t VALUES (3, 'three')", job_id="after")
    outcomes, _ = apply(path, before, rollback, after)
    assert outcomes["before"].ok and outcomes["after"].ok
    assert "rolled back the whole transaction" in outcomes["rollback"].error["message"]
    assert rows(path, "SELECT a FROM t ORDER BY a") == [(1,), (2,), (3,)]


def test_executemany_counts_every_row(path: Path) -> None:
    job = Job.create("d", "INSERT INTO t (b) VALUES (?)", param_sets=[[str(i)] for i in range(250)], job_id="m")
    outcomes, _ = apply(path, job)
    assert outcomes["m"].rowcount == 250
    assert outcomes["m"].lastrowid == 250
