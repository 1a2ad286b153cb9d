"""Commands on jobs: submit, query, wait, status, result, cancel, jobs."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from producer.cli.args import (
    Subparsers,
    UsageError,
    as_of_arg,
    bounded,
    client,
    job_args,
    output_args,
    parse_duration,
    wait_timeout_arg,
)
from producer.cli.printing import interrupted, print_record, print_records, print_result
from shared.errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_TIMEOUT, describe

if TYPE_CHECKING:
    from shared.job.model import Job


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("submit", parents=[common],
                       help="queue a job and print its id; with --file, a job per statement of the file")
    job_args(p, file_help="submit a job per statement (or per line, --per line) of FILE (- for stdin), ten to "
                          "an SQS request, and print every id")
    p.add_argument("--per", choices=("statement", "line"), default="statement",
                   help="with --file: a job per statement (default) or per non-empty line")
    p.add_argument("--job-id", help="your own id (an idempotency token)")
    output_args(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("query", parents=[common], help="submit, wait, print the result (Ctrl-C cancels the job)")
    job_args(p)
    output_args(p)
    wait_timeout_arg(p)
    as_of_arg(p)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("wait", parents=[common], help="wait for many jobs, with a progress bar; print each one's state")
    p.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="job ids, or - to read them from stdin")
    wait_timeout_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it goes to stderr on a terminal)")
    output_args(p)
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("status", parents=[common], help="print a job's state")
    p.add_argument("job_id", help="the id submit printed")
    output_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("result", parents=[common], help="print a job's result")
    p.add_argument("job_id", help="the id submit printed")
    p.add_argument("--wait", action="store_true", help="wait for the job to finish")
    wait_timeout_arg(p)
    output_args(p)
    p.set_defaults(func=cmd_result)

    p = sub.add_parser("cancel", parents=[common],
                       help="cancel a job that is QUEUED or RUNNING; print what became of it")
    p.add_argument("job_id", help="the id submit printed")
    output_args(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("jobs", parents=[common], help="list recent jobs with their state and timings, newest first")
    p.add_argument("--since", type=parse_duration, default=3600.0, metavar="DURATION",
                   help="how far back, e.g. 30m, 2h, 1d (default 1h)")
    p.add_argument("--limit", type=bounded(int, 1), default=20, help="at most this many jobs, newest first "
                                                                      "(default 20; stderr says when there are more)")
    p.add_argument("--db", default=None, help="only this database's jobs")
    output_args(p)
    p.set_defaults(func=cmd_jobs)


def job_of(args: argparse.Namespace, *, job_id: str | None = None) -> Job:
    """The job a ``query`` or ``submit`` command line names: one statement, or a script run as one job."""
    from producer.cli.sqltext import read_sql, statements_of
    from shared.job.model import Job

    text = read_sql(args.sql, args.file)
    statements = statements_of(text)
    common = {"job_id": job_id or getattr(args, "job_id", None), "timeout": args.job_timeout,
              "create": not args.no_create, "label": args.label}
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
    job_id = client(args).submit_job(job_of(args))
    print_record({"job_id": job_id}, args.format, job_id)
    return EXIT_OK


def _submit_many(args: argparse.Namespace) -> int:
    from producer.cli.sqltext import read_sql, statements_of
    from shared.job.model import Job

    if args.job_id or args.param:
        raise UsageError("submit --file makes a job per statement: --job-id and --param do not apply")
    text = read_sql(args.sql, args.file)
    sqls = statements_of(text) if args.per == "statement" else [s for s in text.splitlines() if s.strip()]
    jobs = [Job.create(args.db, sql, read_only=args.read_only, timeout=args.job_timeout,
                       create=not args.no_create, label=args.label) for sql in sqls]
    ids = client(args).submit_jobs(jobs)
    if args.format == "table":  # an id a line, as submit prints one: `srdb wait -` reads them back
        print("\n".join(ids))
    else:
        print_records([{"job_id": j} for j in ids], ["job_id"], args.format, "")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from producer.cli.waiting import Speaker, cancel_all
    from shared.names import new_job_id

    srdb = client(args)
    job_id = new_job_id()  # known before it is sent, so Ctrl-C at any point can cancel it
    job = job_of(args, job_id=job_id)
    speaker = Speaker(quiet=True)
    try:
        srdb.submit_job(job)
        result = srdb.wait(job_id, args.timeout, on_slow=speaker)
    except KeyboardInterrupt:
        speaker.clear()
        return interrupted(cancel_all(srdb, [job_id]))
    finally:
        speaker.clear()
    return print_result(srdb, result, args.format, args.no_pager)


def cmd_wait(args: argparse.Namespace) -> int:
    from producer.cli.waiting import cancel_all, wait_all
    from shared.job.result import JobState

    ids = [line.strip() for line in sys.stdin if line.strip()] if args.job_ids == ["-"] else args.job_ids
    if not ids:
        raise UsageError("no job ids to wait for")
    srdb = client(args)
    try:
        results = wait_all(srdb, ids, timeout=args.timeout, progress=not args.no_progress)
    except KeyboardInterrupt:
        return interrupted(cancel_all(srdb, ids))
    records = [{"job_id": r.job_id, "state": r.state.value, "rowcount": r.rowcount,
                "error": describe(r.error) if r.error else None} for r in results]
    print_records(records, ["job_id", "state", "rowcount", "error"], args.format, "")
    states = {r.state for r in results}
    if JobState.NOT_FOUND in states:
        return EXIT_NOT_FOUND
    if not all(s.final for s in states):
        return EXIT_TIMEOUT
    return EXIT_OK if states <= {JobState.SUCCEEDED} else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    from shared.job.result import JobState

    result = client(args).status(args.job_id)
    error: Any = result.error
    if error and args.format == "csv":
        error = describe(error)
    since = f" since {result.started_at}" if result.state is JobState.RUNNING else ""
    waiting = f" ({result.waiting})" if result.waiting and result.state is JobState.QUEUED else ""
    what = f"\n{result.database}: {result.label}" if result.label else ""
    print_record({"job_id": result.job_id, "state": result.state.value, "started_at": result.started_at,
                  "database": result.database, "label": result.label, "waiting": result.waiting, "error": error},
                 args.format, result.state.value + since + waiting + what)
    return EXIT_NOT_FOUND if result.state is JobState.NOT_FOUND else EXIT_OK


def cmd_result(args: argparse.Namespace) -> int:
    from shared.job.result import JobState

    srdb = client(args)
    result = srdb.wait(args.job_id, args.timeout) if args.wait else srdb.status(args.job_id)
    if not result.state.final and result.state is not JobState.NOT_FOUND:
        print_record({"job_id": result.job_id, "state": result.state.value, "started_at": result.started_at},
                     args.format, result.state.value)
        return EXIT_OK
    return print_result(srdb, result, args.format, args.no_pager)


def cmd_cancel(args: argparse.Namespace) -> int:
    from shared.job.result import JobState

    state = client(args).cancel(args.job_id)
    said = state.value if state in (JobState.CANCELLED, JobState.NOT_FOUND) else (
        f"{state.value}: the job had already finished; nothing was cancelled")
    print_record({"job_id": args.job_id, "state": state.value}, args.format, said)
    if state is JobState.NOT_FOUND:
        return EXIT_NOT_FOUND
    return EXIT_OK if state is JobState.CANCELLED else EXIT_FAILED


def cmd_jobs(args: argparse.Namespace) -> int:
    import time

    # One more than asked for, to know whether there are more.
    results = client(args).jobs(since=time.time() - args.since, limit=10_000 if args.db else args.limit + 1)
    records = [{"job_id": r.job_id, "database": r.database, "state": r.state.value, "submitted_at": r.submitted_at,
                "run_ms": r.timings.get("run_ms"), "total_ms": r.timings.get("total_ms"),
                "error": (r.error or {}).get("type"), "sql": r.label}
               for r in results if args.db is None or r.database == args.db]
    more = len(records) > args.limit
    print_records(records[:args.limit], ["job_id", "database", "state", "submitted_at", "run_ms", "total_ms",
                                         "error", "sql"], args.format, "no jobs in that time")
    if more:
        print(f"the newest {args.limit} shown; more jobs in that time: --limit N shows more", file=sys.stderr)
    return EXIT_OK


def register_dlq(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dlq", parents=[common], help="the dead-letter queue: list what is there, or send it back")
    p.add_argument("action", choices=("list", "redrive"),
                   help="list: what is there and why; redrive: send it back to the job queue")
    output_args(p)
    p.set_defaults(func=cmd_dlq)


def cmd_dlq(args: argparse.Namespace) -> int:
    from producer.cli.dlq import DeadLetters

    srdb = client(args)
    srdb.settings.require("dlq_url")
    letters = DeadLetters(srdb.sqs, srdb.store, srdb.settings.queue_url, srdb.settings.dlq_url)
    if args.action == "redrive":
        sent = letters.redrive()
        if args.format == "csv":
            print_records([{"job_id": j} for j in sent], ["job_id"], "csv", "")
        else:
            print_record({"redriven": sent}, args.format, f"sent {len(sent)} job(s) back")
        return EXIT_OK
    print_records([d.to_json() for d in letters.peek()], ["job_id", "database", "receive_count", "reason"],
                  args.format, "the dead-letter queue is empty")
    return EXIT_OK
