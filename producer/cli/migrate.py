"""``srdb migrate``: numbered SQL files in ``migrations/``, each applied once (producer/migrations.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from producer.cli.args import Subparsers, client, db_arg, output_args
from producer.cli.printing import print_record, print_records
from shared.errors import EXIT_OK


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("migrate", parents=[common],
                       help="schema migrations: create a numbered SQL file, apply the pending ones, list them")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="create, apply or list")
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--dir", type=Path, default=Path("migrations"), metavar="FOLDER",
                        help="where the migration files are (default ./migrations)")
    made = actions.add_parser("create", parents=[common, folder], help="a new empty migration file, numbered next")
    made.add_argument("name", help="what it does, e.g. 'add orders' (becomes 0002_add_orders.sql)")
    output_args(made)
    made.set_defaults(func=cmd_create)
    for name, said, func in (
            ("apply", "apply every pending migration in order, each as one job; stop at the first that fails "
                      "(nothing of it applied)", cmd_apply),
            ("list", "each migration: applied (and when), pending, changed since applied, or missing its file",
             cmd_list)):
        on_db = actions.add_parser(name, parents=[common, folder], help=said)
        db_arg(on_db, "database name")
        output_args(on_db)
        on_db.set_defaults(func=func)


def cmd_create(args: argparse.Namespace) -> int:
    from producer.migrations import Migrations

    path = Migrations(None, args.dir).create(args.name)  # a file: no stack needed
    print_record({"created": str(path)}, args.format, f"created {path}")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from producer.migrations import Migrations

    done = Migrations(client(args), args.dir).apply(args.db)
    said = "\n".join(f"applied {name}" for name in done) or f"{args.db} is up to date: nothing pending"
    print_record({"database": args.db, "applied": done}, args.format, said)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from producer.migrations import Migrations

    states = Migrations(client(args), args.dir).status(args.db)
    print_records([s.to_json() for s in states], ["migration", "state", "applied_at"], args.format,
                  f"no migrations in {args.dir} and none applied to {args.db}")
    return EXIT_OK
