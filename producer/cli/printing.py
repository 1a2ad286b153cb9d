"""How commands print: records for people (a table) or scripts (JSON, CSV), results through a pager,
errors as JSON too under --format json."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from shared.errors import EXIT_INTERRUPTED, EXIT_OK, JobFailed, JobNotFound

if TYPE_CHECKING:
    from producer.client import Client
    from shared.job.result import JobResult


def print_error_json(error: dict[str, Any], code: int, job_id: str | None = None) -> None:
    """In --format json, an error is a JSON document on stdout too, so a pipe into jq never breaks."""
    doc: dict[str, Any] = {"error": error, "exit_code": code}
    if job_id:
        doc["job_id"] = job_id
    print(json.dumps(doc, ensure_ascii=False))


def fail(code: int, message: str) -> int:
    print(message, file=sys.stderr)
    return code


def interrupted(lines: list[str]) -> int:
    print("\n".join(["interrupted", *lines]), file=sys.stderr)
    return EXIT_INTERRUPTED


def print_result(client: Client, result: JobResult, fmt: str, no_pager: bool = False) -> int:
    from producer.cli.output import render
    from shared.job.result import JobState

    if result.state is JobState.NOT_FOUND:
        raise JobNotFound(f"job {result.job_id} was never submitted")
    rows = client.store.iter_rows(result) if result.state is JobState.SUCCEEDED else []
    page(render(result, rows, fmt), no_pager)
    if result.created:
        print(f"created database {result.database}", file=sys.stderr)
    if result.state in (JobState.FAILED, JobState.CANCELLED):
        failed = JobFailed(result.job_id, result.error or {"type": "Cancelled", "message": "the job was cancelled"})
        failed.shown = True
        raise failed
    return EXIT_OK


def page(text: str, no_pager: bool) -> None:
    """Print ``text``; on a terminal, through $PAGER (less -FRX) when it is longer than the screen."""
    import os
    import shlex
    import shutil
    import subprocess

    rows = shutil.get_terminal_size((80, 24)).lines
    if no_pager or not sys.stdout.isatty() or text.count("\n") + 1 < rows:
        print(text)
        return
    pager = os.environ.get("PAGER") or "less -FRX"
    try:
        subprocess.run(shlex.split(pager), input=text + "\n", text=True, check=False)
    except OSError:
        print(text)


def print_record(record: dict[str, Any], fmt: str, text: str) -> None:
    """One small record: JSON or CSV for scripts, ``text`` for people."""
    from producer.cli.output import csv_text

    if fmt == "json":
        print(json.dumps(record, ensure_ascii=False))
    elif fmt == "csv":
        print(csv_text(list(record), [list(record.values())]))
    else:
        print(text)


def print_records(records: list[dict[str, Any]], columns: list[str], fmt: str, empty: str) -> None:
    from producer.cli.output import csv_text, table

    rows = [[r.get(c) for c in columns] for r in records]
    if fmt == "json":
        print(json.dumps(records, ensure_ascii=False))
    elif fmt == "csv":
        print(csv_text(columns, rows))
    else:
        print(table(columns, rows) if records else empty)
