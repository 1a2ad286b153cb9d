"""SQL classification (sqlparse decides the path) and enforcement (SQLite's authorizer decides what runs).

sqlparse only routes a job to the read or the write path. What a statement may do is decided
by SQLite itself: read jobs run on a read-only connection with an authorizer that refuses
every write, and every job's authorizer refuses what reaches outside its database.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlparse
from sqlparse.sql import Statement
from sqlparse.tokens import Comment, Punctuation

from shared.errors import Forbidden, InvalidJob, ReadOnlyViolation, SrdbError
from shared.jobs import Job

READ_TYPES = {"SELECT"}
READ_FIRST_KEYWORDS = {"SELECT", "WITH", "VALUES", "EXPLAIN"}
INTERNAL_TABLE_PREFIX = "_srdb_"

# Pragmas that only read; the second set may also be assigned by a write job.
READ_PRAGMAS = {
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "user_version",
    "application_id", "schema_version", "page_count", "page_size", "freelist_count", "encoding",
    "collation_list", "function_list", "pragma_list", "compile_options", "data_version",
}
SETTABLE_PRAGMAS = {"user_version", "application_id", "defer_foreign_keys"}
DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}

_WRITE_ACTIONS = {
    sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_TEMP_INDEX,
    sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_TEMP_TRIGGER, sqlite3.SQLITE_CREATE_TEMP_VIEW,
    sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_CREATE_VTABLE,
    sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_INDEX,
    sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_TEMP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_VIEW,
    sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_DROP_VTABLE,
    sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_ANALYZE,
}
_TABLE_WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE,
                 sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_ALTER_TABLE, sqlite3.SQLITE_CREATE_INDEX}


def is_read_statement(sql: str) -> bool:
    """True when ``sql`` is one statement that only reads. Raises InvalidJob for zero or several."""
    parsed = [p for p in sqlparse.parse(sql) if _meaningful(p)]
    if not parsed:
        raise InvalidJob("sql holds no statement")
    if len(parsed) > 1:
        raise InvalidJob(f"sql holds {len(parsed)} statements; send several as `statements`")
    statement = parsed[0]
    first = statement.token_first(skip_cm=True, skip_ws=True)
    match = re.match(r"[A-Za-z]+", first.value if first is not None else "")
    keyword = match.group(0).upper() if match else ""
    if keyword == "VACUUM" and re.search(r"\bINTO\b", statement.value, re.IGNORECASE):
        raise Forbidden("VACUUM INTO is not allowed: a job may only use its own database")
    if keyword == "PRAGMA":
        return "=" not in statement.value
    kind = statement.get_type()
    return kind in READ_TYPES or (kind == "UNKNOWN" and keyword in READ_FIRST_KEYWORDS)


def _meaningful(statement: Statement) -> bool:
    """False for a statement that is only whitespace, comments and semicolons."""
    return any(not t.is_whitespace and t.ttype not in Comment and t.ttype not in Punctuation
               for t in statement.flatten())


def is_read_job(job: Job) -> bool:
    """Route a job: reads run concurrently on read-only connections, writes under the lock."""
    reads = [is_read_statement(s.sql) for s in job.statements]
    return all(reads)


@dataclass
class Guard:
    """The authorizer and progress handler of one connection, and why it last refused."""

    read_only: bool
    deadline: float = float("inf")
    now: Callable[[], float] = time.monotonic
    enabled: bool = False
    refusal: SrdbError | None = field(default=None)

    def install(self, conn: sqlite3.Connection) -> None:
        conn.set_authorizer(self.authorize)
        conn.set_progress_handler(self.progress, 1000)

    def progress(self) -> int:
        return 1 if self.now() > self.deadline else 0

    def authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None, _src: str | None) -> int:
        if not self.enabled:
            return sqlite3.SQLITE_OK
        reason = self._refusal(action, arg1, arg2)
        if reason is None:
            return sqlite3.SQLITE_OK
        self.refusal = reason
        return sqlite3.SQLITE_DENY

    def _refusal(self, action: int, arg1: str | None, arg2: str | None) -> SrdbError | None:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return Forbidden("ATTACH, DETACH and VACUUM INTO are not allowed: a job may only use its own database")
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
            return Forbidden(f"function {arg2}() is not allowed")
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return Forbidden("transaction control (BEGIN, COMMIT, SAVEPOINT...) is not allowed: "
                             "a job is one transaction")
        if action == sqlite3.SQLITE_PRAGMA:
            return self._pragma(arg1 or "", arg2)
        if self.read_only and action in _WRITE_ACTIONS:
            return ReadOnlyViolation("a read-only job tried to write")
        if action in _TABLE_WRITES and (arg1 or "").lower().startswith(INTERNAL_TABLE_PREFIX):
            return Forbidden(f"table {arg1} belongs to srdb and cannot be changed")
        return None

    def _pragma(self, name: str, value: str | None) -> SrdbError | None:
        name = name.lower()
        if name not in READ_PRAGMAS:
            return Forbidden(f"PRAGMA {name} is not allowed")
        if value is not None and name in SETTABLE_PRAGMAS:
            return ReadOnlyViolation(f"a read-only job tried to set PRAGMA {name}") if self.read_only else None
        if value is not None and name not in {"table_info", "table_xinfo", "table_list", "index_list",
                                              "index_info", "index_xinfo", "foreign_key_list",
                                              "foreign_key_check", "integrity_check", "quick_check"}:
            return Forbidden(f"PRAGMA {name} cannot be set")
        return None
