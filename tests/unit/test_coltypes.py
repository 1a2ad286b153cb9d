"""Column types for cursor.description: declared types through a temporary view, else value classes."""

from __future__ import annotations

import datetime
import sqlite3

import pytest

import producer.dbapi as srdb
from worker.coltypes import VIEW, ValueTypes, declared_types, merge


@pytest.fixture
def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.execute("CREATE TABLE t (a INTEGER, b VARCHAR(20), c BLOB, d DOUBLE, e)")
    c.execute('CREATE TABLE "odd?" (x INTEGER)')  # a placeholder character in a quoted name
    return c


def test_declared_types_come_from_the_table_and_parameters_do_not_stop_them(conn: sqlite3.Connection) -> None:
    sql = "SELECT a, b, c, d, e, a + 1 FROM t WHERE a = ? AND b = :name AND d > $x AND e = ?2 AND c = @c;"
    assert declared_types(conn, sql, 6) == ["INTEGER", "VARCHAR(20)", "BLOB", "DOUBLE", "", ""]
    # Placeholder characters inside a literal change nothing that matters.
    assert declared_types(conn, "SELECT b, 'what? :x @y' AS s FROM t", 2) == ["VARCHAR(20)", ""]
    assert declared_types(conn, 'SELECT a AS "a?" FROM t', 1) == ["INTEGER"]
    assert conn.execute("SELECT count(*) FROM temp.sqlite_schema").fetchone() == (0,)  # the view is gone


@pytest.mark.parametrize("sql", ["PRAGMA table_info(t)", "EXPLAIN SELECT 1", "SELECT * FROM missing",
                                 'SELECT x FROM "odd?"'])
def test_what_a_view_cannot_hold_has_no_declared_types(conn: sqlite3.Connection, sql: str) -> None:
    assert declared_types(conn, sql, 1) == [""]
    assert conn.execute(f"SELECT count(*) FROM temp.sqlite_schema WHERE name = '{VIEW}'").fetchone() == (0,)


def test_value_types_take_the_first_non_null_value_of_each_column() -> None:
    seen = ValueTypes(4)
    seen.feed([[None, "x", None, None]])
    seen.feed([[1, 2, b"b", None], [2.5, None, None, None]])
    assert seen.found == ["INTEGER", "TEXT", "BLOB", ""]
    assert merge(["VARCHAR(9)", "", "", ""], seen.found) == ["VARCHAR(9)", "TEXT", "BLOB", ""]


@pytest.mark.parametrize(("declared", "kind"), [
    ("INTEGER", srdb.NUMBER), ("BIGINT", srdb.NUMBER), ("varchar(20)", srdb.STRING), ("CLOB", srdb.STRING),
    ("BLOB", srdb.BINARY), ("DOUBLE PRECISION", srdb.NUMBER), ("DECIMAL(10,2)", srdb.NUMBER),
    ("DATETIME", srdb.DATETIME), ("TIMESTAMP", srdb.DATETIME), ("DATE", srdb.DATETIME),
])
def test_type_objects_follow_sqlite_affinity(declared: str, kind: srdb.DBAPITypeObject) -> None:
    assert kind == declared
    assert sum(k == declared for k in (srdb.STRING, srdb.BINARY, srdb.NUMBER, srdb.DATETIME)) == 1


def test_parameters_are_adapted_as_sqlite3_adapts_them() -> None:
    assert srdb.adapt(True) == 1 and srdb.adapt(None) is None
    assert srdb.adapt(b"\x00") == {"$blob": "AA=="}
    assert srdb.adapt(datetime.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"
    assert srdb.adapt(datetime.date(2026, 1, 2)) == "2026-01-02"
    with pytest.raises(srdb.ProgrammingError, match="Decimal is not supported"):
        import decimal

        srdb.adapt(decimal.Decimal("1.5"))
