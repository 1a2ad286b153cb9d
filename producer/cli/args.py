"""The command line's argument types and the options several commands share, and the client a
command's settings name."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import ClientSideError

if TYPE_CHECKING:  # the client (boto3, aioboto3) is imported by the commands that use it, so --help is quick
    from producer.client import Client

Subparsers = Any  # argparse's _SubParsersAction, private in typeshed


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
    """``90``, ``30s``, ``15m``, ``2h``, ``7d`` or ``2w``, in seconds: the settings' own parser
    (``SRDB_RETENTION=2w``), with argparse's error."""
    from shared.settings import duration_seconds

    try:
        return duration_seconds(text)
    except ClientSideError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90, 30s, 15m, 2h, 7d or 2w") from None


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?\s*[smhdw])(?:\s+ago)?", re.IGNORECASE)


def parse_as_of(text: str) -> int | str:
    """``--as-of`` and the shell's ``.as_of``: a version (``41``), an ISO 8601 time, or a time back from
    now — ``10m``, ``2h ago``, ``1w``, ``yesterday`` (a day ago) — sent as the ISO time it names."""
    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    relative = _RELATIVE.fullmatch(stripped)
    if relative is None and stripped.lower() != "yesterday":
        return text
    from datetime import UTC, datetime, timedelta

    from shared.settings import duration_seconds

    seconds = 86400.0 if relative is None else duration_seconds(relative.group(1).replace(" ", ""))
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def bounded(kind: Callable[[str], Any], low: float, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type that refuses values outside [low, high] with a usage error, not a traceback."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number {span}")
        return value

    parse.__name__ = kind.__name__
    return parse


def aws_args(p: argparse.ArgumentParser, default: Any) -> None:
    """The AWS CLI's options, on every command: they beat SRDB_* variables and .srdb/local.env."""
    p.add_argument("--profile", default=default, metavar="NAME",
                   help="an srdb profile (~/.config/srdb/profiles/NAME.env: srdb config save/use/set) when one has "
                        "that name, else a named profile of ~/.aws/config (SRDB_PROFILE)")
    p.add_argument("--region", default=default, help="the AWS region (SRDB_REGION, AWS_REGION)")
    p.add_argument("--endpoint-url", default=default, metavar="URL",
                   help="an S3/SQS/EC2 endpoint other than AWS's, e.g. moto (SRDB_ENDPOINT_URL)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives (``Settings.load(**overrides(args))``). ``--profile NAME`` is an
    srdb profile (``~/.config/srdb/profiles/NAME.env``) when there is one of that name, else an AWS one."""
    from shared import profiles

    given: dict[str, Any] = {name: getattr(args, name) for name in ("profile", "region", "endpoint_url")
                             if getattr(args, name, None)}
    if "profile" in given and profiles.exists(str(given["profile"])):
        given["profile_name"] = given.pop("profile")
    return given


def client(args: argparse.Namespace) -> Client:
    """The client for the stack the settings name; an endpoint that does not answer fails in seconds."""
    from producer.client import Client
    from shared.clients import Clients
    from shared.settings import Settings

    settings = Settings.load(**overrides(args))
    settings.require("bucket", "queue_url")
    clients = Clients.build(settings, fail_fast=True)
    return Client(settings, s3=clients.s3, sqs=clients.sqs)


def job_timeout_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job-timeout", type=bounded(float, 0.001), default=None, metavar="SECONDS",
                   help="the job's own time budget in the worker (default SRDB_JOB_TIMEOUT; at most "
                        "SRDB_MAX_JOB_TIMEOUT, which `srdb config` shows): past it the job is interrupted and "
                        "FAILED Timeout")


# How long every waiting command waits by default: the longest a job may run on Lambda (15 minutes, the
# most SRDB_MAX_JOB_TIMEOUT can be), so a wait never gives up on a job that is still allowed to finish.
WAIT_SECONDS = 900.0


def wait_timeout_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=bounded(float, 0), default=WAIT_SECONDS, metavar="SECONDS",
                   help=f"how long this command waits for the result (default {WAIT_SECONDS:g}, for every "
                        "command that waits); only the wait: the job runs on, see --job-timeout")


def db_arg(p: argparse.ArgumentParser, help: str = "database name") -> None:
    """``--db``, which ``SRDB_DATABASE`` may give instead (``resolve_db``)."""
    p.add_argument("--db", default=None, help=f"{help} (default: SRDB_DATABASE)")
    p.set_defaults(needs_db=True)


def resolve_db(args: argparse.Namespace) -> None:
    """Fill a missing ``--db`` from the ``database`` setting, or say that one is needed."""
    if not getattr(args, "needs_db", False) or args.db:
        return
    from shared.settings import Settings

    args.db = Settings.load(**overrides(args)).database or None
    if not args.db:
        raise UsageError("name the database: --db NAME, or set SRDB_DATABASE")


def job_args(p: argparse.ArgumentParser, file_help: str = "read the SQL from FILE (- for stdin)") -> None:
    db_arg(p)
    p.add_argument("sql", nargs="?", help="the SQL; several statements run as one job (one transaction); "
                                          "- reads it from stdin")
    p.add_argument("-f", "--file", type=Path, metavar="FILE", help=file_help)
    p.add_argument("--param", action="append", default=[], type=parse_param, metavar="VALUE",
                   help="a ? parameter, repeatable (JSON literal, else text)")
    p.add_argument("--read-only", action="store_true", help="fail if the statement would write")
    p.add_argument("--no-create", action="store_true",
                   help="fail (DatabaseNotFound) instead of creating a database that does not exist")
    job_timeout_arg(p)
    label_arg(p)


def as_of_arg(p: argparse.ArgumentParser, what: str = "read the snapshot of") -> None:
    p.add_argument("--as-of", type=parse_as_of, metavar="VERSION|TIME",
                   help=f"{what} that version, or the one current at a time: ISO 8601, or back from now (10m, "
                        "2h ago, 1w, yesterday)")


def label_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label", metavar="TEXT",
                   help="what the job is, shown in history, jobs and status (default: its SQL's first line)")


def output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table for people, json or csv for scripts (errors too, as JSON on stdout)")
    p.add_argument("--no-pager", action="store_true",
                   help="never page long output on a terminal (default: $PAGER, else less -FRX)")
