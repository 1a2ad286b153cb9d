"""Parquet, through pyarrow (the optional extra ``srdb[parquet]``; the Lambda package holds it when built
with ``make package PARQUET=1``): its schema gives the columns' SQLite types, so nothing is inferred.

pyarrow reads a Parquet file by seeking to its footer, so an object is first copied to a local file."""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.load.reader import LoadError

BATCH_ROWS = 65_536


def pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LoadError("Parquet needs pyarrow, which this worker does not have: install srdb[parquet], or "
                        "deploy a package built with `make package PARQUET=1`") from None
    return pq


def sqlite_type(arrow_type: Any) -> str:
    """The SQLite column type for an Arrow type: integers INTEGER (but unsigned 64-bit TEXT), floats REAL,
    booleans INTEGER (0/1, SQLite's own), binary BLOB, everything else TEXT (times as ISO 8601, decimals
    as their digits, lists and structs as JSON)."""
    import pyarrow as pa

    kind = pa.types
    if kind.is_dictionary(arrow_type):
        return sqlite_type(arrow_type.value_type)
    if kind.is_uint64(arrow_type):
        return "TEXT"
    if kind.is_integer(arrow_type) or kind.is_boolean(arrow_type):
        return "INTEGER"
    if kind.is_floating(arrow_type):
        return "REAL"
    if kind.is_binary(arrow_type) or kind.is_large_binary(arrow_type) or kind.is_fixed_size_binary(arrow_type):
        return "BLOB"
    return "TEXT"


def sqlite_value(value: Any) -> Any:
    """A value pyarrow gives (``to_pylist``) as SQLite takes it, without losing what it is."""
    if value is None or isinstance(value, (str, float, bytes)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def read(path: Path, name: str) -> tuple[list[str], list[str], Iterator[list[Any]]]:
    """The columns, their SQLite types and the rows of a local Parquet file."""
    pq = pyarrow_parquet()
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except Exception as exc:  # pyarrow's own errors: a file that is not Parquet, or damaged
        raise LoadError(f"{name}: not a readable Parquet file: {exc}") from None
    columns = list(schema.names)
    types = [sqlite_type(field.type) for field in schema]

    def rows() -> Iterator[list[Any]]:
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                values = [[sqlite_value(v) for v in column.to_pylist()] for column in batch.columns]
                yield from (list(row) for row in zip(*values, strict=True))
        except LoadError:
            raise
        except Exception as exc:
            raise LoadError(f"{name}: reading Parquet failed: {exc}") from None

    return columns, types, rows()
