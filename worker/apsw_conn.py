"""An APSW connection as the worker's job code uses a ``sqlite3`` one (worker/execute.py, shared/guard.py).

APSW is how the worker reads pages on demand (worker/pages.py: a SQLite VFS in Python, which the standard
library cannot register). The job code stays one: this adapter gives it ``cursor()``, ``execute``,
``description``, iteration, the authorizer and progress handler, limits and defensive mode, and turns
APSW's exceptions into ``sqlite3`` ones carrying SQLite's extended result code (``sqlite_errorcode``), which
``worker.execute.job_error`` decides by. Like ``sqlite3``, it runs one statement per ``execute``: a job's
``sql`` that holds a second statement is refused before the second runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import apsw

ONE_STATEMENT = "You can only execute one statement at a time."  # sqlite3's own words (worker/execute.py)
_ERRORS: dict[int, type[sqlite3.Error]] = {
    sqlite3.SQLITE_CONSTRAINT: sqlite3.IntegrityError,
    sqlite3.SQLITE_MISMATCH: sqlite3.IntegrityError,
    sqlite3.SQLITE_TOOBIG: sqlite3.DataError,
    sqlite3.SQLITE_RANGE: sqlite3.ProgrammingError,
    sqlite3.SQLITE_NOMEM: sqlite3.OperationalError,
}


def as_sqlite3(exc: apsw.Error) -> Exception:
    """The exception ``sqlite3`` would have raised, with the same result code (``MemoryError`` for SQLite's
    heap cap, as there)."""
    code = int(getattr(exc, "extendedresult", 0) or getattr(exc, "result", 0) or 0)
    if isinstance(exc, apsw.ExecTraceAbort):
        return sqlite3.ProgrammingError(ONE_STATEMENT)
    if isinstance(exc, apsw.NoMemError):
        return MemoryError(str(exc))
    text = str(exc).removeprefix(f"{type(exc).__name__}: ")  # older APSW prefixes its class name
    error = _ERRORS.get(code & 0xFF, sqlite3.OperationalError)(text)
    error.sqlite_errorcode = code
    return error


def _nothing(sql: str) -> bool:
    """Whether ``sql`` holds only comments, blanks and semicolons."""
    import sqlparse  # only for the rare text that follows a job's statement

    return not sqlparse.format(sql, strip_comments=True).strip().strip(";").strip()


class Cursor:
    def __init__(self, cursor: apsw.Cursor, conn: apsw.Connection) -> None:
        self._cursor, self._conn, self._rows = cursor, conn, iter(())
        self.description: Sequence[tuple[Any, ...]] | None = None
        # As sqlite3's: -1 (the job code counts changes by total_changes), and SQLite's last_insert_rowid()
        # after each execute (not executemany).
        self.rowcount = -1
        self.lastrowid: int | None = None
        # The statement's columns, taken as it is prepared: once a statement has run to its end (a SELECT with no
        # rows), APSW no longer describes it, and sqlite3 still does.
        self._columns: tuple[tuple[str, str | None], ...] = ()

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        ran = 0
        columns: list[tuple[tuple[str, str | None], ...]] = []  # the trace holds no reference to this cursor

        def once(cursor: apsw.Cursor, statement: str, bindings: Any) -> bool:
            nonlocal ran
            if ran and _nothing(statement):  # what follows the statement is comments: no statement, as in sqlite3
                return True
            ran += 1
            if ran == 1:
                columns.append(tuple(cursor.get_description()))
            return ran == 1  # False: APSW stops before a second statement (ExecTraceAbort)

        self._cursor.exec_trace = once
        self._start(lambda: self._cursor.execute(sql, params), columns)
        self.lastrowid = int(self._conn.last_insert_rowid())
        return self

    def executemany(self, sql: str, sets: Iterable[Any]) -> Cursor:
        columns: list[tuple[tuple[str, str | None], ...]] = []

        def each(cursor: apsw.Cursor, statement: str, bindings: Any) -> bool:
            if not columns:
                columns.append(tuple(cursor.get_description()))
            return True

        self._cursor.exec_trace = each
        return self._start(lambda: self._cursor.executemany(sql, sets), columns)

    def _start(self, run: Callable[[], Iterable[Any]], columns: list[tuple[tuple[str, str | None], ...]]) -> Cursor:
        try:
            self._rows = iter(run())
        except apsw.Error as exc:
            raise as_sqlite3(exc) from None
        self._columns = columns[0] if columns else ()
        self.description = tuple((name, None, None, None, None, None, None) for name, _ in self._columns) or None
        return self

    def declared(self) -> list[str]:
        """The declared type of each column of the statement (what ``sqlite3`` needs a view to learn)."""
        return [declared or "" for _, declared in self._columns]

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._rows)
        except apsw.Error as exc:
            raise as_sqlite3(exc) from None

    def fetchone(self) -> Any:
        return next(self, None)

    def fetchall(self) -> list[Any]:
        return list(self)

    def close(self) -> None:
        self._cursor.close(force=True)


class Connection:
    """The subset of ``sqlite3.Connection`` the job code uses, over an APSW connection."""

    def __init__(self, conn: apsw.Connection, on_close: Callable[[], None] = lambda: None) -> None:
        self._conn, self._on_close = conn, on_close

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor(), self._conn)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        return self.cursor().execute(sql, params)

    def set_authorizer(self, authorize: Callable[..., int] | None) -> None:
        self._conn.authorizer = authorize

    def set_progress_handler(self, handler: Callable[[], int] | None, n: int) -> None:
        self._conn.set_progress_handler(None if handler is None else (lambda: bool(handler())), n)

    def setlimit(self, category: int, limit: int) -> int:
        return int(self._conn.limit(category, limit))

    def setconfig(self, op: int, enable: bool = True) -> bool:
        return bool(self._conn.config(op, int(enable)))

    @property
    def total_changes(self) -> int:
        return int(self._conn.total_changes())

    @property
    def in_transaction(self) -> bool:
        return not self._conn.get_autocommit()

    def close(self) -> None:
        try:
            self._conn.close(force=True)
        finally:
            self._on_close()
