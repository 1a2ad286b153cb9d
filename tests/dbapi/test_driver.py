"""What producer.dbapi adds to the compliance suite: error classes, atomic blocks, types, time travel."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import producer.dbapi as srdb
from producer.client import Client
from shared.settings import Settings


@pytest.fixture
def conn(settings: Settings, aws: Any, serving: Any) -> srdb.Connection:
    return srdb.connect("driver", client=Client(settings, s3=aws.s3, sqs=aws.sqs), timeout=30)


@pytest.mark.slow
def test_job_errors_map_to_their_pep_249_classes(conn: srdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    cur.execute("INSERT INTO t VALUES (1, 'a')")
    with pytest.raises(srdb.IntegrityError, match="UNIQUE constraint failed") as caught:
        cur.execute("INSERT INTO t VALUES (1, 'b')")
    assert caught.value.error["type"] == "ConstraintViolation" and caught.value.job_id
    with pytest.raises(srdb.ProgrammingError, match="syntax error"):
        cur.execute("INSERT INTO t VALUES (1,, 'x')")
    with pytest.raises(srdb.ProgrammingError, match="no such table"):
        cur.execute("SELECT * FROM missing")
    with pytest.raises(srdb.NotSupportedError, match="ATTACH"):
        cur.execute("ATTACH DATABASE '/etc/passwd' AS x")
    with pytest.raises(srdb.OperationalError, match="time budget"):
        conn.job_timeout = 0.2
        cur.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c")
    with pytest.raises(srdb.ProgrammingError, match="not supported"):
        cur.execute("SELECT ?", (object(),))


def test_parameters_qmark_named_and_adapted(conn: srdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE p (a INTEGER, b TEXT, c BLOB, d TIMESTAMP, e REAL)")
    when = datetime.datetime(2026, 11, 28, 9, 30, 15)
    cur.execute("INSERT INTO p VALUES (?, ?, ?, ?, ?)", (True, "x", bytearray(b"\x00\xff"), when, 1.5))
    cur.execute("INSERT INTO p VALUES (:a, :b, :c, :d, :e)",
                {"a": 2**63 - 1, "b": None, "c": memoryview(b"m"), "d": datetime.date(2026, 1, 2), "e": -0.0})
    assert cur.lastrowid == 2
    cur.execute("SELECT a, b, c, d, e, a + 0, 'lit' AS lit FROM p ORDER BY rowid")
    assert cur.fetchall() == [(1, "x", b"\x00\xff", "2026-11-28 09:30:15", 1.5, 1, "lit"),
                              (2**63 - 1, None, b"m", "2026-01-02", -0.0, 2**63 - 1, "lit")]
    kinds = [d[1] for d in cur.description]
    assert kinds == ["INTEGER", "TEXT", "BLOB", "TIMESTAMP", "REAL", "INTEGER", "TEXT"]
    assert kinds[:5] == [srdb.NUMBER, srdb.STRING, srdb.BINARY, srdb.DATETIME, srdb.NUMBER]


def test_a_transaction_block_is_one_atomic_job(conn: srdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER CHECK (balance >= 0))")
    cur.executemany("INSERT INTO acct VALUES (?, ?)", [(1, 100), (2, 0)])
    assert cur.rowcount == 2
    with conn.transaction() as block:
        cur.execute("UPDATE acct SET balance = balance - 30 WHERE id = 1")
        cur.execute("UPDATE acct SET balance = balance + 30 WHERE id = 2")
        with pytest.raises(srdb.ProgrammingError, match="no results until the block ends"):
            cur.fetchall()
    assert block.result is not None and block.result.rowcount == 2
    with pytest.raises(srdb.IntegrityError, match="CHECK constraint failed"), conn.transaction():
        cur.execute("UPDATE acct SET balance = balance + 500 WHERE id = 2")
        cur.execute("UPDATE acct SET balance = balance - 500 WHERE id = 1")
    with conn.transaction():
        cur.execute("DELETE FROM acct")
        conn.rollback()  # drops what the block collected: nothing is sent
    cur.execute("SELECT id, balance FROM acct ORDER BY id")
    assert cur.fetchall() == [(1, 70), (2, 30)]


def test_executescript_runs_a_script_atomically(conn: srdb.Connection) -> None:
    cur = conn.cursor()
    cur.executescript("CREATE TABLE s (a TEXT); INSERT INTO s VALUES ('one;two'); -- trailing comment\n")
    with pytest.raises(srdb.ProgrammingError, match=r"statements\[1\]"):
        cur.executescript("INSERT INTO s VALUES ('three'); INSERT INTO nowhere VALUES (1);")
    assert cur.execute("SELECT a FROM s").fetchall() == [("one;two",)]
    cur.executescript("SELECT 1;\n-- end\n")  # a comment alone is no statement (the CLI's splitter agrees)
    cur.executescript("INSERT INTO s VALUES ('x');\n/* done */\n-- really\n")
    assert cur.execute("SELECT count(*) FROM s").fetchall() == [(2,)]


def test_a_database_no_write_created_reads_as_empty(conn: srdb.Connection) -> None:
    cur = conn.cursor()
    assert cur.execute("SELECT name FROM sqlite_master").fetchall() == []
    assert cur.execute("SELECT 1 + ?", (1,)).fetchone() == (2,)
    with pytest.raises(srdb.ProgrammingError, match=r"no such table: t \(database driver has no version yet"):
        cur.execute("SELECT * FROM t")


def test_closed_connections_and_cursors_refuse_work(conn: srdb.Connection) -> None:
    cur = conn.cursor()
    cur.close()
    with pytest.raises(srdb.ProgrammingError, match="cursor is closed"):
        cur.execute("SELECT 1")
    conn.close()
    with pytest.raises(srdb.ProgrammingError, match="connection is closed"):
        conn.cursor()


def test_connect_names_what_is_wrong(settings: Settings) -> None:
    with pytest.raises(srdb.ProgrammingError, match="database name"):
        srdb.connect("Bad Name", settings=settings)
    with pytest.raises(srdb.InterfaceError, match="unknown setting"):
        srdb.connect("ok", settings=None, bucket_name="x")
    with pytest.raises(srdb.ProgrammingError, match="as_of"):
        srdb.connect("ok", settings=settings, as_of="yesterday")


@pytest.mark.slow
def test_an_as_of_connection_reads_an_old_snapshot(conn: srdb.Connection, settings: Settings, aws: Any) -> None:
    conn.autocommit = True  # each execute commits, so cur.version names the version it made
    cur = conn.cursor()
    cur.execute("CREATE TABLE v (n INTEGER)")
    cur.execute("INSERT INTO v VALUES (1)")
    version = cur.version
    cur.execute("INSERT INTO v VALUES (2)")
    old = srdb.connect("driver", client=conn.client, as_of=version)
    assert old.cursor().execute("SELECT n FROM v").fetchall() == [(1,)]
    with pytest.raises(srdb.OperationalError, match="read-only"):
        old.cursor().execute("INSERT INTO v VALUES (3)")
    with pytest.raises(srdb.OperationalError, match="only reads"):
        old.cursor().executemany("INSERT INTO v VALUES (?)", [(3,)])
    with pytest.raises(srdb.OperationalError, match="only reads"):
        old.cursor().executescript("INSERT INTO v VALUES (3); INSERT INTO v VALUES (4);")
    assert cur.execute("SELECT count(*) FROM v").fetchone() == (2,)
