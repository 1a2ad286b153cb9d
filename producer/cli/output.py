"""Printing results: tables that fit the terminal, JSON a script can parse, CSV."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterable
from typing import Any

from shared.job.result import JobResult
from shared.job.values import BLOB_TAG, decode_row

FORMATS = ("table", "json", "csv")


def render(result: JobResult, rows: Iterable[list[Any]], fmt: str) -> str:
    """``rows`` are encoded rows (blobs tagged), usually every row of the result."""
    if fmt == "json":
        return json_document(result, list(rows))
    if fmt == "csv":
        return csv_text(result.columns, rows)
    return table(result.columns, [decode_row(r) for r in rows]) + "\n" + summary(result)


def json_document(result: JobResult, rows: list[list[Any]]) -> str:
    doc = {"job_id": result.job_id, "state": result.state.value, "database": result.database,
           "columns": result.columns, "rows": rows, "rowcount": result.rowcount, "lastrowid": result.lastrowid,
           "error": result.error, "version": result.version, "timings": result.timings}
    return json.dumps(doc, ensure_ascii=False)


def csv_text(columns: list[str], rows: Iterable[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else cell(v) for v in decode_row(row)])
    return out.getvalue().rstrip("\n")


def cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "x'" + value.hex() + "'"
    if isinstance(value, dict) and BLOB_TAG in value:
        return "<blob>"
    return str(value)


def table(columns: list[str], rows: list[list[Any]], width: int | None = None) -> str:
    """A boxed table; columns shrink (longest first) until it fits ``width``."""
    if not columns:
        return ""
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = [[cell(v).replace("\n", " ") for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    while sum(widths) + 3 * len(widths) + 1 > width and max(widths) > 4:
        widest = widths.index(max(widths))
        widths[widest] -= 1

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: max(0, w - 1)] + "…"

    def line(values: list[str], numeric: list[bool]) -> str:
        parts = [fit(v, w).rjust(w) if num else fit(v, w).ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "│ " + " │ ".join(parts) + " │"

    numeric = [all(isinstance(r[i], (int, float)) for r in rows if r[i] is not None) and bool(rows)
               for i in range(len(columns))]
    rule = "─┼─".join("─" * w for w in widths)
    out = ["┌─" + "─┬─".join("─" * w for w in widths) + "─┐", line(columns, [False] * len(columns)),
           "├─" + rule + "─┤"]
    out += [line(r, numeric) for r in cells]
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    return "\n".join(out)


def summary(result: JobResult) -> str:
    t = result.timings
    timing = ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in t.items())
    rows = f"{result.rowcount} row{'s' if result.rowcount != 1 else ''}"
    return f"{result.state.value}: {rows}, snapshot v{result.version} ({timing}) job {result.job_id}"
