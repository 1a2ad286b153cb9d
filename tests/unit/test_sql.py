"""Classification by sqlparse, enforcement by SQLite: each refusal is SQLite's own, with a clear reason."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.errors import Forbidden, InvalidJob
from shared.guard import Guard, open_job_connection
from shared.job.classify import is_read_job, is_read_statement
from shared.job.model import Job
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


def test_reads_may_use_read_pragmas_but_not_internal_tables(db: Path) -> None:
    assert run(db, "PRAGMA table_info(t)", read_only=True)["ok"]
    refused = run(db, "SELECT count(*) FROM _srdb_jobs", read_only=True)
    assert refused["error"]["type"] == "Forbidden" and "belongs to srdb" in refused["error"]["message"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM _srdb_jobs",
    "SELECT * FROM t WHERE a IN (SELECT rowid FROM _SRDB_JOBS)",
    "ALTER TABLE _srdb_jobs RENAME COLUMN job_id TO gone",
    "ALTER TABLE _srdb_jobs ADD COLUMN x",
    "ALTER TABLE _srdb_jobs RENAME TO mine",
    "CREATE TRIGGER tr BEFORE INSERT ON _srdb_jobs BEGIN SELECT RAISE(IGNORE); END",
    "CREATE TEMP TRIGGER tr BEFORE INSERT ON main._srdb_jobs BEGIN SELECT RAISE(IGNORE); END",
    "CREATE INDEX i ON _srdb_jobs (job_id)",
    "CREATE TEMP TABLE _srdb_columns (a)",
    "CREATE TEMP VIEW _srdb_columns AS SELECT 1",
    "CREATE TABLE _srdb_mine (a)",
    "INSERT INTO _srdb_jobs VALUES ('x')",
    "UPDATE _srdb_jobs SET job_id = 'y'",
    "ANALYZE _srdb_jobs",
])
def test_no_job_may_reach_srdbs_own_tables(db: Path, sql: str) -> None:
    result = run(db, sql, read_only=False)
    assert result["error"]["type"] == "Forbidden", result
    assert "belongs to srdb" in result["error"]["message"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name NOT IN ('t', '_srdb_jobs') "
                        "AND name NOT LIKE 'sqlite_autoindex%'").fetchall() == []
    assert [r[1] for r in conn.execute("PRAGMA table_info(_srdb_jobs)")] == ["job_id"]


def test_views_and_triggers_cannot_reach_srdbs_own_tables_either(db: Path) -> None:
    # SQLite authorizes what a view or trigger does when a statement uses it, so they may be made,
    # but never used to read or write srdb's tables.
    view = Job.create("d", "CREATE VIEW v AS SELECT * FROM _srdb_jobs")
    trigger = Job.create("d", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO _srdb_jobs VALUES ('x'); END")
    for job in (view, trigger):
        assert run(db, job.statements[0].sql, read_only=False)["ok"]
    for sql, read_only in (("SELECT * FROM v", True), ("INSERT INTO t VALUES (9)", False)):
        result = run(db, sql, read_only=read_only)
        assert result["error"]["type"] == "Forbidden" and "belongs to srdb" in result["error"]["message"]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM _srdb_jobs").fetchone() == (0,)


@pytest.mark.parametrize(("sql", "rows"), [
    ("SELECT value FROM json_each('[1, 2]')", [[1], [2]]),
    ("SELECT count(*) FROM json_tree('{\"a\": [1]}')", [[3]]),
    ("SELECT name FROM pragma_table_info('t')", [["a"]]),
    ("SELECT x FROM docs WHERE docs MATCH 'hello'", [["hello world"]]),
])
def test_reads_may_use_virtual_tables_and_table_valued_functions(db: Path, sql: str, rows: list) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE VIRTUAL TABLE docs USING fts5(x)")
    conn.execute("INSERT INTO docs VALUES ('hello world'), ('bye')")
    conn.commit()
    conn.close()
    result = run(db, sql, read_only=True)
    assert result["ok"], result
    assert result["rows"] == rows


@pytest.mark.parametrize("sql", [
    "SELECT " + "+".join(["1"] * 102),
    "SELECT " + "(" * 101 + "1" + ")" * 101,
    "INSERT INTO t VALUES " + ",".join(["(1)"] * 2600),
    "SELECT 1 WHERE 1 IN (" + ",".join(str(i) for i in range(6000)) + ")",
])
def test_statements_sqlparse_gives_up_on_take_the_write_path(sql: str) -> None:
    assert is_read_statement(sql) is False


def test_a_read_on_the_write_path_still_reads(db: Path) -> None:
    result = run(db, "SELECT 1 WHERE 1 IN (" + ",".join(str(i) for i in range(6000)) + ")", read_only=False)
    assert result == {"ok": True, "rows": [[1]], "error": {}}
    several = run(db, "SELECT " + "+".join(["1"] * 102) + "; DELETE FROM t", read_only=False)
    assert several["error"]["type"] == "InvalidJob" and "more than one statement" in several["error"]["message"]


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


@pytest.mark.parametrize(("sql", "read"), [
    ("PRAGMA user_version(5)", False),
    ("PRAGMA main.application_id (7)", False),
    ("PRAGMA table_info(t)", True),
    ("PRAGMA user_version", True),
    ("EXPLAIN INSERT INTO t VALUES (1)", False),
    ("EXPLAIN QUERY PLAN DELETE FROM t", False),
    ("/* EXPLAIN x */ EXPLAIN SELECT 1", True),
    ("EXPLAIN QUERY PLAN SELECT * FROM t", True),
])
def test_settings_and_explained_writes_take_the_write_path(sql: str, read: bool) -> None:
    assert is_read_statement(sql) is read


def test_a_read_may_use_an_rtree_table(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)")
    conn.execute("INSERT INTO r VALUES (1, 0, 1)")
    conn.commit()
    conn.close()
    guard = Guard(read_only=True)
    reader = open_job_connection(f"file:{db}?mode=ro&immutable=1", guard, uri=True)
    with guard.job(5.0):
        assert reader.execute("SELECT id FROM r WHERE x0 >= 0").fetchall() == [(1,)]
        with pytest.raises(sqlite3.Error):
            reader.execute("INSERT INTO r_node VALUES (9, x'00')")
