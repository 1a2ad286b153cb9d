"""The type of each result column, for ``cursor.description``.

Python's sqlite3 reports column names only. A column that comes straight from a table has a
declared type, and SQLite gives it to a view made of the same SELECT: ``PRAGMA table_info`` on a
temporary view reads it without running the query. A column with no declared type (an
expression) takes the storage class of its first non-null value.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

VIEW = "_srdb_columns"
# ?, ?NNN, :name, @name, $name. One inside a string literal or a comment becomes NULL there too,
# which changes no column's type; one inside a quoted identifier makes the view fail, and the
# types then come from the values.
_PLACEHOLDER = re.compile(r"\?\d*|[:@$][A-Za-z_][A-Za-z0-9_]*")


def declared_types(conn: sqlite3.Connection, sql: str, width: int) -> list[str]:
    """The declared type of each column of ``sql`` ("" where there is none or SQLite cannot tell).

    Runs with the guard off on a connection of its own (a view is never made inside a job)."""
    # A view may not hold parameters; NULL in their place keeps every column's origin.
    text = _PLACEHOLDER.sub("NULL", sql.strip().rstrip(";"))
    try:
        conn.execute(f"CREATE TEMP VIEW {VIEW} AS {text}")
    except sqlite3.Error:
        return [""] * width  # not a SELECT a view can hold (PRAGMA, EXPLAIN, a write with RETURNING)
    try:
        # A view is only checked when it is used: a name it cannot resolve fails here.
        found = [str(row[2]) for row in conn.execute(f"PRAGMA temp.table_info({VIEW})")]
    except sqlite3.Error:
        found = []
    finally:
        conn.execute(f"DROP VIEW temp.{VIEW}")
    return found if len(found) == width else [""] * width


class ValueTypes:
    """The storage class of each column's first non-null value, fed batch by batch."""

    def __init__(self, width: int) -> None:
        self.found: list[str] = [""] * width
        self._missing = width

    def feed(self, rows: list[Any]) -> None:
        if not self._missing:
            return
        for index, kind in enumerate(self.found):
            if kind:
                continue
            for row in rows:
                value = row[index]
                if value is not None:
                    self.found[index] = storage_class(value)
                    self._missing -= 1
                    break


def storage_class(value: Any) -> str:
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, str):
        return "TEXT"
    return "BLOB"


def merge(declared: list[str], seen: list[str]) -> list[str]:
    return [d or s for d, s in zip(declared, seen, strict=True)]
