"""The shell's line editor on a terminal (prompt_toolkit, as litecli and pgcli): a statement spans
lines and is recalled from history as one, Ctrl-R searches the history, Tab completes dot-commands,
SQL keywords and the current database's table and column names. Pipes, scripts and dumb terminals
keep plain ``input()`` (``interactive_terminal``)."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

SQL_KEYWORDS = (
    "ABORT", "ADD", "AFTER", "ALL", "ALTER", "ANALYZE", "AND", "AS", "ASC", "BEGIN", "BETWEEN", "BY", "CASE",
    "CAST", "CHECK", "COLLATE", "COLUMN", "COMMIT", "CONFLICT", "CONSTRAINT", "CREATE", "CROSS", "DEFAULT",
    "DELETE", "DESC", "DISTINCT", "DROP", "ELSE", "END", "ESCAPE", "EXCEPT", "EXISTS", "EXPLAIN", "FOREIGN",
    "FROM", "FULL", "GLOB", "GROUP", "HAVING", "IF", "IGNORE", "IN", "INDEX", "INNER", "INSERT", "INTERSECT",
    "INTO", "IS", "JOIN", "KEY", "LEFT", "LIKE", "LIMIT", "NOT", "NULL", "OFFSET", "ON", "OR", "ORDER",
    "OUTER", "OVER", "PARTITION", "PRAGMA", "PRIMARY", "REFERENCES", "REPLACE", "RETURNING", "RIGHT",
    "ROLLBACK", "ROWID", "SELECT", "SET", "TABLE", "TEMP", "THEN", "TRIGGER", "UNION", "UNIQUE", "UPDATE",
    "USING", "VACUUM", "VALUES", "VIEW", "VIRTUAL", "WHEN", "WHERE", "WINDOW", "WITH", "WITHOUT",
    "INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC",
)


def interactive_terminal() -> bool:
    """True when a person types at a terminal that can be edited on (not a pipe, not TERM=dumb)."""
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM", "") not in ("", "dumb")


class Names:
    """The current database's tables and their columns, fetched in the background (one read job) and
    again after a statement that may change the schema."""

    def __init__(self, fetch: Callable[[], list[tuple[str, str]]]) -> None:
        self.fetch = fetch
        self.tables: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        threading.Thread(target=self._load, name="srdb-shell-names", daemon=True).start()

    def _load(self) -> None:
        try:
            pairs = self.fetch()
        except Exception:  # completion is a convenience: a failed fetch leaves the names it had
            return
        tables: dict[str, list[str]] = {}
        for table, column in pairs:
            tables.setdefault(table, []).append(column)
        with self._lock:
            self.tables = tables

    def words(self) -> Iterable[tuple[str, str]]:
        with self._lock:
            tables = dict(self.tables)
        for table, columns in sorted(tables.items()):
            yield table, "table"
            for column in columns:
                yield column, f"column of {table}"


class ShellCompleter(Completer):
    """Dot-commands at the start of a line; elsewhere SQL keywords, table and column names."""

    def __init__(self, commands: Callable[[], Iterable[str]], names: Names) -> None:
        self.commands, self.names = commands, names

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        if before.lstrip().startswith(".") and " " not in before.strip():
            word = before.strip()
            for command in sorted(self.commands()):
                if command.startswith(word.lower()):
                    yield Completion(command, start_position=-len(word))
            return
        word = document.get_word_before_cursor(WORD=False)
        if not word or not (word[-1].isalnum() or word[-1] == "_"):
            return
        lowered = word.lower()
        seen: set[str] = set()
        for name, meta in self.names.words():
            if name.lower().startswith(lowered) and name not in seen:
                seen.add(name)
                yield Completion(name, start_position=-len(word), display_meta=meta)
        for keyword in SQL_KEYWORDS:
            if keyword.lower().startswith(lowered):
                shown = keyword if word[0].isupper() else keyword.lower()
                yield Completion(shown, start_position=-len(word), display_meta="keyword")


def _submits(text: str) -> bool:
    """Enter runs the text when it is empty, a dot-command, or ends a statement; else it starts a new line."""
    stripped = text.strip()
    return not stripped or stripped.startswith(".") or sqlite3.complete_statement(text)


class LineEditor:
    """Reads a whole statement or dot-command at a time; ``read`` is the shell's ``read_line``."""

    def __init__(self, history_file: Path | None, completer: ShellCompleter) -> None:
        bindings = KeyBindings()

        @bindings.add("enter")
        def _(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            if _submits(buffer.text):
                buffer.validate_and_handle()
            else:
                buffer.insert_text("\n")

        history = FileHistory(str(history_file)) if history_file else InMemoryHistory()
        self.session: PromptSession[str] = PromptSession(
            history=history, completer=completer, complete_while_typing=False, multiline=True,
            key_bindings=bindings, prompt_continuation=lambda width, line, wrapped: "   ...> ".rjust(width),
            enable_history_search=False)

    def read(self, prompt: str) -> str:
        """One statement (perhaps several lines) or dot-command. EOFError at Ctrl-D, KeyboardInterrupt at Ctrl-C."""
        return self.session.prompt(prompt)
