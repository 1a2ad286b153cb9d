"""Commands on databases and their data: databases, history, restore, drop, load, export."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from producer.cli.args import (
    Subparsers,
    UsageError,
    as_of_arg,
    bounded,
    client,
    db_arg,
    job_timeout_arg,
    label_arg,
    output_args,
    parse_param,
    wait_timeout_arg,
)
from producer.cli.printing import interrupted, print_record, print_records
from shared.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from shared.snapshot.manifest import Manifest


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("history", parents=[common], help="list a database's retained snapshots, newest first")
    db_arg(p, "database name")
    p.add_argument("--limit", type=bounded(int, 1), default=20, help="at most this many versions (default 20)")
    output_args(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("restore", parents=[common], help="make an old snapshot current again, as a new version")
    db_arg(p, "database name")
    p.add_argument("--to", type=int, required=True, metavar="VERSION", help="the version to make current again")
    output_args(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("pull", parents=[common],
                       help="write a database (or an old version of it) to a plain SQLite file (for sqlite3, a backup)")
    p.add_argument("database", metavar="DATABASE", help="the database to write out")
    p.add_argument("file", metavar="FILE", help="the SQLite file to write (replaced once complete)")
    as_of_arg(p, "write out")
    output_args(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("fork", parents=[common],
                       help="make a new database from another's current (or an old) version, copying nothing")
    p.add_argument("source", metavar="SOURCE", help="the database to fork")
    p.add_argument("new", metavar="NEW", help="the new database")
    as_of_arg(p, "fork")
    output_args(p)
    p.set_defaults(func=cmd_fork)

    p = sub.add_parser("push", parents=[common],
                       help="make a SQLite file a database, or the next version of one (a commit like any other)")
    p.add_argument("file", metavar="FILE", help="the SQLite file to push (copied consistently, even while in use)")
    p.add_argument("database", metavar="DATABASE", help="the database it becomes")
    label_arg(p)
    output_args(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("load", parents=[common], help="COPY a file (CSV, TSV, JSON Lines, gzip; local, stdin or S3) "
                                                      "into a table: all rows or none")
    _load_arguments(p)
    job_timeout_arg(p)
    label_arg(p)
    output_args(p)
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("export", parents=[common], help="write a query's whole result as one file (CSV, JSON "
                                                        "Lines or Parquet), locally or to s3://")
    db_arg(p, "database name")
    p.add_argument("sql", help="the query whose rows are written")
    p.add_argument("dest", metavar="DEST",
                   help="a path or s3://bucket/key (.csv, .jsonl, .parquet; .gz to compress CSV or JSON Lines)")
    p.add_argument("--param", action="append", default=[], type=parse_param, metavar="VALUE",
                   help="a ? parameter, repeatable (JSON literal, else text)")
    p.add_argument("--null-string", default="", metavar="TEXT",
                   help="CSV: how NULL is written, unquoted (default: the empty field; an empty string is "
                        'written "" so the two never meet, as load and PostgreSQL\'s COPY read them)')
    p.add_argument("--header", dest="header", action="store_true", default=True,
                   help="CSV: the column names first (the default)")
    p.add_argument("--no-header", dest="header", action="store_false", help="CSV: rows only")
    p.add_argument("--delimiter", default=",", help="CSV: the field separator (default ,)")
    p.add_argument("--quote", default='"', help='CSV: the quote character (default ")')
    p.add_argument("--output-format", choices=("csv", "jsonl", "parquet"), default=None,
                   help="the file's format (default: from DEST's name; a name without an extension is csv)")
    as_of_arg(p)
    wait_timeout_arg(p)
    output_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("databases", parents=[common], help="list the databases: name, size, version, last write")
    output_args(p)
    p.set_defaults(func=cmd_databases)

    p = sub.add_parser("drop", parents=[common], help="delete a database and its whole history")
    p.add_argument("--db", required=True, help="database name (exit 3 when there is none; never a default)")
    p.add_argument("--yes", action="store_true", help="do not ask (scripts); without it a terminal asks")
    output_args(p)
    p.set_defaults(func=cmd_drop)


def _load_arguments(p: argparse.ArgumentParser) -> None:
    db_arg(p, "database name (made by the load if new, unless --no-create)")
    p.add_argument("--table", required=True, help="the table the rows go into (made if new: see --schema, --types)")
    p.add_argument("source", metavar="SOURCE", help="a local file, - for stdin, s3://bucket/key, or s3://bucket/prefix/")
    p.add_argument("--input-format", choices=("csv", "tsv", "jsonl", "parquet"), default=None,
                   help="default: from the name (.csv .tsv .jsonl .ndjson, each perhaps .gz; .parquet), else csv")
    p.add_argument("--delimiter", default=None, help="CSV field separator (default , and tab for TSV)")
    p.add_argument("--quote", default=None, help='CSV quote character (default ")')
    p.add_argument("--encoding", default=None, help="utf-8 (default; a BOM is dropped), latin-1, cp1252, …")
    p.add_argument("--header", dest="header", action="store_true", default=None,
                   help="the first line names the columns (the default)")
    p.add_argument("--no-header", dest="header", action="store_false", help="every line is data: c1, c2, …")
    p.add_argument("--null-string", default=None, help="the field that means NULL (default: the empty field)")
    p.add_argument("--schema", default=None, metavar="COLUMNS",
                   help='a new table\'s columns, as CREATE TABLE takes them: "id INTEGER PRIMARY KEY, zip TEXT"')
    p.add_argument("--types", choices=("infer", "text"), default=None,
                   help="a new table's column types: inferred so no value changes (default), or all TEXT")
    p.add_argument("--if-exists", choices=("append", "replace", "fail"), default=None,
                   help="when the table exists: add the rows (default), replace it atomically, or fail")
    p.add_argument("--max-errors", type=int, default=None, metavar="N",
                   help="set up to N bad rows aside (see --reject-file) instead of failing at the first")
    p.add_argument("--reject-file", default=None, metavar="PATH",
                   help="where the rejected rows go (file, line, column, reason): a path or s3://")
    p.add_argument("--dry-run", action="store_true", help="print the inferred schema and the first rows; load nothing")
    p.add_argument("--no-create", action="store_true", help="fail if the database does not exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while the file uploads")
    wait_timeout_arg(p)
    # What the row-by-message loader took: accepted, no longer needed.
    p.add_argument("--rows-per-job", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=None, help=argparse.SUPPRESS)


def cmd_history(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    records = []
    srdb = client(args)
    for m in srdb.history(args.db, args.limit):
        shown = m.jobs if args.format == "json" else " ".join(m.jobs[:2]) + (" …" if len(m.jobs) > 2 else "")
        sql: Any = m.labels if args.format == "json" else _what(m)
        records.append({"version": m.version, "size": m.file_size, "restored_from": m.restored_from,
                        "time": datetime.fromtimestamp(m.created_at, UTC).isoformat(timespec="milliseconds"),
                        "jobs": len(m.jobs), "sql": sql, "job_ids": shown})
    print_records(records, ["version", "time", "size", "jobs", "restored_from", "sql", "job_ids"], args.format,
                  f"database {args.db} has no snapshots")
    if args.format == "table":
        oldest = srdb.oldest(args.db)
        when = datetime.fromtimestamp(oldest.created_at, UTC).isoformat(timespec="milliseconds")
        print(f"retained from version {oldest.version} ({when}): older versions are collected once older "
              "than the retention window (SRDB_RETENTION)", file=sys.stderr)
    return EXIT_OK


def _what(manifest: Manifest) -> str:
    """A version's jobs in a table cell: the first one's SQL (or label), and how many more."""
    if manifest.restored_from is not None and not manifest.labels:
        return f"restore of version {manifest.restored_from}"
    if not manifest.labels:
        return ""
    more = len(manifest.labels) - 1
    return manifest.labels[0] + (f" (+{more} more job{'s' if more > 1 else ''})" if more else "")


def cmd_pull(args: argparse.Namespace) -> int:
    started = time.monotonic()
    pulled = client(args).pull(args.database, args.file, as_of=args.as_of)
    seconds = time.monotonic() - started
    print_record({"database": args.database, "version": pulled.version, "file": args.file, "bytes": pulled.file_size,
                  "seconds": round(seconds, 3)}, args.format,
                 f"wrote version {pulled.version} of {args.database} to {args.file} ({pulled.file_size:,} bytes) "
                 f"in {seconds:.1f}s")
    return EXIT_OK


def cmd_fork(args: argparse.Namespace) -> int:
    made = client(args).fork(args.source, args.new, as_of=args.as_of)
    forked = made.forked_from or {}
    print_record({"database": args.new, "source": args.source, "version": forked.get("version"),
                  "bytes": made.file_size}, args.format,
                 f"database {args.new} is a fork of {args.source} at version {forked.get('version')} "
                 f"({made.file_size:,} bytes, nothing copied)")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    pushed = client(args).push(args.file, args.database, label=args.label)
    print_record({"database": args.database, "version": pushed.version, "bytes": pushed.file_size}, args.format,
                 f"database {args.database} is now version {pushed.version}, from {args.file} "
                 f"({pushed.file_size:,} bytes)")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    restored = client(args).restore(args.db, args.to)
    print_record({"database": args.db, "version": restored.version, "restored_from": restored.restored_from},
                 args.format, f"database {args.db} is now version {restored.version}, "
                              f"a copy of version {restored.restored_from}")
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    from producer.cli.load import run_load
    from producer.cli.waiting import cancel_all
    from shared.names import new_job_id

    srdb = client(args)
    job_id = new_job_id()  # known before anything is sent, so Ctrl-C can cancel it
    try:
        report, said = run_load(srdb, args, job_id)
    except KeyboardInterrupt:
        return interrupted(cancel_all(srdb, [job_id]))
    if report is None or args.format == "table":
        print(said)
    else:
        print_record({"database": args.db, "table": args.table, **report.to_json()}, args.format, said)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from producer.bulk import CsvStyle

    style = CsvStyle(args.delimiter, args.quote, args.header, args.null_string)
    written = client(args).export(args.db, args.sql, args.dest, args.param, fmt=args.output_format,
                                  timeout=args.timeout, as_of=args.as_of, csv=style)
    seconds = time.monotonic() - started
    print_record({"database": args.db, "dest": args.dest, "bytes": written, "seconds": round(seconds, 3)},
                 args.format, f"wrote {written:,} bytes to {args.dest} in {seconds:.1f}s")
    return EXIT_OK


def cmd_databases(args: argparse.Namespace) -> int:
    from producer.cli.output import human_size, iso_time

    shown = human_size if args.format == "table" else (lambda size: size)
    records = [{"database": d.name, "size": shown(d.size), "version": d.version,
                "last_write": iso_time(d.last_write), "forked_from": d.forked_from} for d in client(args).databases()]
    print_records(records, ["database", "size", "version", "last_write", "forked_from"], args.format,
                  "no databases yet")
    return EXIT_OK


def cmd_drop(args: argparse.Namespace) -> int:
    from shared.names import check_database

    check_database(args.db)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"dropping {args.db} deletes it and its whole history: add --yes to confirm")
        answer = input(f"drop database {args.db} and its whole history? type its name to confirm: ")
        if answer.strip() != args.db:
            print("not dropped", file=sys.stderr)
            return EXIT_FAILED
    deleted = client(args).drop(args.db)
    print_record({"database": args.db, "dropped": True, "objects": deleted}, args.format,
                 f"dropped database {args.db} ({deleted} objects)")
    return EXIT_OK
