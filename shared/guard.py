"""Enforcement: SQLite's authorizer and progress handler decide what a job's statements may do.

Every job's authorizer refuses what reaches outside its database (ATTACH, file functions,
pragmas outside an allow-list), transaction control, and the worker's own bookkeeping
(``_srdb_*``); a read job's also refuses every write, on a connection that is read-only anyway.
The progress handler interrupts a job past its deadline, or once it is cancelled.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import Forbidden, ReadOnlyViolation, SrdbError

INTERNAL_PREFIX = "_srdb_"
# The longest text or blob a job's SQL may make (SQLite's SQLITE_LIMIT_LENGTH, default ~1 GB): a result
# value is held several times over while it is encoded, and the Lambda has 1 GB.
MAX_VALUE_BYTES = 64 * 1024 * 1024

# Pragmas that only read; the second set may also be assigned by a write job.
READ_PRAGMAS = {
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "user_version",
    "application_id", "schema_version", "page_count", "page_size", "freelist_count", "encoding",
    "collation_list", "function_list", "pragma_list", "compile_options", "data_version", "defer_foreign_keys",
    "auto_vacuum", "foreign_keys",
}
# foreign_keys: SQLite ignores it inside a transaction; the worker applies a job's leading one before
# BEGIN (worker.foreign_keys).
SETTABLE_PRAGMAS = {"user_version", "application_id", "defer_foreign_keys", "auto_vacuum", "foreign_keys"}
# Pragmas that change the file even without a value: write jobs only.
WRITE_PRAGMAS = {"incremental_vacuum"}
_PRAGMAS_WITH_ARGUMENT = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                          "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"}
DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
# Virtual tables that show every table's pages, srdb's own among them.
DENIED_TABLES = {"dbstat", "sqlite_dbpage"}
# The schema tables: registering an eponymous virtual table (json_each, pragma_*) "updates" them.
_SCHEMA_TABLES = {"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"}

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
_SHADOW_WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}
# Where each action names a schema object: arg1, arg2 or both (an index or trigger and its table;
# ALTER TABLE gives the database, then the table). None of them may name srdb's own.
_OBJECT_ARGS: dict[int, tuple[int, ...]] = {
    sqlite3.SQLITE_READ: (0,), sqlite3.SQLITE_INSERT: (0,), sqlite3.SQLITE_UPDATE: (0,),
    sqlite3.SQLITE_DELETE: (0,), sqlite3.SQLITE_ALTER_TABLE: (1,), sqlite3.SQLITE_ANALYZE: (0,),
    sqlite3.SQLITE_REINDEX: (0,), sqlite3.SQLITE_CREATE_TABLE: (0,), sqlite3.SQLITE_CREATE_TEMP_TABLE: (0,),
    sqlite3.SQLITE_CREATE_VIEW: (0,), sqlite3.SQLITE_CREATE_TEMP_VIEW: (0,), sqlite3.SQLITE_CREATE_VTABLE: (0,),
    sqlite3.SQLITE_DROP_TABLE: (0,), sqlite3.SQLITE_DROP_TEMP_TABLE: (0,), sqlite3.SQLITE_DROP_VIEW: (0,),
    sqlite3.SQLITE_DROP_TEMP_VIEW: (0,), sqlite3.SQLITE_DROP_VTABLE: (0,),
    sqlite3.SQLITE_CREATE_INDEX: (0, 1), sqlite3.SQLITE_CREATE_TEMP_INDEX: (0, 1),
    sqlite3.SQLITE_DROP_INDEX: (0, 1), sqlite3.SQLITE_DROP_TEMP_INDEX: (0, 1),
    sqlite3.SQLITE_CREATE_TRIGGER: (0, 1), sqlite3.SQLITE_CREATE_TEMP_TRIGGER: (0, 1),
    sqlite3.SQLITE_DROP_TRIGGER: (0, 1), sqlite3.SQLITE_DROP_TEMP_TRIGGER: (0, 1),
}


def is_internal(name: str | None) -> bool:
    """True for the names of srdb's own tables, indexes, triggers and views."""
    return (name or "").lower().startswith(INTERNAL_PREFIX)


@dataclass
class Guard:
    """The authorizer and progress handler of one connection, and why it last refused.

    It refuses nothing and interrupts nothing outside :meth:`job`: the worker's own statements
    run outside it. Job connections cache no prepared statements (see :func:`open_job_connection`),
    so a job that sends the worker's statement text byte for byte gets a statement of its own,
    authorized as a job's.
    """

    read_only: bool
    now: Callable[[], float] = time.monotonic
    deadline: float = float("inf")
    active: bool = False
    refusal: SrdbError | None = field(default=None)
    wrote: bool = False
    # Set from another thread (worker.progress) when the job's owner cancels it while it runs.
    cancelled: threading.Event = field(default_factory=threading.Event)
    # A transaction's preview: it may write, on a scratch copy that is thrown away after.
    scratch: bool = False
    # The worker's own statements on a job's connection (see :meth:`bookkeeping`).
    worker: bool = False
    # The database's virtual tables (lower case): a module such as R*Tree prepares writes to its shadow
    # tables (``<name>_node``…) when a read first uses it, which a read-only connection never runs.
    virtual: frozenset[str] = frozenset()

    def install(self, conn: Any) -> None:
        conn.set_authorizer(self.authorize)
        conn.set_progress_handler(self.progress, 1000)

    @contextmanager
    def job(self, budget: float) -> Iterator[Guard]:
        """Authorize every statement prepared inside, and interrupt them after ``budget`` seconds."""
        self.deadline, self.active, self.refusal, self.wrote = self.now() + budget, True, None, False
        try:
            yield self
        finally:
            self.active, self.deadline = False, float("inf")

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Let the worker prepare a statement of its own in the middle of a job."""
        active, self.active = self.active, False
        try:
            yield
        finally:
            self.active = active

    @contextmanager
    def bookkeeping(self) -> Iterator[None]:
        """The worker's own statements on a connection a job has used: they may touch only the main
        schema and fire nothing a job made. A job can leave TEMP tables, triggers and renamed objects
        behind on its connection; the worker names ``main.`` in each of its statements, and this refuses
        anything prepared inside a trigger or view (SQLite names it in the authorizer's last argument)
        or in another schema, so no job can redirect or piggyback on the worker's writes."""
        active, self.active, self.worker = self.active, False, True
        try:
            yield
        finally:
            self.active, self.worker = active, False

    def progress(self) -> int:
        return 1 if self.cancelled.is_set() or self.now() > self.deadline else 0

    def authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None) -> int:
        if self.worker:
            return sqlite3.SQLITE_OK if src is None and (db in (None, "main") or (
                action == sqlite3.SQLITE_READ and (arg1 or "").lower() in _SCHEMA_TABLES)) else sqlite3.SQLITE_DENY
        if not self.active:
            return sqlite3.SQLITE_OK
        reason = self._refusal(action, arg1, arg2)
        if reason is None:
            if action in _WRITE_ACTIONS or (action == sqlite3.SQLITE_PRAGMA and (
                    arg2 is not None or (arg1 or "").lower() in WRITE_PRAGMAS)):
                self.wrote = True
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
        if action == sqlite3.SQLITE_READ and (arg1 or "").lower() in DENIED_TABLES:
            return Forbidden(f"{arg1} is not allowed: it shows the pages of srdb's own tables too "
                             "(PRAGMA page_count and page_size give a database's size)")
        args = (arg1, arg2)
        internal = next((args[i] for i in _OBJECT_ARGS.get(action, ()) if is_internal(args[i])), None)
        if internal is not None:
            return Forbidden(f"{internal} belongs to srdb: no job may read, change, index or trigger it")
        if self.read_only and action in _WRITE_ACTIONS:
            if action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in _SCHEMA_TABLES:
                return None  # a virtual table registering itself; the connection itself is read-only
            if action in _SHADOW_WRITES and self._shadow(arg1):
                return None  # prepared by a virtual table's module; the read-only connection refuses it if run
            return ReadOnlyViolation("a read-only job tried to write")
        return None

    def _shadow(self, table: str | None) -> bool:
        name = (table or "").lower()
        return any(name.startswith(f"{v}_") for v in self.virtual)

    def _pragma(self, name: str, value: str | None) -> SrdbError | None:
        name = name.lower()
        if name in WRITE_PRAGMAS:
            return ReadOnlyViolation(f"a read-only job tried PRAGMA {name}") if self.read_only else None
        if name not in READ_PRAGMAS:
            return Forbidden(f"PRAGMA {name} is not allowed")
        if value is not None and name in SETTABLE_PRAGMAS:
            return ReadOnlyViolation(f"a read-only job tried to set PRAGMA {name}") if self.read_only else None
        if value is not None and name not in _PRAGMAS_WITH_ARGUMENT:
            return Forbidden(f"PRAGMA {name} cannot be set")
        return None


# SQLite's limits on a job's connection (sqlite.org/limits.html, sqlite.org/security.html), each hit a
# clear FAILED SqlError or BadValue: room for real workloads, none for a job that means harm. A build's
# own maximum is lower for some (setlimit never raises one past it).
JOB_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 16 * 1024 * 1024,  # a job's SQL is at most 4 Mi characters
    sqlite3.SQLITE_LIMIT_COLUMN: 2000,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 1000,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 500,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 127,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 50_000,
    # Stock SQLite's own maximum, which APSW's build (pages on demand) keeps: one limit on every path.
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 32_766,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 100,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
}


def cap_sqlite_heap(limit: int) -> None:
    """Cap the memory SQLite may hold in this process, all jobs together (sqlite3_hard_heap_limit64,
    through its pragma): an allocation past it fails, so the job that makes it fails with
    ``MemoryLimit`` instead of the worker being killed. The pragma only ever lowers the cap."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA hard_heap_limit = {int(limit)}")
    finally:
        conn.close()


def open_job_connection(path: Path | str, guard: Guard, *, uri: bool = False) -> sqlite3.Connection:
    """A ``sqlite3`` connection for jobs, with no statement cache, prepared by :func:`prepare_job_connection`.

    sqlite3 caches prepared statements by their text, and the authorizer only runs when a statement
    is prepared: with a cache, a job could reuse a statement the worker prepared outside the guard."""
    conn = sqlite3.connect(path, uri=uri, isolation_level=None, check_same_thread=False, cached_statements=0)
    prepare_job_connection(conn, guard)
    return conn


SQLITE_DBCONFIG_DEFENSIVE = 1010  # sqlite3.h; Python's sqlite3 names it from 3.12


def prepare_job_connection(conn: Any, guard: Guard) -> None:
    """Make a connection (``sqlite3``'s, or worker/apsw_conn.py's over APSW) one for jobs: guarded, SQLite's
    limits set (JOB_LIMITS), foreign keys enforced, the schema not trusted (functions with side effects may
    not run from views or triggers), and SQLite's defensive mode where the connection can set it (APSW
    always; Python's sqlite3 from 3.12, the Lambda runtime)."""
    for limit, value in JOB_LIMITS.items():
        conn.setlimit(limit, value)
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA foreign_keys = ON")  # enforced by default, as Cloudflare D1 does
    setconfig = getattr(conn, "setconfig", None)
    if setconfig is not None:  # no writes to the schema tables, no corrupting pragmas
        setconfig(SQLITE_DBCONFIG_DEFENSIVE, True)
    if guard.read_only:
        guard.virtual = frozenset(str(name).lower() for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'"))
    guard.install(conn)
