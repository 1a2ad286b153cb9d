"""A PEP 249 (DB-API 2.0) driver: srdb's job path behind ``connect``, ``cursor`` and ``execute``.

As PEP 249 asks, a connection is transactional: the first ``execute`` begins an optimistic
transaction (``producer/transaction.py``) whose statements run on its snapshot plus its own
writes, visible to nobody else; ``commit()`` applies them if the database has not changed since
the transaction began and raises ``SerializationFailure`` (an ``OperationalError``; run the
transaction again) if it has; ``rollback()`` forgets them. With ``autocommit = True`` every
``execute`` is one job, committed when it returns. ``executemany`` sends every parameter set in
one job: the batch path.

A block of statements runs as one atomic job inside ``with connection.transaction():`` (or
``cursor.executescript``): the statements are collected and sent when the block ends; if it
raises, or ``rollback()`` is called inside it, nothing is sent.

    >>> import producer.dbapi as srdb
    >>> conn = srdb.connect(database="shop")            # settings from SRDB_* or .srdb/local.env
    >>> cur = conn.cursor()
    >>> cur.execute("SELECT name FROM users WHERE id = ?", (1,))
    >>> cur.fetchone()
"""

from __future__ import annotations

import sqlite3

from producer.dbapi.connection import Connection, StatementBlock, connect
from producer.dbapi.cursor import Cursor
from producer.dbapi.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    SerializationFailure,
    Warning,
)
from producer.dbapi.types import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Date,
    DateFromTicks,
    DBAPITypeObject,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
    adapt,
    affinity,
)

__all__ = [
    "BINARY", "DATETIME", "NUMBER", "ROWID", "STRING", "Binary", "Connection", "Cursor", "DBAPITypeObject",
    "DataError", "DatabaseError", "Date", "DateFromTicks", "Error", "IntegrityError", "InterfaceError",
    "InternalError", "NotSupportedError", "OperationalError", "ProgrammingError", "SerializationFailure",
    "StatementBlock", "Time", "TimeFromTicks", "Timestamp", "TimestampFromTicks", "Warning", "adapt", "affinity",
    "apilevel", "connect", "paramstyle", "sqlite_version", "sqlite_version_info", "threadsafety",
]

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "qmark"  # :name parameters (a mapping) are accepted too

# The SQLite that runs the SQL is the worker's; workers and clients on the same Python share it.
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info
