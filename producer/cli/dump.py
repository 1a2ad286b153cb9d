"""``.dump``: a database as the SQL text that makes it again, in the manner of sqlite3's ``.dump``.

There is no ``BEGIN``/``COMMIT`` around it: srdb runs a script as one job, and so one transaction,
whole (``srdb query -f dump.sql``); sqlite3 reads it as it is."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from shared.names import sql_identifier


def literal(value: Any) -> str:
    """A value as SQLite reads it back: the same type and the same value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"
        if math.isinf(value):
            return "9e999" if value > 0 else "-9e999"
        return repr(value)
    if isinstance(value, bytes):
        return "X'" + value.hex().upper() + "'"
    return "'" + str(value).replace("'", "''") + "'"


def dump_lines(schema: Iterable[tuple[str, str, str]], rows_of: Any) -> Iterator[str]:
    """``schema``: (type, name, sql) of each object, tables first; ``rows_of(table)``: its rows, decoded."""
    later: list[str] = []
    for kind, name, sql in schema:
        if kind != "table":
            later.append(f"{sql};")
            continue
        yield f"{sql};"
        for row in rows_of(name):
            yield f"INSERT INTO {sql_identifier(name)} VALUES({','.join(literal(v) for v in row)});"
    yield from later
