"""Foreign keys: on for every job (as Cloudflare D1 has them), and a broken one named exactly.

SQLite says only ``FOREIGN KEY constraint failed``. When a statement fails so, the worker runs it once
more inside a savepoint with the checks deferred, asks ``PRAGMA foreign_key_check`` which row broke
which key, and rolls the savepoint back; a transaction whose deferred checks fail at COMMIT is asked
the same before it is rolled back. Either way the job fails ``ConstraintViolation`` naming the key,
the row and its value, and nothing of it is applied.

A job may turn the checks off for its own transaction with ``PRAGMA foreign_keys = OFF`` as its first
statement (SQLite ignores the pragma inside a transaction, so the worker applies it before BEGIN),
or defer them to its end with ``PRAGMA defer_foreign_keys = ON``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from shared.guard import Guard
from shared.job.model import Job
from shared.names import sql_identifier

FOREIGN_KEY_FAILED = sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY  # type: ignore[attr-defined,unused-ignore]
_SETTING = re.compile(r"\s*PRAGMA\s+(?:main\s*\.\s*)?foreign_keys\s*=\s*['\"]?(\w+)['\"]?\s*;?\s*", re.IGNORECASE)
_ON, _OFF = {"1", "on", "true", "yes"}, {"0", "off", "false", "no"}


def enforced(job: Job) -> bool:
    """Whether the job's transaction checks foreign keys: yes, unless its first statement turns them off."""
    if job.kind not in ("sql", "statements") or not job.statements:
        return True
    found = _SETTING.fullmatch(job.statements[0].sql)
    return not (found and found.group(1).lower() in _OFF)


def is_broken_key(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == FOREIGN_KEY_FAILED


def broken_key(conn: sqlite3.Connection, guard: Guard) -> str | None:
    """Which row breaks which foreign key in the open transaction, in words; None when none does."""
    with guard.bookkeeping():
        found = conn.execute("PRAGMA main.foreign_key_check").fetchone()
        if found is None:
            return None
        table, rowid, parent, key = found
        broken = _keys(conn, table)[key]
        children, where = broken[1], _named(table, broken)
        if rowid is None:
            return f"{where}: a row of {table} names a {parent} row that does not exist"
        values = conn.execute(f"SELECT {', '.join(sql_identifier(c) for c in children)} FROM main."
                              f"{sql_identifier(table)} WHERE rowid = ?", (rowid,)).fetchone() or ()
        shown = ", ".join(f"{c} = {v!r}" for c, v in zip(children, values, strict=False))
        return f"{where}: {table} row {rowid} has {shown}, which no row of {parent} has"


def explain_statement(conn: sqlite3.Connection, guard: Guard, start: Callable[[sqlite3.Cursor], object]) -> str | None:
    """Run a statement that failed its foreign keys again (``start`` runs it on a cursor), with the checks
    deferred, inside a savepoint that is rolled back, to learn which key it broke. The job fails either way:
    this only names why."""
    if not conn.in_transaction:
        return None
    with guard.suspended():
        deferred = conn.execute("PRAGMA defer_foreign_keys").fetchone()[0]
        conn.execute("SAVEPOINT _srdb_foreign_keys")
        conn.execute("PRAGMA defer_foreign_keys = ON")
    try:
        cursor = conn.cursor()
        try:
            start(cursor)
            for _ in cursor:
                pass
        finally:
            cursor.close()
        return broken_key(conn, guard)
    except sqlite3.Error:
        return None
    finally:
        with guard.suspended():
            conn.execute("ROLLBACK TO _srdb_foreign_keys")
            conn.execute("RELEASE _srdb_foreign_keys")
            conn.execute(f"PRAGMA defer_foreign_keys = {int(deferred)}")


def keys_of(conn: sqlite3.Connection, table: str) -> str:
    """A table's foreign keys in words (``orders(customer_id) REFERENCES customers(id)``, one or more):
    what a load's rejected row broke, where SQLite names no key."""
    keys = _keys(conn, table)
    return " or ".join(_named(table, keys[k]) for k in sorted(keys))


_Key = tuple[str, list[str], list[str]]  # the parent table, the child columns, the parent columns


def _keys(conn: sqlite3.Connection, table: str) -> dict[int, _Key]:
    keys: dict[int, _Key] = {}
    for row in conn.execute(f"PRAGMA main.foreign_key_list({sql_identifier(table)})"):
        _, children, parents = keys.setdefault(row[0], (str(row[2]), [], []))
        children.append(str(row[3]))
        parents.append(str(row[4]) if row[4] is not None else "its primary key")
    return keys


def _named(table: str, key: _Key) -> str:
    parent, children, parents = key
    return f"{table}({', '.join(children)}) REFERENCES {parent}({', '.join(parents)})"
