"""PEP 249's type objects and constructors, and how Python values become job parameters."""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from typing import Any

from producer.dbapi.errors import ProgrammingError
from shared.job.model import JsonParams
from shared.job.values import encode_value

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])


class DBAPITypeObject:
    """Compares equal to every declared type with one of these SQLite affinities."""

    def __init__(self, *affinities: str) -> None:
        self.affinities = frozenset(affinities)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and affinity(other) in self.affinities

    def __hash__(self) -> int:
        return hash(self.affinities)

    def __repr__(self) -> str:
        return f"DBAPITypeObject{tuple(sorted(self.affinities))}"


def affinity(declared: str) -> str:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html#affinity_name_examples);
    a type that names a date or time is DATETIME here, as PEP 249 asks."""
    name = declared.upper()
    if "INT" in name:
        return "INTEGER"
    if any(word in name for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in name or not name:
        return "BLOB"
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    if "DATE" in name or "TIME" in name:
        return "DATETIME"
    return "NUMERIC"


STRING = DBAPITypeObject("TEXT")
BINARY = DBAPITypeObject("BLOB")
NUMBER = DBAPITypeObject("INTEGER", "REAL", "NUMERIC")
DATETIME = DBAPITypeObject("DATETIME")
ROWID = DBAPITypeObject("INTEGER")


def adapt(value: Any) -> Any:
    """A Python value as a job parameter, adapted as sqlite3 adapts it."""
    if value is None or isinstance(value, (str, int, float)):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return encode_value(bytes(value))
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise ProgrammingError(f"parameter of type {type(value).__name__} is not supported "
                           "(integers, reals, text, bytes, None, dates and times are)")


def job_params(params: Sequence[Any] | Mapping[str, Any] | None) -> JsonParams:
    if params is None:
        return []
    if isinstance(params, Mapping):
        return {str(k).lstrip(":@$"): adapt(v) for k, v in params.items()}
    if isinstance(params, (str, bytes)):
        raise ProgrammingError("parameters must be a sequence or a mapping, not a single string")
    return [adapt(v) for v in params]


