"""``srdb config``: the settings in effect and where each comes from; named profiles in the user's config
folder (shared.profiles) that follow the user into every folder — ``save``, ``use``, ``set``, ``unset``,
``list``."""

from __future__ import annotations

import argparse

from producer.cli.args import Subparsers, UsageError, output_args, overrides
from producer.cli.printing import print_record, print_records
from shared.errors import EXIT_OK


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", parents=[common],
                       help="print the settings in effect and where each comes from; save, use and edit profiles")
    output_args(p)
    p.set_defaults(func=cmd_show)
    actions = p.add_subparsers(dest="action", metavar="ACTION", help="show (the default), list, save, use, set, unset")
    for name, func, about, positionals in (
        ("show", cmd_show, "the settings in effect and their sources (the default)", ()),
        ("list", cmd_list, "the saved profiles; * marks the one in use", ()),
        ("save", cmd_save, "save the stack the settings name now (e.g. srdb local's) as profile NAME",
         (("name", "NAME", "the profile's name"),)),
        ("use", cmd_use, "use profile NAME from now on, in every folder without .srdb/local.env",
         (("name", "NAME", "a saved profile"),)),
        ("set", cmd_set, "set KEY (e.g. database: the default --db) in the profile in use (or --profile NAME)",
         (("key", "KEY", "a setting: database, queue-url, job-timeout… (srdb config lists them)"),
          ("value", "VALUE", "its value"))),
        ("unset", cmd_unset, "remove KEY from the profile in use (or --profile NAME)", (("key", "KEY", "a setting"),)),
    ):
        q = actions.add_parser(name, parents=[common], help=about)
        for dest, metavar, text in positionals:
            q.add_argument(dest, metavar=metavar, help=text)
        output_args(q)
        q.set_defaults(func=func)


def cmd_show(args: argparse.Namespace) -> int:
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
    print_records(records, ["setting", "value", "source"], args.format, "")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from shared import profiles

    using = profiles.current()
    records = [{"profile": name, "current": name == using, "path": str(profiles.profile_path(name))}
               for name in profiles.names()]
    if args.format == "table":
        print("\n".join(f"{'*' if r['current'] else ' '} {r['profile']}" for r in records)
              or "no profiles yet: `srdb config save NAME` saves the stack in effect")
        return EXIT_OK
    print_records(records, ["profile", "current", "path"], args.format, "")
    return EXIT_OK


def cmd_save(args: argparse.Namespace) -> int:
    from shared import profiles
    from shared.settings import Settings, write_env_file

    settings = Settings.load(**overrides(args))
    settings.require("bucket", "queue_url")
    path = profiles.profile_path(args.name)
    write_env_file(path, settings.to_env())
    path.chmod(0o600)  # it may hold keys
    print_record({"profile": args.name, "path": str(path)}, args.format,
                 f"saved profile {args.name} ({path}): `srdb config use {args.name}` uses it in every folder")
    return EXIT_OK


def cmd_use(args: argparse.Namespace) -> int:
    from shared import profiles

    profiles.use(args.name)
    print_record({"profile": args.name}, args.format,
                 f"using profile {args.name} wherever no .srdb/local.env or SRDB_* variable names a stack")
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    from shared.settings import checked_value, setting_variable

    name, variable = setting_variable(args.key)
    return _edit(args, variable, checked_value(name, args.value))


def cmd_unset(args: argparse.Namespace) -> int:
    from shared.settings import setting_variable

    return _edit(args, setting_variable(args.key)[1], None)


def _edit(args: argparse.Namespace, variable: str, value: str | None) -> int:
    """Change one line of a profile: the one --profile names, else the one in use, else ``default`` (made
    and put in use, so the change takes effect)."""
    from shared import profiles
    from shared.settings import read_env_file, write_env_file

    given = overrides(args)
    if "profile" in given:
        raise UsageError(f"no srdb profile {given['profile']} (--profile names an srdb profile here): "
                         f"`srdb config save {given['profile']}` makes one")
    name = given.get("profile_name") or profiles.current() or profiles.DEFAULT_PROFILE
    path = profiles.profile_path(name)
    saved = read_env_file(path)
    if value is None:
        saved.pop(variable, None)
    else:
        saved[variable] = value
    write_env_file(path, saved)
    if profiles.current() is None:
        profiles.use(name)
    said = f"{variable}={value}" if value is not None else f"{variable} removed"
    print_record({"profile": name, "variable": variable, "value": value}, args.format,
                 f"profile {name}: {said}")
    return EXIT_OK
