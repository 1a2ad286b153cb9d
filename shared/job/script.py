"""A script's statements, split once for every client: the command line, the shell and the DB-API."""

from __future__ import annotations

import sqlparse


def statements_of(text: str) -> list[str]:
    """The statements of a script, each with its own text, empty ones (comments alone) dropped."""
    return [s.strip() for s in sqlparse.split(text)
            if sqlparse.format(s, strip_comments=True).strip().rstrip(";").strip()]
