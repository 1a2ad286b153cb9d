"""The ``srdb`` command. Each module registers its own commands (``register``, with
``set_defaults(func=…)``): ``jobs``, ``data``, ``access``, ``services``, ``shell``; ``args`` and
``printing`` are what they share.

Exit codes: 0 success; 1 the job FAILED (its error type and message on stderr); 2 usage error;
3 job not found; 4 timed out waiting; 5 srdb could not be reached (settings, network, AWS).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from producer.cli import access, config, data, jobs, migrate, services, shell
from producer.cli.args import UsageError, aws_args, parse_param, resolve_db
from producer.cli.printing import fail, print_error_json
from shared.errors import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, JobFailed, SrdbError, describe

__all__ = ["UsageError", "build_parser", "main", "parse_param", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srdb", description="srdb: SQLite in S3, SQL jobs over SQS.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print srdb's version and exit")
    aws_args(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    aws_args(common, argparse.SUPPRESS)  # after the command too; given before it, a value is not overwritten
    services.register(sub, common)
    jobs.register(sub, common)
    shell.register(sub, common)
    data.register(sub, common)
    jobs.register_dlq(sub, common)
    access.register(sub, common)
    migrate.register(sub, common)
    config.register(sub, common)
    services.register_last(sub, common)
    return parser


class _Version(argparse.Action):
    """``--version``, which reads the installed package's metadata only when asked (importlib.metadata
    costs as much as the rest of ``srdb --help``)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"srdb {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("srdb")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    command: Callable[[argparse.Namespace], int] = args.func
    as_json = getattr(args, "format", None) == "json"
    try:
        resolve_db(args)
        return command(args)
    except JobFailed as exc:
        if as_json and not exc.shown:
            print_error_json(exc.error, exc.exit_code, exc.job_id)
        return fail(exc.exit_code, describe(exc.error))
    except SrdbError as exc:  # each error knows its exit code
        if isinstance(exc, UsageError):
            parser.print_usage(sys.stderr)
        hint = _unreachable_hint(exc)
        if as_json:
            print_error_json({"type": exc.type, "message": str(exc) + hint}, exc.exit_code)
        return fail(exc.exit_code, f"srdb: {exc.type}: {exc}" + hint)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _unreachable_hint(exc: SrdbError) -> str:
    if exc.exit_code != EXIT_UNAVAILABLE:
        return ""
    from producer.local.stack import stale_local_env

    advice = stale_local_env(Path.cwd())
    return f"\nsrdb: {advice}" if advice else ""


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
