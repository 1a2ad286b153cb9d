"""SQLite values through JSON: integers, reals, text and null as themselves, blobs tagged.

JSON has no infinities (Python writes ``Infinity``, which other parsers refuse): a real that is not
finite travels as ``{"$real": "Infinity"}``, ``{"$real": "-Infinity"}`` or ``{"$real": "NaN"}``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

from shared.errors import InvalidJob

SqlValue = int | float | str | bytes | None
BLOB_TAG = "$blob"
REAL_TAG = "$real"
_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def encode_value(value: SqlValue) -> Any:
    """A value as JSON: a blob becomes ``{"$blob": "<base64>"}``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BLOB_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return {REAL_TAG: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    return value


def decode_value(value: Any) -> SqlValue:
    """The inverse of :func:`encode_value`; anything that is not a SQLite value is an InvalidJob."""
    if value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidJob(f"integer {value} does not fit SQLite's 64 bits")
        return value
    if isinstance(value, dict) and set(value) == {BLOB_TAG} and isinstance(value[BLOB_TAG], str):
        try:
            return base64.b64decode(value[BLOB_TAG], validate=True)
        except binascii.Error as exc:
            raise InvalidJob(f"blob is not valid base64: {exc}") from None
    if isinstance(value, dict) and set(value) == {REAL_TAG} and value[REAL_TAG] in _NON_FINITE:
        return _NON_FINITE[value[REAL_TAG]]
    raise InvalidJob(f"parameter value {value!r:.80} is not an integer, real, text, null or tagged blob "
                     "(or a tagged non-finite real)")


def encode_row(row: Sequence[SqlValue]) -> list[Any]:
    return [encode_value(v) for v in row]


def decode_row(row: list[Any]) -> list[SqlValue]:
    return [decode_value(v) for v in row]
