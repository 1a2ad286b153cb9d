"""Classification by sqlparse, enforcement by SQLite: each refusal is SQLite's own, with a clear reason."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.errors import Forbidden, InvalidJob
from shared.jobs import Job
from shared.sql import Guard, is_read_job, is_read_statement
from worker.execute import run_job
from worker.results import ResultSink


@pytest.mark.parametrize(("sql", "read"), [
    ("SELECT 1", True),
    ("  -- comment\nselect * from t;", True),
    ("WITH x AS (SELECT 1) SELECT * FROM x", True),
    ("VALUES (1), (2)", True),
    ("EXPLAIN QUERY PLAN SELECT 1", True),
    ("PRAGMA table_info(t)", True),
    ("PRAGMA user_version = 3", False),
    ("INSERT INTO t VALUES (1)", False),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", False),
    ("UPDATE t SET a = 1", False),
    ("CREATE TABLE t (a)", False),
    ("DROP TABLE t", False),
    ("REPLACE INTO t VALUES (1)", False),
])
def test_classification(sql: str, read: bool) -> None:
    assert is_read_statement(sql) is read


@pytest.mark.parametrize("sql", ["SELECT 1; SELECT 2", "SELECT 1; DROP TABLE t", "-- nothing", ";"])
def test_one_statement_per_sql(sql: str) -> None:
    with pytest.raises(InvalidJob):
        is_read_statement(sql)


def test_vacuum_into_is_refused_by_the_parser_and_by_sqlite(db: Path) -> None:
    with pytest.raises(Forbidden, match="VACUUM INTO"):
        is_read_statement("vacuum  into '/tmp/copy.db'")
    result = run(db, "VACUUM INTO '/tmp/copy.db'", read_only=True)
    assert result["error"]["type"] == "Forbidden"
    assert not Path("/tmp/copy.db").exists()


def test_a_job_is_a_read_only_when_every_statement_reads() -> None:
    assert is_read_job(Job.create("d", statements=[("SELECT 1", None), ("SELECT 2", None)]))
    assert not is_read_job(Job.create("d", statements=[("SELECT 1", None), ("DELETE FROM t", None)]))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2);"
                       "CREATE TABLE _srdb_jobs (job_id TEXT PRIMARY KEY)")
    conn.close()
    return path


def run(path: Path, sql: str, *, read_only: bool, budget: float = 5.0, params: list[object] | None = None) -> dict:
    uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    guard = Guard(read_only=read_only)
    guard.install(conn)
    sink = ResultSink("j", lambda k, b: None, inline_limit=1 << 20, max_bytes=1 << 30)
    outcome = run_job(conn, guard, Job.create("d", sql, params), sink, budget=budget)
    conn.close()
    return {"ok": outcome.ok, "rows": outcome.rows, "error": outcome.error or {}}


@pytest.mark.parametrize(("sql", "kind", "message"), [
    ("ATTACH DATABASE '/tmp/other.db' AS other", "Forbidden", "ATTACH"),
    ("DETACH DATABASE main", "Forbidden", "DETACH"),
    ("SELECT load_extension('/tmp/evil.so')", "Forbidden", "load_extension"),
    ("PRAGMA writable_schema = 1", "Forbidden", "writable_schema"),
    ("PRAGMA journal_mode = OFF", "Forbidden", "journal_mode"),
    ("PRAGMA temp_store_directory = '/tmp'", "Forbidden", "temp_store_directory"),
    ("PRAGMA database_list", "Forbidden", "database_list"),
    ("BEGIN", "Forbidden", "transaction control"),
    ("COMMIT", "Forbidden", "transaction control"),
    ("SAVEPOINT x", "Forbidden", "transaction control"),
    ("DELETE FROM _srdb_jobs", "Forbidden", "belongs to srdb"),
    ("DROP TABLE _srdb_jobs", "Forbidden", "belongs to srdb"),
    ("SELECT * FROM nowhere", "SqlError", "no such table"),
    ("SELEC 1", "SqlError", "syntax error"),
    ("SELECT ?, ?", "SqlError", "bindings"),
])
def test_write_connections_refuse_what_reaches_outside(db: Path, sql: str, kind: str, message: str) -> None:
    result = run(db, sql, read_only=False, params=[1])
    assert not result["ok"]
    assert result["error"]["type"] == kind
    assert message in result["error"]["message"]
    assert result["error"]["retryable"] is False


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES (3)", "DELETE FROM t", "CREATE TABLE u (a)", "CREATE TEMP TABLE u (a)",
    "DROP TABLE t", "PRAGMA user_version = 7", "CREATE INDEX i ON t (a)",
])
def test_read_connections_refuse_every_write(db: Path, sql: str) -> None:
    result = run(db, sql, read_only=True)
    assert result["error"]["type"] == "ReadOnlyViolation"
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_reads_may_use_read_pragmas_and_internal_tables(db: Path) -> None:
    assert run(db, "PRAGMA table_info(t)", read_only=True)["ok"]
    assert run(db, "SELECT count(*) FROM _srdb_jobs", read_only=True)["rows"] == [[0]]


def test_a_runaway_query_is_interrupted(db: Path) -> None:
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    result = run(db, sql, read_only=True, budget=0.2)
    assert result["error"]["type"] == "Timeout"
    assert "0.2s" in result["error"]["message"]


def test_constraint_violations_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE u (a INTEGER PRIMARY KEY)")
    assert run(path, "INSERT INTO u VALUES (1)", read_only=False)["ok"]
    result = run(path, "INSERT INTO u VALUES (1)", read_only=False)
    assert result["error"]["type"] == "ConstraintViolation"
    assert "UNIQUE" in result["error"]["message"]
