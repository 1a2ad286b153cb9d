"""The shell's completion: dot-commands at the start of a line, SQL keywords, the database's tables and
columns (fetched in the background), and when Enter runs the text instead of starting a new line."""

from __future__ import annotations

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from producer.cli.shell.editor import Names, ShellCompleter, _submits
from tests.conftest import until


def completions(completer: ShellCompleter, text: str) -> list[str]:
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


def test_completion_offers_commands_keywords_tables_and_columns() -> None:
    names = Names(lambda: [("birds", "id"), ("birds", "wingspan"), ("nests", "bird_id")])
    names.refresh()
    until(lambda: names.tables)
    completer = ShellCompleter(lambda: [".tables", ".timer", ".schema"], names)
    assert completions(completer, ".t") == [".tables", ".timer"]
    assert completions(completer, "SELECT wi") == ["wingspan", "window", "with", "without"]
    assert completions(completer, "select * FROM bi") == ["birds", "bird_id"]
    assert completions(completer, "select * from t whe") == ["when", "where"]  # a keyword in the case it was begun in
    assert completions(completer, "SEL") == ["SELECT"]
    assert completions(completer, "SELECT 1 ") == []


def test_a_failed_fetch_keeps_the_names_completion_had() -> None:
    calls: list[int] = []

    def fetch() -> list[tuple[str, str]]:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("the stack went away")
        return [("t", "a")]

    names = Names(fetch)
    names.refresh()
    until(lambda: names.tables)
    names.refresh()
    until(lambda: len(calls) == 2)
    assert names.tables == {"t": ["a"]}


def test_enter_runs_a_complete_statement_or_a_dot_command_and_continues_anything_else() -> None:
    assert _submits("SELECT 1;") and _submits(".tables") and _submits("") and _submits("SELECT 6 *\n7;")
    assert not _submits("SELECT 1") and not _submits("SELECT 'a;")
