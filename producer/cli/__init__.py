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
    """``--param`` values: JSON numbers, null and quoted strings keep their type; anything else is text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and set(value) == {"$blob"}:
        return value
    return value if isinstance(value, (int, float, str)) or value is None else text


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srdb", description="srdb: SQLite in S3, SQL jobs over SQS.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("local", help="run the whole stack on this machine until Ctrl-C")
    p.add_argument("--port", type=_bounded(int, 0, 65535), default=0, help="moto server port (default: a free one)")
    p.add_argument("--workers", type=_bounded(int, 0, 64), default=2, help="worker processes (0: the stack alone)")
    p.add_argument("--visibility-timeout", type=_bounded(int, 1, 43200), default=60,
                   help="job queue visibility timeout, seconds")
    p.add_argument("--lock-ttl", type=_bounded(float, 1), default=60.0, help="seconds before the reaper frees a lock")

    p = sub.add_parser("worker", help="poll the job queue and run batches, as the Lambda does")
    p.add_argument("--batch-size", type=_bounded(int, 1, 10_000), default=10,
                   help="messages per batch (Lambda's BatchSize)")
    p.add_argument("--batching-window", type=_bounded(float, 0, 300), default=0.0,
                   help="seconds to gather a batch (Lambda's MaximumBatchingWindowInSeconds)")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                   help="stop when process PID, which started this one, ends (srdb local's workers)")
    p = sub.add_parser("reaper", help="free stale locks on a schedule")
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

    def job_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", required=True, help="database name")
        p.add_argument("sql")
        p.add_argument("--param", action="append", default=[], type=parse_param, metavar="VALUE",
                       help="a ? parameter, repeatable (JSON literal, else text)")
        p.add_argument("--read-only", action="store_true", help="fail if the statement would write")
        job_timeout_arg(p)

    def output_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                       help="table for people, json or csv for scripts")

    p = sub.add_parser("submit", help="queue a job and print its id")
    job_args(p)
    p.add_argument("--job-id", help="your own id (an idempotency token)")
    output_args(p)
    p = sub.add_parser("query", help="submit, wait, print the result (Ctrl-C cancels the job)")
    job_args(p)
    output_args(p)
    wait_timeout_arg(p, 60.0)
    p.add_argument("--as-of", type=parse_as_of, metavar="VERSION|TIME",
                   help="read the snapshot of that version, or the one current at that ISO 8601 time")
    p = sub.add_parser("wait", help="wait for many jobs, with a progress bar; print each one's state")
    p.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="job ids, or - to read them from stdin")
    wait_timeout_arg(p, 600.0)
    p.add_argument("--no-progress", action="store_true")
    output_args(p)
    p = sub.add_parser("shell", help="an interactive SQL shell on one database")
    p.add_argument("--db", required=True)
    wait_timeout_arg(p, None)
    job_timeout_arg(p)
    p.add_argument("--history-file", type=Path, default=Path("~/.srdb_history"))
    p = sub.add_parser("history", help="list a database's retained snapshots, newest first")
    p.add_argument("--db", required=True)
    p.add_argument("--limit", type=int, default=20)
    output_args(p)
    p = sub.add_parser("restore", help="make an old snapshot current again, as a new version")
    p.add_argument("--db", required=True)
    p.add_argument("--to", type=int, required=True, metavar="VERSION")
    output_args(p)
    p = sub.add_parser("status", help="print a job's state")
    p.add_argument("job_id")
    output_args(p)
    p = sub.add_parser("result", help="print a job's result")
    p.add_argument("job_id")
    p.add_argument("--wait", action="store_true", help="wait for the job to finish")
    wait_timeout_arg(p, 60.0)
    output_args(p)
    p = sub.add_parser("cancel", help="cancel a job that is QUEUED or RUNNING; print what became of it")
    p.add_argument("job_id")
    output_args(p)
    p = sub.add_parser("load", help="load a CSV file (header row = column names) into a table")
    p.add_argument("--db", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("file", type=Path)
    p.add_argument("--rows-per-job", type=int, default=None, help="default: as many as fit one message")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-progress", action="store_true")
    job_timeout_arg(p)
    output_args(p)
    p = sub.add_parser("dlq", help="the dead-letter queue: list what is there, or send it back")
    p.add_argument("action", choices=("list", "redrive"))
    output_args(p)
    sub.add_parser("demo", help="start a local stack, load, query, print, stop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    command: Callable[[argparse.Namespace], int] = COMMANDS[args.command]
    try:
        return command(args)
    except JobFailed as exc:
        return _fail(exc.exit_code, describe(exc.error))
    except SrdbError as exc:  # each error knows its exit code
        if isinstance(exc, UsageError):
            parser.print_usage(sys.stderr)
        return _fail(exc.exit_code, f"srdb: {exc.type}: {exc}" + _unreachable_hint(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _unreachable_hint(exc: SrdbError) -> str:
    if exc.exit_code != EXIT_UNAVAILABLE:
        return ""
    from producer.local.stack import stale_local_env

    advice = stale_local_env(Path.cwd())
    return f"\nsrdb: {advice}" if advice else ""


def _fail(code: int, message: str) -> int:
    print(message, file=sys.stderr)
    return code


def _client() -> Any:
    from producer.client import Client
    from shared.clients import Clients
    from shared.settings import Settings

    settings = Settings.load()
    settings.require("bucket", "queue_url")
    clients = Clients.build(settings, fail_fast=True)  # an endpoint that does not answer: exit 5 in seconds
    return Client(settings, s3=clients.s3, sqs=clients.sqs)


def _print_result(client: Any, result: JobResult, fmt: str) -> int:
    from producer.cli.output import render

    if result.state is JobState.NOT_FOUND:
        raise JobNotFound(f"job {result.job_id} was never submitted")
    rows = client.store.iter_rows(result) if result.state is JobState.SUCCEEDED else []
    print(render(result, rows, fmt))
    if result.state is JobState.FAILED:
        raise JobFailed(result.job_id, result.error or {})
    return EXIT_OK


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


def cmd_submit(args: argparse.Namespace) -> int:
    job_id = _client().submit(args.db, args.sql, args.param, job_id=args.job_id, read_only=args.read_only,
                              timeout=args.job_timeout)
    _print_record({"job_id": job_id}, args.format, job_id)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from producer.cli.waiting import Speaker, cancel_all
    from shared.names import new_job_id

    client = _client()
    job_id = new_job_id()  # known before it is sent, so Ctrl-C at any point can cancel it
    speaker = Speaker(quiet=True)
    try:
        client.submit(args.db, args.sql, args.param, read_only=args.read_only or args.as_of is not None,
                      as_of=args.as_of, timeout=args.job_timeout, job_id=job_id)
        result = client.wait(job_id, args.timeout, on_slow=speaker)
    except KeyboardInterrupt:
        speaker.clear()
        return _interrupted(cancel_all(client, [job_id]))
    finally:
        speaker.clear()
    return _print_result(client, result, args.format)


def _interrupted(lines: list[str]) -> int:
    print("\n".join(["interrupted", *lines]), file=sys.stderr)
    return EXIT_INTERRUPTED


def cmd_wait(args: argparse.Namespace) -> int:
    from producer.cli.waiting import wait_all

    ids = [line.strip() for line in sys.stdin if line.strip()] if args.job_ids == ["-"] else args.job_ids
    if not ids:
        raise UsageError("no job ids to wait for")
    client = _client()
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
    return Shell(_client(), args.db, history_file=args.history_file, timeout=args.timeout,
                 job_timeout=args.job_timeout).run()


def cmd_history(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    records = []
    for m in _client().history(args.db, args.limit):
        shown = m.jobs if args.format == "json" else " ".join(m.jobs[:2]) + (" …" if len(m.jobs) > 2 else "")
        records.append({"version": m.version, "size": m.file_size, "restored_from": m.restored_from,
                        "time": datetime.fromtimestamp(m.created_at, UTC).isoformat(timespec="milliseconds"),
                        "jobs": len(m.jobs), "job_ids": shown})
    _print_records(records, ["version", "time", "size", "jobs", "restored_from", "job_ids"], args.format,
                   f"database {args.db} has no snapshots")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    restored = _client().restore(args.db, args.to)
    _print_record({"database": args.db, "version": restored.version, "restored_from": restored.restored_from},
                  args.format, f"database {args.db} is now version {restored.version}, "
                               f"a copy of version {restored.restored_from}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    result = _client().status(args.job_id)
    error: Any = result.error
    if error and args.format == "csv":
        error = describe(error)
    since = f" since {result.started_at}" if result.state is JobState.RUNNING else ""
    _print_record({"job_id": result.job_id, "state": result.state.value, "started_at": result.started_at,
                   "error": error}, args.format, result.state.value + since)
    return EXIT_NOT_FOUND if result.state is JobState.NOT_FOUND else EXIT_OK


def cmd_result(args: argparse.Namespace) -> int:
    client = _client()
    result = client.wait(args.job_id, args.timeout) if args.wait else client.status(args.job_id)
    if not result.state.final and result.state is not JobState.NOT_FOUND:
        _print_record({"job_id": result.job_id, "state": result.state.value, "started_at": result.started_at},
                      args.format, result.state.value)
        return EXIT_OK
    return _print_result(client, result, args.format)


def cmd_cancel(args: argparse.Namespace) -> int:
    state = _client().cancel(args.job_id)
    _print_record({"job_id": args.job_id, "state": state.value}, args.format, state.value)
    if state is JobState.NOT_FOUND:
        return EXIT_NOT_FOUND
    return EXIT_OK if state is JobState.CANCELLED else EXIT_FAILED


def cmd_load(args: argparse.Namespace) -> int:
    from producer.cli.load import LoadInterrupted, load_csv

    if not args.file.is_file():
        raise UsageError(f"no such file: {args.file}")
    client = _client()
    try:
        report = load_csv(client, args.db, args.table, args.file, rows_per_job=args.rows_per_job,
                          concurrency=args.concurrency, progress=not args.no_progress, job_timeout=args.job_timeout)
    except LoadInterrupted as stop:
        from producer.cli.waiting import cancel_all

        return _interrupted([f"{stop.rows} rows in {stop.jobs} jobs had committed", *cancel_all(client, stop.pending)])
    _print_record({"database": args.db, "table": args.table, "rows": report.rows, "jobs": report.jobs,
                   "seconds": round(report.seconds, 3), "rows_per_second": round(report.rows_per_second)},
                  args.format, f"loaded {report.rows} rows into {args.db}.{args.table} in {report.jobs} jobs, "
                               f"{report.seconds:.1f}s, {report.rows_per_second:,.0f} rows/s")
    return EXIT_OK


def cmd_dlq(args: argparse.Namespace) -> int:
    from producer.cli.dlq import DeadLetters

    client = _client()
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

    stack = LocalStack(Path.cwd(), port=args.port, workers=args.workers,
                       visibility_timeout=args.visibility_timeout, lock_ttl=args.lock_ttl)
    stop = _stop_on_signals()
    stack.start()
    try:
        print(f"srdb local ready at {stack.settings.endpoint_url} with {args.workers} worker(s); "
              f"settings in {stack.env_file}", flush=True)
        stop.wait()
    finally:
        stack.stop()
    print("srdb local stopped", flush=True)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from producer.local.poller import Poller
    from shared.clients import Clients
    from shared.settings import Settings
    from worker.handler import handle

    settings = Settings.load()
    settings.require("bucket", "queue_url", "vpc_id")
    stop = _stop_on_signals()
    if args.parent_pid is not None:
        _stop_with_parent(stop, args.parent_pid)
    Poller(Clients.build(settings).sqs, settings.queue_url, handle, region=settings.region, stop=stop,
           batch_size=args.batch_size, window=args.batching_window).run()
    return EXIT_OK


def cmd_reaper(args: argparse.Namespace) -> int:
    from reaper.handler import handle

    if args.once:
        print(json.dumps(handle({}, None)))
        return EXIT_OK
    stop = _stop_on_signals()
    while True:
        report = handle({}, None)
        if report["freed"]:
            print(json.dumps(report), flush=True)
        if stop.wait(args.interval):
            return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from producer.cli.demo import run_demo

    return int(run_demo())


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "submit": cmd_submit, "query": cmd_query, "wait": cmd_wait, "shell": cmd_shell, "history": cmd_history,
    "restore": cmd_restore, "status": cmd_status, "result": cmd_result, "cancel": cmd_cancel,
    "load": cmd_load, "dlq": cmd_dlq, "local": cmd_local, "worker": cmd_worker, "reaper": cmd_reaper, "demo": cmd_demo,
}


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
