"""SQL text as people give it: a file, stdin or an argument, holding one statement or a script."""

from __future__ import annotations

import sys
from pathlib import Path

from shared.errors import ClientSideError
from shared.job.script import statements_of

__all__ = ["read_sql", "statements_of"]


def read_sql(sql: str | None, file: Path | None) -> str:
    """The SQL a command was given: the argument, ``-`` for stdin, or ``--file`` (``-`` is stdin too)."""
    if sql is not None and file is not None:
        raise ClientSideError("give the SQL as an argument or with -f FILE, not both")
    if file is not None and str(file) != "-":
        try:
            return file.expanduser().read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ClientSideError(f"cannot read {file}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ClientSideError(f"{file} is not UTF-8 text: {exc}") from None
    if sql == "-" or file is not None:
        return sys.stdin.read()
    if sql is None:
        raise ClientSideError("no SQL: give it as an argument, with -f FILE, or - to read stdin")
    return sql
