"""The shell's state and its screen: where results, remarks and errors go, the prompt, the history file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from producer.cli.shell.editor import Names
from producer.client import Client
from producer.transaction import Transaction
from shared.job.model import AsOf

HISTORY_FILE = Path("~/.srdb_history")
NAMES_SQL = ("SELECT m.name, p.name FROM sqlite_schema AS m JOIN pragma_table_info(m.name) AS p "
             "WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_srdb_%' "
             "ORDER BY m.name, p.cid")


class Screen:
    def __init__(self, client: Client, database: str, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                 history_file: Path | None = HISTORY_FILE, timeout: float | None = None,
                 job_timeout: float | None = None, interactive: bool = True) -> None:
        self.client, self.database, self.screen, self.err = client, database, out, err
        self.history_file = history_file.expanduser() if history_file else None
        self.timeout, self.job_timeout = timeout, job_timeout
        self.interactive = interactive
        # At a terminal, a boxed table with headers; in a script, sqlite3's own defaults: list mode, values
        # between |, no headers, NULL as nothing — so `echo "SELECT 1, 2;" | srdb shell` prints 1|2.
        self.mode = "table" if interactive else "list"
        self.headers = interactive
        self.nullvalue = "NULL" if interactive else ""
        self.widths: list[int] = []  # .width: kept and shown, as sqlite3 keeps it for its column mode
        self.bail = not interactive
        self.timer = False
        self.as_of: AsOf | None = None
        self.output: TextIO | None = None  # .output FILE
        self.once = False  # .once FILE: back to the screen after one result
        self.failed = False
        self.line_number = 0
        self.tx: Transaction | None = None  # BEGIN … COMMIT: an optimistic transaction (producer/transaction.py)
        self.names = Names(self._table_columns)  # for completion at the prompt (shell/editor.py)

    def _table_columns(self) -> list[tuple[str, str]]:
        """(table, column) of every table and view of the database: one read job, run in the background."""
        result = self.client.query(self.database, NAMES_SQL, timeout=self.timeout)
        return [(str(table), str(column)) for table, column in self.client.store.iter_rows(result)]

    @property
    def out(self) -> TextIO:
        return self.output or self.screen

    def result(self, text: str) -> None:
        """What a statement or command shows: to the screen, or to .output / .once's file. A file that
        refuses the write (a full disk, ``/proc``) is said so, and output goes back to the screen."""
        try:
            print(text, file=self.out, flush=True)
        except OSError as exc:
            name = getattr(self.output, "name", "the output file")
            self._close_output()
            self.error(f"cannot write {name}: {exc.strerror or exc}; output goes to the screen again")
            print(text, file=self.screen, flush=True)
            return
        if self.once:
            self._close_output()

    def say(self, text: str) -> None:
        print(text, file=self.screen, flush=True)

    def note(self, text: str) -> None:
        """A remark about a result (rows changed, a database created): on the screen, never in a file."""
        print(text, file=self.screen if self.interactive else self.err, flush=True)

    def error(self, text: str) -> bool:
        where = "" if self.interactive else f"near line {self.line_number}: "
        print(f"Error: {where}{text}", file=self.err, flush=True)
        self.failed = True
        return False

    @property
    def prompt(self) -> str:
        """``srdb:shop> ``; ``srdb:shop@41> `` while reading an old snapshot; ``srdb:shop*> `` in a transaction."""
        return f"srdb:{self.database}{'' if self.as_of is None else f'@{self.as_of}'}{'*' if self.tx else ''}> "

    def _load_history(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover - every Unix Python has it
            return
        readline.set_history_length(1000)
        if self.history_file and self.history_file.exists():
            readline.read_history_file(self.history_file)

    def _save_history(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover
            return
        if self.history_file:
            try:
                readline.write_history_file(self.history_file)
            except OSError as exc:
                self.error(f"history not saved to {self.history_file}: {exc.strerror}")

    def _open_output(self, name: str) -> bool | None:
        try:
            self.output = open(Path(name).expanduser(), "w", encoding="utf-8")  # noqa: SIM115 - closed by .output
        except OSError as exc:
            return self.error(f"cannot write {name}: {exc.strerror}") or None
        return None

    def _close_output(self) -> None:
        output, self.output, self.once = self.output, None, False
        if output is not None:
            try:
                output.close()
            except OSError as exc:
                self.error(f"cannot write {output.name}: {exc.strerror or exc}")
