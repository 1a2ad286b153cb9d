"""Printing results: tables that fit the terminal, JSON a script can parse, CSV."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import wcwidth

from shared.job.result import JobResult
from shared.job.values import BLOB_TAG, decode_row

FORMATS = ("table", "json", "csv")
# The shell's .mode, as sqlite3's: box (the table above), table (ASCII), markdown, line, list, csv, json.
MODES = ("table", "box", "markdown", "line", "list", "csv", "json")


def render(result: JobResult, rows: Iterable[list[Any]], fmt: str) -> str:
    """``rows`` are encoded rows (blobs tagged), usually every row of the result."""
    if fmt == "json":
        return json_document(result, list(rows))
    if fmt == "csv":
        return csv_text(result.columns, rows)
    shown = table(result.columns, [decode_row(r) for r in rows])
    return (shown + "\n" if shown else "") + summary(result)


def json_document(result: JobResult, rows: list[list[Any]]) -> str:
    doc = {"job_id": result.job_id, "state": result.state.value, "database": result.database,
           "columns": result.columns, "rows": rows, "rowcount": result.rowcount, "lastrowid": result.lastrowid,
           "error": result.error, "version": result.version, "timings": result.timings, "created": result.created}
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


def table(columns: list[str], rows: list[list[Any]], width: int | None = None, *, nullvalue: str = "NULL",
          headers: bool = True) -> str:
    """A boxed table when it fits ``width``; otherwise psql's expanded display (one ``column | value``
    line per field, a record at a time), so no value is ever cut. Widths count what a terminal shows:
    East Asian wide characters take two cells, combining marks none."""
    if not columns:
        return ""
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = [[(nullvalue if v is None else cell(v)).replace("\r\n", "\n") for v in row] for row in rows]
    shown = columns if headers else [""] * len(columns)
    widths = [max([display_width(c)] + [display_width(line) for r in cells for line in r[i].split("\n")])
              for i, c in enumerate(shown)]
    if sum(widths) + 3 * len(widths) + 1 > width:
        return expanded(columns, cells)

    def pad(text: str, w: int, right: bool) -> str:
        fill = " " * (w - display_width(text))
        return fill + text if right else text + fill

    def line(values: list[str], numeric: list[bool]) -> str:
        """A row; a value with line breaks takes as many lines of the box as it has (as sqlite3's box)."""
        split = [v.split("\n") for v in values]
        height = max(len(parts) for parts in split)
        return "\n".join("│ " + " │ ".join(pad(parts[k] if k < len(parts) else "", w, num)
                                           for parts, w, num in zip(split, widths, numeric, strict=True)) + " │"
                         for k in range(height))

    numeric = [all(isinstance(r[i], (int, float)) for r in rows if r[i] is not None) and bool(rows)
               for i in range(len(columns))]
    rule = "─┼─".join("─" * w for w in widths)
    out = ["┌─" + "─┬─".join("─" * w for w in widths) + "─┐"]
    if headers:
        out += [line(columns, [False] * len(columns)), "├─" + rule + "─┤"]
    out += [line(r, numeric) for r in cells]
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    return "\n".join(out)


def expanded(columns: list[str], cells: list[list[str]]) -> str:
    """psql's ``\\x``: each record as ``column | value`` lines under a ``-[ RECORD n ]`` rule."""
    name_width = max(display_width(c) for c in columns)
    out: list[str] = []
    for number, row in enumerate(cells, start=1):
        out.append(f"-[ RECORD {number} ]" + "-" * max(0, name_width - 9))
        out += [c + " " * (name_width - display_width(c)) + " | " + v for c, v in zip(columns, row, strict=True)]
    return "\n".join(out) if out else " | ".join(columns) + "\n(0 rows)"


def display_width(text: str) -> int:
    """The cells ``text`` takes on a terminal, by wcwidth: wide East Asian characters and emoji take two,
    combining marks none, an emoji ZWJ sequence (a family, a flag) as one glyph; a control character none."""
    width = wcwidth.wcswidth(text)
    return width if width >= 0 else sum(max(0, wcwidth.wcwidth(ch)) for ch in text)


def summary(result: JobResult) -> str:
    t = result.timings
    timing = ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in t.items())
    rows = f"{result.rowcount} row{'s' if result.rowcount != 1 else ''}"
    snapshot = f", snapshot v{result.version}" if result.version is not None else ""
    timing = f" ({timing})" if timing else ""
    return f"{result.state.value}: {rows}{snapshot}{timing} job {result.job_id}"


def human_size(size: int) -> str:
    """Bytes for people: 812 B, 4.0 KiB, 1.5 MiB, …"""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def rows_text(columns: list[str], rows: list[list[Any]], mode: str, *, headers: bool = True,
              nullvalue: str = "NULL", width: int | None = None) -> str:
    """Rows (encoded: blobs tagged) as the shell prints them in ``mode``."""
    if mode == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], ensure_ascii=False)
    values = [decode_row(r) for r in rows]
    if mode == "csv":
        text = csv_text(columns, rows)
        return text if headers else text.partition("\n")[2]
    cells = [[nullvalue if v is None else cell(v) for v in row] for row in values]
    if mode in ("table", "box"):
        return table(columns, values, width, nullvalue=nullvalue, headers=headers)
    if mode == "line":
        name_width = max(map(display_width, columns))
        return "\n\n".join("\n".join(" " * (name_width - display_width(c)) + f"{c} = {v}"
                                       for c, v in zip(columns, row, strict=True)) for row in cells)
    if mode == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"] if headers else []
        return "\n".join(lines + ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in cells])
    lines = ["|".join(columns)] if headers else []  # list, and the tables without their header
    return "\n".join(lines + ["|".join(row) for row in cells])
