"""The command line's surface: a version, and help on every option of every command."""

from __future__ import annotations

import argparse

import pytest

from producer.cli import build_parser, main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("srdb ")


def test_every_option_of_every_command_says_what_it_does() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    silent = [f"{name} {action.option_strings or action.dest}"
              for name, command in commands.choices.items() for action in command._actions
              if not action.help]
    assert silent == []


def test_as_of_takes_a_version_a_time_or_a_time_back_from_now() -> None:
    from datetime import UTC, datetime, timedelta

    from producer.cli.args import parse_as_of

    assert parse_as_of("41") == 41
    assert parse_as_of("2026-12-01T00:00:00Z") == "2026-12-01T00:00:00Z"
    for text, back in (("10m", 600), ("2h ago", 7200), ("1w", 7 * 86400), ("yesterday", 86400), ("90s ago", 90)):
        when = datetime.fromisoformat(str(parse_as_of(text)))
        assert abs((datetime.now(UTC) - timedelta(seconds=back) - when).total_seconds()) < 5, text
