"""SQL classification: sqlparse decides whether a job takes the read or the write path.

It only routes. What a statement may do is decided by SQLite itself (``shared.guard``): read jobs
run on a read-only connection whose authorizer refuses every write. A statement sqlparse cannot
classify (too long, too deeply nested) takes the write path, where SQLite runs whatever it is
under the full authorizer.
"""

from __future__ import annotations

import re

import sqlparse
from sqlparse.exceptions import SQLParseError
from sqlparse.sql import Statement
from sqlparse.tokens import Comment, Punctuation

from shared.errors import Forbidden, InvalidJob
from shared.guard import SETTABLE_PRAGMAS
from shared.job.model import Job

READ_TYPES = {"SELECT"}
READ_FIRST_KEYWORDS = {"SELECT", "WITH", "VALUES", "EXPLAIN"}
# sqlparse groups tokens in Python (~10 µs a token) and gives up past 10,000 tokens or 100 levels;
# a statement longer than this is not parsed at all: SQLite decides on the write path.
PARSE_MAX_CHARS = 20_000
# PRAGMA name(value): the call form sets a pragma as ``= value`` does (``PRAGMA user_version(5)``).
_SETTING = re.compile(r"\s*PRAGMA\s+(?:\w+\s*\.\s*)?(\w+)\s*\(", re.IGNORECASE)
_EXPLAINED = re.compile(r"\bEXPLAIN(\s+QUERY\s+PLAN)?\s+", re.IGNORECASE)
def is_read_statement(sql: str) -> bool:
    """True when ``sql`` is one statement that only reads. Raises InvalidJob for zero or several.

    False too when sqlparse cannot tell (see PARSE_MAX_CHARS): the write path runs any statement."""
    return reads(sql) is True


def reads(sql: str) -> bool | None:
    """Whether ``sql`` only reads; None when sqlparse cannot tell (too long, or past its limits)."""
    if len(sql) > PARSE_MAX_CHARS:
        return None
    try:
        parsed = [p for p in sqlparse.parse(sql) if _meaningful(p)]
    except SQLParseError:
        return None
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
        setting = _SETTING.search(statement.value)
        return not ("=" in statement.value or "incremental_vacuum" in statement.value.lower()
                    or (setting is not None and setting.group(1).lower() in SETTABLE_PRAGMAS))
    if keyword == "EXPLAIN":  # SQLite prepares the statement explained: a write's needs the write path
        inner = _EXPLAINED.sub("", statement.value, count=1)
        return reads(inner) if inner.strip() else True
    kind = statement.get_type()
    return kind in READ_TYPES or (kind == "UNKNOWN" and keyword in READ_FIRST_KEYWORDS)


def _meaningful(statement: Statement) -> bool:
    """False for a statement that is only whitespace, comments and semicolons."""
    return any(not t.is_whitespace and t.ttype not in Comment and t.ttype not in Punctuation
               for t in statement.flatten())


def is_read_job(job: Job) -> bool:
    """Route a job: reads run concurrently on read-only connections, writes under the lock."""
    return job.load is None and all(is_read_statement(s.sql) for s in job.statements)


def may_read_only(job: Job) -> bool:
    """True when no statement of ``job`` is known to write, though sqlparse could not tell for some: such
    a job may run on the read path, where SQLite's read-only connection refuses whatever writes."""
    return job.load is None and all(reads(s.sql) is not False for s in job.statements)
