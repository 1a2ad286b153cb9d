"""The ``srdb`` command.

Exit codes: 0 success; 1 the job FAILED (its error type and message on stderr); 2 usage error;
3 job not found; 4 timed out waiting; 5 srdb could not be reached (settings, network, AWS).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from shared.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    ClientSideError,
    JobFailed,
    JobNotFound,
    SrdbError,
    describe,
)
from shared.job.result import JobResult, JobState


class UsageError(ClientSideError):
    """The command line is wrong: its usage is printed too."""


def parse_param(text: str) -> Any:
    """``--param`` values: JSON numbers, null and quoted strings keep their type, as do a tagged blob or
    non-finite real (``{"$real": "NaN"}``); anything else is text, ``NaN`` and ``Infinity`` included (JSON
    has no such numbers)."""
    try:
        value = json.loads(text, parse_constant=lambda name: text)
    except ValueError:
        return text
    if isinstance(value, dict) and set(value) in ({"$blob"}, {"$real"}):
        return value
    return value if isinstance(value, (int, float, str)) or value is None else text


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``2h`` or ``7d``, in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90, 30s, 15m, 2h or 7d") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return seconds


def parse_as_of(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _bounded(kind: Callable[[str], Any], low: float, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type that refuses values outside [low, high] with a usage error, not a traceback."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number {bound}")
        return value

    parse.__name__ = kind.__name__
    return parse


def aws_args(p: argparse.ArgumentParser, default: Any) -> None:
    """The AWS CLI's options, on every command: they beat SRDB_* variables and .srdb/local.env."""
    p.add_argument("--profile", default=default, help="a named profile of ~/.aws/config (SRDB_PROFILE)")
    p.add_argument("--region", default=default, help="the AWS region (SRDB_REGION, AWS_REGION)")
    p.add_argument("--endpoint-url", default=default, metavar="URL",
                   help="an S3/SQS/EC2 endpoint other than AWS's, e.g. moto (SRDB_ENDPOINT_URL)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives (``Settings.load(**overrides(args))``)."""
    return {name: getattr(args, name, None) for name in ("profile", "region", "endpoint_url")
            if getattr(args, name, None)}


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    from producer.cli.load import add_arguments

    add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srdb", description="srdb: SQLite in S3, SQL jobs over SQS.")
    aws_args(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    aws_args(common, argparse.SUPPRESS)  # after the command too; given before it, a value is not overwritten

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    p = add("local", help="run the whole stack on this machine until Ctrl-C")
    p.add_argument("--port", type=_bounded(int, 0, 65535), default=0, help="moto server port (default: a free one)")
    p.add_argument("--workers", type=_bounded(int, 0, 64), default=2, help="worker processes (0: the stack alone)")
    p.add_argument("--visibility-timeout", type=_bounded(int, 1, 43200), default=60,
                   help="job queue visibility timeout, seconds")
    p.add_argument("--lock-ttl", type=_bounded(float, 1), default=None,
                   help="seconds before the reaper frees a dead worker's lock (default: the visibility timeout, at "
                        "most 60; never more than it, or a redelivered job would wait out a dead worker's lock)")
    p.add_argument("--ephemeral", action="store_true",
                   help="keep nothing: by default the bucket (databases, history, results) is kept in .srdb/data "
                        "and loaded again at the next start")

    p = add("worker", help="poll the job queue and run batches, as the Lambda does")
    p.add_argument("--batch-size", type=_bounded(int, 1, 10_000), default=10,
                   help="messages per batch (Lambda's BatchSize)")
    p.add_argument("--batching-window", type=_bounded(float, 0, 300), default=0.0,
                   help="seconds to gather a batch (Lambda's MaximumBatchingWindowInSeconds)")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                   help="stop when process PID, which started this one, ends (srdb local's workers)")
    p = add("reaper", help="free stale locks and collect garbage (old versions, unused chunks) on a schedule")
    p.add_argument("--once", action="store_true", help="run once, print the report and exit")
    p.add_argument("--interval", type=_bounded(float, 0.1), default=60.0, help="seconds between runs")

    def job_timeout_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--job-timeout", type=_bounded(float, 0.001), default=None, metavar="SECONDS",
                       help="the job's own time budget in the worker (default SRDB_JOB_TIMEOUT, 30; at most "
                            "SRDB_MAX_JOB_TIMEOUT, 100): past it the job is interrupted and FAILED Timeout")

    def wait_timeout_arg(p: argparse.ArgumentParser, default: float | None) -> None:
        shown = "no limit" if default is None else f"{default:g}"
        p.add_argument("--timeout", type=_bounded(float, 0), default=default, metavar="SECONDS",
                       help=f"how long this command waits for the result (default {shown}); only the wait: "
                            "the job runs on, see --job-timeout")

    def job_args(p: argparse.ArgumentParser, file_help: str = "read the SQL from FILE (- for stdin)") -> None:
        p.add_argument("--db", required=True, help="database name")
        p.add_argument("sql", nargs="?", help="the SQL; several statements run as one job (one transaction); "
                                              "- reads it from stdin")
        p.add_argument("-f", "--file", type=Path, metavar="FILE", help=file_help)
        p.add_argument("--param", action="append", default=[], type=parse_param, metavar="VALUE",
                       help="a ? parameter, repeatable (JSON literal, else text)")
        p.add_argument("--read-only", action="store_true", help="fail if the statement would write")
        p.add_argument("--no-create", action="store_true",
                       help="fail (DatabaseNotFound) instead of creating a database that does not exist")
        job_timeout_arg(p)

    def output_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                       help="table for people, json or csv for scripts (errors too, as JSON on stdout)")
        p.add_argument("--no-pager", action="store_true",
                       help="never page long output on a terminal (default: $PAGER, else less -FRX)")

    p = add("submit", help="queue a job and print its id; with --file, a job per statement of the file")
    job_args(p, file_help="submit a job per statement (or per line, --per line) of FILE (- for stdin), ten to "
                          "an SQS request, and print every id")
    p.add_argument("--per", choices=("statement", "line"), default="statement",
                   help="with --file: a job per statement (default) or per non-empty line")
    p.add_argument("--job-id", help="your own id (an idempotency token)")
    output_args(p)
    p = add("query", help="submit, wait, print the result (Ctrl-C cancels the job)")
    job_args(p)
    output_args(p)
    wait_timeout_arg(p, 60.0)
    p.add_argument("--as-of", type=parse_as_of, metavar="VERSION|TIME",
                   help="read the snapshot of that version, or the one current at that ISO 8601 time")
    p = add("wait", help="wait for many jobs, with a progress bar; print each one's state")
    p.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="job ids, or - to read them from stdin")
    wait_timeout_arg(p, 600.0)
    p.add_argument("--no-progress", action="store_true")
    output_args(p)
    p = add("shell", help="an SQL shell on one database, as sqlite3's (scripts too: stdin, -f, -c)")
    p.add_argument("--db", required=True)
    p.add_argument("-f", "--file", type=Path, metavar="FILE", help="run FILE (statements and dot commands), then exit")
    p.add_argument("-c", "--command", dest="sql", metavar="SQL", help="run SQL (or a dot command), then exit")
    wait_timeout_arg(p, None)
    job_timeout_arg(p)
    p.add_argument("--history-file", type=Path, default=Path("~/.srdb_history"))
    p = add("history", help="list a database's retained snapshots, newest first")
    p.add_argument("--db", required=True)
    p.add_argument("--limit", type=int, default=20)
    output_args(p)
    p = add("restore", help="make an old snapshot current again, as a new version")
    p.add_argument("--db", required=True)
    p.add_argument("--to", type=int, required=True, metavar="VERSION")
    output_args(p)
    p = add("status", help="print a job's state")
    p.add_argument("job_id")
    output_args(p)
    p = add("result", help="print a job's result")
    p.add_argument("job_id")
    p.add_argument("--wait", action="store_true", help="wait for the job to finish")
    wait_timeout_arg(p, 60.0)
    output_args(p)
    p = add("cancel", help="cancel a job that is QUEUED or RUNNING; print what became of it")
    p.add_argument("job_id")
    output_args(p)
    p = add("load", help="COPY a file (CSV, TSV, JSON Lines, gzip; local, stdin or S3) into a table: all rows or none")
    add_load_arguments(p)
    job_timeout_arg(p)
    output_args(p)
    p = add("export", help="write a query's whole result as one file (CSV or JSON Lines), locally or to s3://")
    p.add_argument("--db", required=True)
    p.add_argument("sql")
    p.add_argument("dest", metavar="DEST", help="a path or s3://bucket/key (.csv, .jsonl; .gz to compress)")
    p.add_argument("--param", action="append", default=[], type=parse_param, metavar="VALUE")
    p.add_argument("--output-format", choices=("csv", "jsonl", "parquet"), default=None,
                   help="the file's format (default: from DEST's name; a name without an extension is csv)")
    p.add_argument("--as-of", type=parse_as_of, metavar="VERSION|TIME")
    wait_timeout_arg(p, 600.0)
    output_args(p)
    p = add("dlq", help="the dead-letter queue: list what is there, or send it back")
    p.add_argument("action", choices=("list", "redrive"))
    output_args(p)
    p = add("databases", help="list the databases: name, size, version, last write")
    output_args(p)
    p = add("drop", help="delete a database and its whole history")
    p.add_argument("--db", required=True)
    p.add_argument("--yes", action="store_true", help="do not ask (scripts); without it a terminal asks")
    output_args(p)
    p = add("grant", help="give an access group read or write access to databases, or a queue or sender")
    p.add_argument("--group", required=True, help="the access group (made if new)")
    p.add_argument("--db", default=None, metavar="PATTERN", help="a database name or glob, e.g. 'sales_*' or '*'")
    p.add_argument("--access", choices=("read", "write"), default="read", help="write includes read (default read)")
    p.add_argument("--queue", default=None, metavar="URL_OR_ARN", help="a job queue whose messages are this group's")
    p.add_argument("--sender", default=None, metavar="PATTERN",
                   help="only messages whose SQS SenderId matches (an IAM role's is AROA…:<session>)")
    output_args(p)
    p = add("revoke", help="take an access group's grant on databases away, or the whole group")
    p.add_argument("--group", required=True)
    p.add_argument("--db", default=None, metavar="PATTERN", help="the grant to take away; without it, the group")
    output_args(p)
    p = add("grants", help="list the access groups: queues, senders, databases and access")
    output_args(p)
    p = add("jobs", help="list recent jobs with their state and timings, newest first")
    p.add_argument("--since", type=parse_duration, default=3600.0, metavar="DURATION",
                   help="how far back, e.g. 30m, 2h, 1d (default 1h)")
    p.add_argument("--limit", type=_bounded(int, 1), default=20)
    p.add_argument("--db", default=None, help="only this database's jobs")
    output_args(p)
    p = add("config", help="print the settings in effect and where each comes from")
    output_args(p)
    add("demo", help="start a local stack, load, query, print, stop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    command: Callable[[argparse.Namespace], int] = COMMANDS[args.command]
    as_json = getattr(args, "format", None) == "json"
    try:
        return command(args)
    except JobFailed as exc:
        if as_json and not exc.shown:
            _print_error_json(exc.error, exc.exit_code, exc.job_id)
        return _fail(exc.exit_code, describe(exc.error))
    except SrdbError as exc:  # each error knows its exit code
        if isinstance(exc, UsageError):
            parser.print_usage(sys.stderr)
        hint = _unreachable_hint(exc)
        if as_json:
            _print_error_json({"type": exc.type, "message": str(exc) + hint}, exc.exit_code)
        return _fail(exc.exit_code, f"srdb: {exc.type}: {exc}" + hint)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _unreachable_hint(exc: SrdbError) -> str:
    if exc.exit_code != EXIT_UNAVAILABLE:
        return ""
    from producer.local.stack import stale_local_env

    advice = stale_local_env(Path.cwd())
    return f"\nsrdb: {advice}" if advice else ""


def _print_error_json(error: dict[str, Any], code: int, job_id: str | None = None) -> None:
    """In --format json, an error is a JSON document on stdout too, so a pipe into jq never breaks."""
    doc: dict[str, Any] = {"error": error, "exit_code": code}
    if job_id:
        doc["job_id"] = job_id
    print(json.dumps(doc, ensure_ascii=False))


def _fail(code: int, message: str) -> int:
    print(message, file=sys.stderr)
    return code


def _client(args: argparse.Namespace) -> Any:
    from producer.client import Client
    from shared.clients import Clients
    from shared.settings import Settings

    settings = Settings.load(**overrides(args))
    settings.require("bucket", "queue_url")
    clients = Clients.build(settings, fail_fast=True)  # an endpoint that does not answer: exit 5 in seconds
    return Client(settings, s3=clients.s3, sqs=clients.sqs)


def _print_result(client: Any, result: JobResult, fmt: str, no_pager: bool = False) -> int:
    from producer.cli.output import render

    if result.state is JobState.NOT_FOUND:
        raise JobNotFound(f"job {result.job_id} was never submitted")
    rows = client.store.iter_rows(result) if result.state is JobState.SUCCEEDED else []
    _page(render(result, rows, fmt), no_pager)
    if result.created:
        print(f"created database {result.database}", file=sys.stderr)
    if result.state in (JobState.FAILED, JobState.CANCELLED):
        failed = JobFailed(result.job_id, result.error or {"type": "Cancelled", "message": "the job was cancelled"})
        failed.shown = True
        raise failed
    return EXIT_OK


def _page(text: str, no_pager: bool) -> None:
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


def _print_record(record: dict[str, Any], fmt: str, text: str) -> None:
    """One small record: JSON or CSV for scripts, ``text`` for people."""
    from producer.cli.output import csv_text

    if fmt == "json":
        print(json.dumps(record, ensure_ascii=False))
    elif fmt == "csv":
        print(csv_text(list(record), [list(record.values())]))
    else:
        print(text)


def _print_records(records: list[dict[str, Any]], columns: list[str], fmt: str, empty: str) -> None:
    from producer.cli.output import csv_text, table

    rows = [[r.get(c) for c in columns] for r in records]
    if fmt == "json":
        print(json.dumps(records, ensure_ascii=False))
    elif fmt == "csv":
        print(csv_text(columns, rows))
    else:
        print(table(columns, rows) if records else empty)


def _job(args: argparse.Namespace, *, job_id: str | None = None) -> Any:
    """The job a ``query`` or ``submit`` command line names: one statement, or a script run as one job."""
    from producer.cli.sqltext import read_sql, statements_of
    from shared.job.model import Job

    text = read_sql(args.sql, args.file)
    statements = statements_of(text)
    common = {"job_id": job_id or getattr(args, "job_id", None), "timeout": args.job_timeout,
              "create": not args.no_create}
    if len(statements) > 1:
        if args.param or getattr(args, "as_of", None) is not None or args.read_only:
            raise UsageError("--param, --as-of and --read-only take one statement; this SQL holds "
                             f"{len(statements)}")
        return Job.create(args.db, statements=[(s, None) for s in statements], **common)
    as_of = getattr(args, "as_of", None)
    return Job.create(args.db, statements[0] if statements else text, args.param,
                      read_only=args.read_only or as_of is not None, as_of=as_of, **common)


def cmd_submit(args: argparse.Namespace) -> int:
    if args.file is not None:
        return _submit_many(args)
    job_id = _client(args).submit_job(_job(args))
    _print_record({"job_id": job_id}, args.format, job_id)
    return EXIT_OK


def _submit_many(args: argparse.Namespace) -> int:
    from producer.cli.sqltext import read_sql, statements_of
    from shared.job.model import Job

    if args.job_id or args.param:
        raise UsageError("submit --file makes a job per statement: --job-id and --param do not apply")
    text = read_sql(args.sql, args.file)
    sqls = statements_of(text) if args.per == "statement" else [s for s in text.splitlines() if s.strip()]
    jobs = [Job.create(args.db, sql, read_only=args.read_only, timeout=args.job_timeout,
                       create=not args.no_create) for sql in sqls]
    ids = _client(args).submit_jobs(jobs)
    if args.format == "table":  # an id a line, as submit prints one: `srdb wait -` reads them back
        print("\n".join(ids))
    else:
        _print_records([{"job_id": j} for j in ids], ["job_id"], args.format, "")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from producer.cli.waiting import Speaker, cancel_all
    from shared.names import new_job_id

    client = _client(args)
    job_id = new_job_id()  # known before it is sent, so Ctrl-C at any point can cancel it
    job = _job(args, job_id=job_id)
    speaker = Speaker(quiet=True)
    try:
        client.submit_job(job)
        result = client.wait(job_id, args.timeout, on_slow=speaker)
    except KeyboardInterrupt:
        speaker.clear()
        return _interrupted(cancel_all(client, [job_id]))
    finally:
        speaker.clear()
    return _print_result(client, result, args.format, args.no_pager)


def _interrupted(lines: list[str]) -> int:
    print("\n".join(["interrupted", *lines]), file=sys.stderr)
    return EXIT_INTERRUPTED


def cmd_wait(args: argparse.Namespace) -> int:
    from producer.cli.waiting import wait_all

    ids = [line.strip() for line in sys.stdin if line.strip()] if args.job_ids == ["-"] else args.job_ids
    if not ids:
        raise UsageError("no job ids to wait for")
    client = _client(args)
    try:
        results = wait_all(client, ids, timeout=args.timeout, progress=not args.no_progress)
    except KeyboardInterrupt:
        from producer.cli.waiting import cancel_all

        return _interrupted(cancel_all(client, ids))
    records = [{"job_id": r.job_id, "state": r.state.value, "rowcount": r.rowcount,
                "error": describe(r.error) if r.error else None} for r in results]
    _print_records(records, ["job_id", "state", "rowcount", "error"], args.format, "")
    states = {r.state for r in results}
    if JobState.NOT_FOUND in states:
        return EXIT_NOT_FOUND
    if not all(s.final for s in states):
        return EXIT_TIMEOUT
    return EXIT_OK if states <= {JobState.SUCCEEDED} else EXIT_FAILED


def cmd_shell(args: argparse.Namespace) -> int:
    from producer.cli.shell import Shell
    from shared.names import check_database

    check_database(args.db)
    script = args.file is not None or args.sql is not None or not sys.stdin.isatty()
    shell = Shell(_client(args), args.db, history_file=args.history_file, timeout=args.timeout,
                  job_timeout=args.job_timeout, interactive=not script)
    if args.sql is not None:
        return shell.run_lines(args.sql.splitlines())
    if args.file is not None and str(args.file) != "-":
        try:
            with open(args.file.expanduser(), encoding="utf-8-sig") as lines:
                return shell.run_lines(lines)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    return shell.run_lines(sys.stdin) if script else shell.run()


def cmd_history(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    records = []
    client = _client(args)
    for m in client.history(args.db, args.limit):
        shown = m.jobs if args.format == "json" else " ".join(m.jobs[:2]) + (" …" if len(m.jobs) > 2 else "")
        records.append({"version": m.version, "size": m.file_size, "restored_from": m.restored_from,
                        "time": datetime.fromtimestamp(m.created_at, UTC).isoformat(timespec="milliseconds"),
                        "jobs": len(m.jobs), "job_ids": shown})
    _print_records(records, ["version", "time", "size", "jobs", "restored_from", "job_ids"], args.format,
                   f"database {args.db} has no snapshots")
    if args.format == "table":
        oldest = client.oldest(args.db)
        when = datetime.fromtimestamp(oldest.created_at, UTC).isoformat(timespec="milliseconds")
        print(f"retained from version {oldest.version} ({when}): older versions are collected once older "
              "than the retention window (SRDB_RETENTION)", file=sys.stderr)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    restored = _client(args).restore(args.db, args.to)
    _print_record({"database": args.db, "version": restored.version, "restored_from": restored.restored_from},
                  args.format, f"database {args.db} is now version {restored.version}, "
                               f"a copy of version {restored.restored_from}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    result = _client(args).status(args.job_id)
    error: Any = result.error
    if error and args.format == "csv":
        error = describe(error)
    since = f" since {result.started_at}" if result.state is JobState.RUNNING else ""
    _print_record({"job_id": result.job_id, "state": result.state.value, "started_at": result.started_at,
                   "error": error}, args.format, result.state.value + since)
    return EXIT_NOT_FOUND if result.state is JobState.NOT_FOUND else EXIT_OK


def cmd_result(args: argparse.Namespace) -> int:
    client = _client(args)
    result = client.wait(args.job_id, args.timeout) if args.wait else client.status(args.job_id)
    if not result.state.final and result.state is not JobState.NOT_FOUND:
        _print_record({"job_id": result.job_id, "state": result.state.value, "started_at": result.started_at},
                      args.format, result.state.value)
        return EXIT_OK
    return _print_result(client, result, args.format, args.no_pager)


def cmd_cancel(args: argparse.Namespace) -> int:
    state = _client(args).cancel(args.job_id)
    said = state.value if state in (JobState.CANCELLED, JobState.NOT_FOUND) else (
        f"{state.value}: the job had already finished; nothing was cancelled")
    _print_record({"job_id": args.job_id, "state": state.value}, args.format, said)
    if state is JobState.NOT_FOUND:
        return EXIT_NOT_FOUND
    return EXIT_OK if state is JobState.CANCELLED else EXIT_FAILED


def cmd_load(args: argparse.Namespace) -> int:
    from producer.cli.load import run_load
    from shared.names import new_job_id

    client = _client(args)
    job_id = new_job_id()  # known before anything is sent, so Ctrl-C can cancel it
    try:
        report, said = run_load(client, args, job_id)
    except KeyboardInterrupt:
        from producer.cli.waiting import cancel_all

        return _interrupted(cancel_all(client, [job_id]))
    if report is None or args.format == "table":
        print(said)
    else:
        _print_record({"database": args.db, "table": args.table, **report.to_json()}, args.format, said)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    import time as clock

    started = clock.monotonic()
    written = _client(args).export(args.db, args.sql, args.dest, args.param, fmt=args.output_format,
                                   timeout=args.timeout, as_of=args.as_of)
    seconds = clock.monotonic() - started
    _print_record({"database": args.db, "dest": args.dest, "bytes": written, "seconds": round(seconds, 3)},
                  args.format, f"wrote {written:,} bytes to {args.dest} in {seconds:.1f}s")
    return EXIT_OK


def cmd_dlq(args: argparse.Namespace) -> int:
    from producer.cli.dlq import DeadLetters

    client = _client(args)
    client.settings.require("dlq_url")
    letters = DeadLetters(client.sqs, client.store, client.settings.queue_url, client.settings.dlq_url)
    if args.action == "redrive":
        sent = letters.redrive()
        if args.format == "csv":
            _print_records([{"job_id": j} for j in sent], ["job_id"], "csv", "")
        else:
            _print_record({"redriven": sent}, args.format, f"sent {len(sent)} job(s) back")
        return EXIT_OK
    _print_records([d.to_json() for d in letters.peek()], ["job_id", "database", "receive_count", "reason"],
                   args.format, "the dead-letter queue is empty")
    return EXIT_OK


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _stop_with_parent(stop: threading.Event, parent: int, every: float = 0.5, grace: float = 5.0) -> None:
    """End this process once its parent is gone (it was killed, even with SIGKILL: an orphan is adopted by
    another process, so its parent id changes). ``stop`` is set first; a worker still busy after ``grace``
    seconds (retrying an endpoint that died with its parent) exits anyway: the messages it held go back
    to the queue when their visibility timeout ends."""
    import os

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                logging.getLogger("srdb.worker").warning("the process that started this worker ended; stopping")
                stop.set()
                time.sleep(grace)
                os._exit(EXIT_UNAVAILABLE)
            if stop.wait(every):
                return

    threading.Thread(target=watch, name="srdb-parent-watch", daemon=True).start()


def cmd_local(args: argparse.Namespace) -> int:
    from producer.local.stack import LocalStack

    lock_ttl = args.lock_ttl if args.lock_ttl is not None else min(60.0, float(args.visibility_timeout))
    if lock_ttl > args.visibility_timeout:
        raise ClientSideError(f"--lock-ttl {lock_ttl:g} is longer than --visibility-timeout {args.visibility_timeout}: "
                              "a job redelivered after a worker died would find its lock still held, delivery after "
                              "delivery, until the dead-letter queue; give a lock TTL no longer than the timeout")
    stack = LocalStack(Path.cwd(), port=args.port, workers=args.workers,
                       visibility_timeout=args.visibility_timeout, lock_ttl=lock_ttl, ephemeral=args.ephemeral)
    stop = _stop_on_signals()
    stack.start()
    try:
        kept = "nothing kept (--ephemeral)" if args.ephemeral else f"data kept in {stack.data_folder}"
        print(f"srdb local ready at {stack.settings.endpoint_url} with {args.workers} worker(s); "
              f"settings in {stack.env_file}; {kept}", flush=True)
        stop.wait()
    finally:
        stack.stop()
    print("srdb local stopped", flush=True)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from producer.local.poller import Poller
    from shared.clients import Clients
    from shared.settings import Settings
    from worker.handler import serve, shutdown

    settings = Settings.load(**overrides(args))
    settings.require("bucket", "queue_url", "vpc_id")
    stop = _stop_on_signals()
    if args.parent_pid is not None:
        _stop_with_parent(stop, args.parent_pid)
    try:
        Poller(Clients.build(settings).sqs, settings.queue_url, serve, region=settings.region, stop=stop,
               batch_size=args.batch_size, window=args.batching_window).run()
    finally:
        shutdown()  # the locks it kept for a next batch
    return EXIT_OK


def cmd_reaper(args: argparse.Namespace) -> int:
    from reaper.handler import handle

    if args.once:
        print(json.dumps(handle({}, None)))
        return EXIT_OK
    stop = _stop_on_signals()
    while True:
        report = handle({}, None)
        gc = report.get("gc") or {}
        if report["freed"] or gc.get("versions_deleted") or gc.get("trash_deleted") or gc.get("missing"):
            print(json.dumps(report), flush=True)
        if stop.wait(args.interval):
            return EXIT_OK


def cmd_databases(args: argparse.Namespace) -> int:
    from producer.cli.output import human_size, iso_time

    records = [{"database": d.name, "size": d.size, "version": d.version, "last_write": iso_time(d.last_write)}
               for d in _client(args).databases()]
    if args.format == "table":
        for record in records:
            record["size"] = human_size(int(record["size"]))
    _print_records(records, ["database", "size", "version", "last_write"], args.format, "no databases yet")
    return EXIT_OK


def cmd_grant(args: argparse.Namespace) -> int:
    if args.db is None and args.queue is None and args.sender is None:
        raise UsageError("say what to grant: --db PATTERN (with --access), --queue, or --sender")
    _print_grants(_client(args).grant(args.group, database=args.db, access=args.access, queue=args.queue,
                                      sender=args.sender), args.format)
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    _print_grants(_client(args).revoke(args.group, args.db), args.format)
    return EXIT_OK


def cmd_grants(args: argparse.Namespace) -> int:
    _print_grants(_client(args).grants(), args.format)
    return EXIT_OK


def _print_grants(grants: Any, fmt: str) -> None:
    records = [{"group": name, "database": database, "access": access, "queues": " ".join(g.queues),
                "senders": " ".join(g.senders) or "any"}
               for name, g in sorted(grants.groups.items())
               for database, access in (sorted(g.databases.items()) or [("", "")])]
    _print_records(records, ["group", "database", "access", "queues", "senders"], fmt,
                   "no access groups: every queue may read and write every database")


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
    deleted = _client(args).drop(args.db)
    _print_record({"database": args.db, "dropped": True, "objects": deleted}, args.format,
                  f"dropped database {args.db} ({deleted} objects)")
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    import time as clock

    results = _client(args).jobs(since=clock.time() - args.since, limit=10_000 if args.db else args.limit)
    records = [{"job_id": r.job_id, "database": r.database, "state": r.state.value, "submitted_at": r.submitted_at,
                "run_ms": r.timings.get("run_ms"), "total_ms": r.timings.get("total_ms"),
                "error": (r.error or {}).get("type")}
               for r in results if args.db is None or r.database == args.db][:args.limit]
    _print_records(records, ["job_id", "database", "state", "submitted_at", "run_ms", "total_ms", "error"],
                   args.format, "no jobs in that time")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from shared.settings import ENV_PREFIX, Settings

    given = overrides(args)
    settings = Settings.load(**given)
    sources = Settings.sources(**given)
    records = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "aws_secret_access_key" and value:
            value = "****"
        records.append({"setting": f.name, "variable": ENV_PREFIX + f.name.upper(), "value": value,
                        "source": sources[f.name]})
    _print_records(records, ["setting", "value", "source"], args.format, "")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from producer.cli.demo import run_demo

    return int(run_demo())


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "export": cmd_export,
    "submit": cmd_submit, "query": cmd_query, "wait": cmd_wait, "shell": cmd_shell, "history": cmd_history,
    "restore": cmd_restore, "status": cmd_status, "result": cmd_result, "cancel": cmd_cancel,
    "load": cmd_load, "dlq": cmd_dlq, "local": cmd_local, "worker": cmd_worker, "reaper": cmd_reaper, "demo": cmd_demo,
    "grant": cmd_grant, "revoke": cmd_revoke, "grants": cmd_grants,
    "databases": cmd_databases, "drop": cmd_drop, "jobs": cmd_jobs, "config": cmd_config,
}


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
