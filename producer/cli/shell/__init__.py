"""``srdb shell --db NAME``: an SQL shell in the manner of the sqlite3 shell — the loop and its
transactions (``repl``), the dot-commands (``dot``), the screen and history (``screen``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from producer.cli.args import Subparsers, UsageError, client, db_arg, job_timeout_arg, wait_timeout_arg


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("shell", parents=[common],
                       help="an SQL shell on one database, as sqlite3's (scripts too: stdin, -f, -c)")
    db_arg(p, "database name")
    p.add_argument("-f", "--file", type=Path, metavar="FILE", help="run FILE (statements and dot commands), then exit")
    p.add_argument("-c", "--command", dest="sql", metavar="SQL", action="append",
                   help="run SQL (or a dot command), then exit; several -c run in order")
    wait_timeout_arg(p)
    job_timeout_arg(p)
    p.add_argument("--history-file", type=Path, default=Path("~/.srdb_history"),
                   help="where typed lines are kept between sessions (default ~/.srdb_history)")
    p.set_defaults(func=cmd_shell)


def cmd_shell(args: argparse.Namespace) -> int:
    from producer.cli.shell.repl import Shell
    from shared.names import check_database

    check_database(args.db)
    script = args.file is not None or args.sql is not None or not sys.stdin.isatty()
    shell = Shell(client(args), args.db, history_file=args.history_file, timeout=args.timeout,
                  job_timeout=args.job_timeout, interactive=not script)
    if args.sql is not None:
        return shell.run_lines([line for command in args.sql for line in command.splitlines()])
    if args.file is not None and str(args.file) != "-":
        try:
            with open(args.file.expanduser(), encoding="utf-8-sig") as lines:
                return shell.run_lines(lines)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    return shell.run_lines(sys.stdin) if script else shell.run()
