"""Column types a load may give a new table without changing a value: INTEGER or REAL only when every
value in the column reads back exactly as it was written; anything else is TEXT."""

from __future__ import annotations

import json
import math
import re
from typing import Any

_INT = re.compile(r"0|-?[1-9][0-9]{0,18}")
_REAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # SQLite's INTEGER
EXACT_IN_REAL = 2**53  # the largest integer span a double holds exactly
INTEGER, REAL, TEXT = "INTEGER", "REAL", "TEXT"


def text_kind(value: str) -> str:
    """The narrowest type that keeps ``value`` as written: 42 INTEGER; 1.5 REAL; 02134, +1, 1e3, 1.50 TEXT."""
    if _INT.fullmatch(value) and (len(value) < 19 or INT64_MIN <= int(value) <= INT64_MAX):
        return INTEGER
    if _REAL.fullmatch(value) and repr(float(value)) == value:
        return REAL
    return TEXT


def widen(current: str | None, seen: str, value: Any) -> str:
    """The type a column needs once it holds ``value`` of kind ``seen`` as well. An integer joins REAL
    only when a double holds it exactly."""
    if current is None or current == seen:
        return seen
    if TEXT in (current, seen):
        return TEXT
    integer = value if seen == INTEGER else None  # current is REAL, seen INTEGER (or the reverse)
    if integer is not None:
        number = int(integer) if isinstance(integer, str) else integer
        return REAL if abs(number) <= EXACT_IN_REAL else TEXT
    return REAL  # a real joins a column of integers: each was checked when it came


class Inference:
    """Types for columns, learnt from every value (None until a non-null value is seen; TEXT then)."""

    def __init__(self) -> None:
        self.types: list[str | None] = []
        self.big_ints: list[bool] = []  # an integer past 2**53 is in the column: it can never be REAL

    def feed_text(self, row: list[str | None]) -> None:
        self._grow(len(row))
        types = self.types
        for i, value in enumerate(row):
            current = types[i]
            if value is None or current == TEXT:
                continue
            seen = text_kind(value)
            self._note(i, seen, value)

    def result(self, width: int) -> list[str]:
        self._grow(width)
        return [t or TEXT for t in self.types[:width]]

    def _note(self, i: int, seen: str, value: Any) -> None:
        if seen == INTEGER and abs(int(value)) > EXACT_IN_REAL:
            self.big_ints[i] = True
        current = self.types[i]
        new = widen(current, seen, value)
        if new == REAL and self.big_ints[i]:
            new = TEXT
        self.types[i] = new

    def _grow(self, width: int) -> None:
        while len(self.types) < width:
            self.types.append(None)
            self.big_ints.append(False)


_HAS_TEXT, _HAS_REAL, _HAS_INTEGER, _HAS_WIDE = 1, 2, 4, 8  # what a JSON column has held


class JsonColumns:
    """JSON Lines records as rows: each key a column, in the order first seen; the values as SQLite takes
    them (json_value); and each column's type, learnt as the values pass: INTEGER when every value is a
    64-bit integer, REAL when every value is a number a double holds exactly, else TEXT (text, true/false,
    objects, arrays, integers past 64 bits, a column of nulls). The load and its dry run both use it."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self._seen: list[int] = []

    def add(self, key: str) -> int:
        """A new column for ``key``; its index."""
        index = len(self.keys)
        self.keys[key] = index
        self._seen.append(0)
        return index

    def row(self, record: dict[str, Any]) -> list[Any]:
        """The record as a row of every column known (each of its keys must be)."""
        keys, seen = self.keys, self._seen
        row: list[Any] = [None] * len(keys)
        for key, value in record.items():  # one loop, no call per value: this is the load's hot path
            index = keys[key]
            kind = type(value)
            if kind is str:
                seen[index] |= _HAS_TEXT
            elif kind is int and INT64_MIN <= value <= INT64_MAX:
                seen[index] |= _HAS_INTEGER if -EXACT_IN_REAL <= value <= EXACT_IN_REAL else _HAS_INTEGER | _HAS_WIDE
            elif kind is float and math.isfinite(value):
                seen[index] |= _HAS_REAL
            elif value is not None:  # true/false, objects, arrays, integers past 64 bits, NaN: their text
                seen[index] |= _HAS_TEXT
                value = json_value(value) if kind is not float else json.dumps(value)
            row[index] = value
        return row

    def types(self) -> list[str]:
        types = []
        for flags in self._seen:
            if flags & _HAS_TEXT or (flags & _HAS_REAL and flags & _HAS_WIDE):
                types.append(TEXT)
            elif flags & _HAS_REAL:
                types.append(REAL)
            else:
                types.append(INTEGER if flags & _HAS_INTEGER else TEXT)
        return types


def json_value(value: Any) -> Any:
    """A JSON Lines value as SQLite takes it: numbers and text as they are (an integer past 64 bits as its
    digits), true/false as text, objects and arrays as their JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return str(value)  # past SQLite's 64 bits: its digits, whole
    return value
