"""Commands on access groups: grant, revoke, grants."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from producer.cli.args import Subparsers, UsageError, client, output_args
from producer.cli.printing import print_records
from shared.errors import EXIT_OK

if TYPE_CHECKING:
    from shared.grants import Grants


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("grant", parents=[common],
                       help="give an access group read or write access to databases, or a queue or sender")
    p.add_argument("--group", required=True, help="the access group (made if new)")
    p.add_argument("--db", default=None, metavar="PATTERN", help="a database name or glob, e.g. 'sales_*' or '*'")
    p.add_argument("--access", choices=("read", "write"), default="read", help="write includes read (default read)")
    p.add_argument("--queue", default=None, metavar="URL_OR_ARN", help="a job queue whose messages are this group's")
    p.add_argument("--sender", default=None, metavar="PATTERN",
                   help="only messages whose SQS SenderId matches (an IAM role's is AROA…:<session>)")
    output_args(p)
    p.set_defaults(func=cmd_grant)

    p = sub.add_parser("revoke", parents=[common],
                       help="take an access group's grant on databases away, or the whole group")
    p.add_argument("--group", required=True, help="the access group")
    p.add_argument("--db", default=None, metavar="PATTERN", help="the grant to take away; without it, the group")
    output_args(p)
    p.set_defaults(func=cmd_revoke)

    p = sub.add_parser("grants", parents=[common], help="list the access groups: queues, senders, databases and access")
    output_args(p)
    p.set_defaults(func=cmd_grants)


def cmd_grant(args: argparse.Namespace) -> int:
    if args.db is None and args.queue is None and args.sender is None:
        raise UsageError("say what to grant: --db PATTERN (with --access), --queue, or --sender")
    _print_grants(client(args).grant(args.group, database=args.db, access=args.access, queue=args.queue,
                                     sender=args.sender), args.format)
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    _print_grants(client(args).revoke(args.group, args.db), args.format)
    return EXIT_OK


def cmd_grants(args: argparse.Namespace) -> int:
    _print_grants(client(args).grants(), args.format)
    return EXIT_OK


def _print_grants(grants: Grants, fmt: str) -> None:
    records = [{"group": name, "database": database, "access": access, "queues": " ".join(g.queues),
                "senders": " ".join(g.senders) or "any"}
               for name, g in sorted(grants.groups.items())
               for database, access in (sorted(g.databases.items()) or [("", "")])]
    print_records(records, ["group", "database", "access", "queues", "senders"], fmt,
                  "no access groups: every queue may read and write every database")
