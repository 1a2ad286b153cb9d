"""``srdb load`` and ``srdb export``: COPY a file into a table, or a query's result into a file.

A load stages a local file (or stdin) in S3 with a progress bar in bytes, sends one load job that names
the object(s) and waits for it: every row or none (see producer.bulk and worker.load)."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from producer.bulk import Bulk, LoadReport, format_of, load_spec
from producer.cli.output import table
from producer.client import Client
from shared.errors import ClientSideError, SrdbError
from shared.load.spec import Source

# What the old loader guessed from text (kept for the bench's sqlite3 baseline): integers and reals.
_NUMBER = re.compile(r"([-+]?\d{1,19})|[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?", re.ASCII)


def typed(value: str) -> Any:
    """CSV text as sqlite3 users usually pass it: integers and reals as numbers, an empty field NULL."""
    if value == "":
        return None
    number = _NUMBER.fullmatch(value)
    if number is None:
        return value
    if number.group(1) and -(2**63) <= int(value) < 2**63:
        return int(value)
    return float(value)


def options(args: argparse.Namespace) -> dict[str, Any]:
    given = {"delimiter": args.delimiter, "quote": args.quote, "encoding": args.encoding, "header": args.header,
             "null_string": args.null_string, "schema": args.schema, "types": args.types,
             "if_exists": args.if_exists, "max_errors": args.max_errors}
    if args.input_format == "tsv" and args.delimiter is None:
        given["delimiter"] = "\t"
    return given


def run_load(client: Client, args: argparse.Namespace, job_id: str) -> tuple[LoadReport | None, str]:
    """The load (or its dry run); the report, and the lines to print for people."""
    if args.dry_run:
        return None, dry_run(client, args)
    local = not args.source.startswith("s3://") and args.source != "-"
    path = Path(args.source).expanduser()
    if local and (not path.exists() or path.is_dir()):
        raise ClientSideError(f"no such file: {args.source}")
    size = path.stat().st_size if local and path.is_file() else None
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"stage {args.table}", leave=False,
               disable=args.no_progress or not sys.stderr.isatty())
    try:
        report = client.load(args.db, args.table, args.source, timeout=args.timeout, job_timeout=args.job_timeout,
                             create=not args.no_create, input_format=args.input_format, progress=bar.update,
                             job_id=job_id, label=args.label, **options(args))
    finally:
        bar.close()
    lines = [f"loaded {report.rows:,} rows into {args.db}.{args.table}"
             f"{f' ({report.rejected:,} rejected)' if report.rejected else ''}: {report.bytes / 1e6:,.1f} MB in "
             f"{report.seconds:.1f}s, {report.rows_per_second:,.0f} rows/s, job {report.job_id}, "
             f"snapshot v{report.version}"]
    if report.reject_key:
        if args.reject_file:
            Bulk(client.s3, client.settings.jobs_bucket).fetch(report.reject_key, args.reject_file)
            lines.append(f"rejected rows are in {args.reject_file}")
        else:
            lines.append(f"rejected rows are in s3://{client.settings.jobs_bucket}/{report.reject_key}")
    return report, "\n".join(lines)


def dry_run(client: Client, args: argparse.Namespace) -> str:
    bulk = Bulk(client.s3, client.settings.bucket)
    if args.source.startswith("s3://"):
        sources = bulk.sources(args.source, "dry-run")
        opener = None
    else:
        name = "stdin" if args.source in ("-", "/dev/stdin") else args.source
        if name != "stdin" and (not Path(args.source).expanduser().exists() or Path(args.source).is_dir()):
            raise ClientSideError(f"no such file: {args.source}")
        sources = [Source("local", name, name)]

        def opener(source: Source) -> IO[bytes]:
            return sys.stdin.buffer if source.name == "stdin" else open(Path(source.name).expanduser(), "rb")

    spec = load_spec(args.table, sources, input_format=args.input_format or format_of(sources[0].name),
                     **options(args))
    columns, types, first = bulk.preview(spec, open_source=opener)
    definition = ", ".join(f'"{c}" {t}' for c, t in zip(columns, types, strict=True))
    shown = table(columns, [[None if v is None else v for v in row] for row in first]) if columns else ""
    made = f"CREATE TABLE \"{args.table}\" ({definition});"
    existing = _existing_table(client, args.db, args.table)
    if existing is None:
        plan = f"{made}\n-- a new table: the load creates it"
    elif (args.if_exists or "append") == "append":
        plan = f"{existing};\n-- the table exists: the rows are appended to it"
    elif args.if_exists == "replace":
        plan = f"{made}\n-- the table exists: the load replaces it with this one, atomically"
    else:
        plan = f"{existing};\n-- the table exists: the load would fail (--if-exists fail)"
    return f"{plan}\n{shown}\n(dry run: nothing was loaded)"


def _existing_table(client: Client, database: str, name: str) -> str | None:
    """The CREATE statement of ``name`` in ``database``; None when either does not exist yet."""
    try:
        result = client.query(database, "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", [name])
    except SrdbError:
        return None
    rows = list(client.store.iter_rows(result))
    return str(rows[0][0]) if rows else None


def load_csv(client: Client, database: str, table: str, path: Path, *, progress: bool = True,
             timeout: float = 3600.0, job_timeout: float | None = None) -> LoadReport:
    """A CSV file into ``table`` through the COPY path (for the demo, the shell's ``.import`` and the bench)."""
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"load {table}", disable=not progress,
               leave=False)
    with contextlib.closing(bar):
        return client.load(database, table, str(path), timeout=timeout, job_timeout=job_timeout,
                           progress=bar.update)
