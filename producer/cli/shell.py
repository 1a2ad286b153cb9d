"""``srdb shell --db NAME``: an interactive SQL shell in the manner of the sqlite3 shell.

Statements end with ``;`` and may span lines; each one is a job, submitted and awaited. Ctrl-C
while waiting cancels the job if no worker has finished it, and keeps the shell; Ctrl-C at the
prompt drops the statement being typed; Ctrl-D or ``.quit`` leaves. Lines are kept in a history
file (``~/.srdb_history``) and recalled with the arrow keys.
"""

from __future__ import annotations

import shlex
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import sqlparse

from producer.cli.output import FORMATS, render
from producer.cli.waiting import Speaker
from producer.client import Client
from shared.errors import JobFailed, SrdbError, describe
from shared.job.classify import is_read_statement
from shared.job.model import AsOf
from shared.job.result import JobResult, JobState
from shared.names import new_job_id

HISTORY_FILE = Path("~/.srdb_history")
HELP = """\
.help                 this list
.tables               the tables of this database
.schema [TABLE]       CREATE statements, of every table or of one
.mode table|csv|json  how results are printed (now: {mode})
.timer on|off         print each statement's time (now: {timer})
.as_of VERSION|TIME|off  read an old snapshot (now: {as_of})
.read FILE            run the statements in FILE
.quit                 leave (Ctrl-D does too)
SQL ends with ; and may span lines. Ctrl-C cancels a wait, or drops the statement being typed."""


class Shell:
    def __init__(self, client: Client, database: str, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                 history_file: Path | None = HISTORY_FILE, timeout: float | None = None,
                 job_timeout: float | None = None) -> None:
        self.client, self.database, self.out, self.err = client, database, out, err
        self.history_file = history_file.expanduser() if history_file else None
        self.timeout, self.job_timeout = timeout, job_timeout
        self.mode = "table"
        self.timer = False
        self.as_of: AsOf | None = None

    # -- the loop --------------------------------------------------------------------------

    def run(self, read_line: Callable[[str], str] = input) -> int:
        self._load_history()
        self.say(f"srdb shell: database {self.database}. Statements end with ';'. .help for help.")
        buffer: list[str] = []
        while True:
            prompt = "   ...> " if buffer else f"srdb:{self.database}> "
            try:
                line = read_line(prompt)
            except EOFError:
                self.say("")
                break
            except KeyboardInterrupt:
                self.say("^C")
                buffer.clear()
                continue
            if not buffer and line.strip().startswith("."):
                if not self.command(line.strip()):
                    break
                continue
            buffer.append(line)
            text = "\n".join(buffer)
            if sqlite3.complete_statement(text):
                buffer.clear()
                try:
                    self.run_sql(text)
                except KeyboardInterrupt:
                    self.error("interrupted")
        self._save_history()
        return 0

    def run_sql(self, text: str) -> None:
        """Run each statement of ``text`` in turn; an error stops the rest, as in sqlite3."""
        for statement in _statements(text):
            if not self.run_statement(statement):
                return

    def run_statement(self, sql: str) -> bool:
        started = time.monotonic()
        job_id = new_job_id()  # known before it is sent, so Ctrl-C at any point can cancel it
        try:
            self.client.submit(self.database, sql, job_id=job_id, as_of=self.as_of,
                               read_only=self.as_of is not None, timeout=self.job_timeout)
            result = self.client.wait(job_id, self.timeout, on_slow=Speaker(self.err, live=False))
        except KeyboardInterrupt:
            return self._cancel(job_id, sql)
        except SrdbError as exc:
            return self.error(f"{exc.type}: {exc}")
        ok = self.show(result)
        if self.timer:
            total = time.monotonic() - started
            worker = result.timings.get("run_ms", 0.0) / 1000
            self.say(f"Run Time: total {total:.3f}s, in the worker {worker:.3f}s, snapshot v{result.version}")
        return ok

    def _cancel(self, job_id: str, sql: str) -> bool:
        try:
            state = self.client.cancel(job_id)
        except SrdbError as exc:
            return self.error(f"interrupted; job {job_id} may still run (cancelling it failed: {exc})")
        if state is JobState.CANCELLED and self.as_of is None and not _reads(sql):
            # A write a worker picked up in the second before it shows RUNNING still commits (README, Cancel).
            return self.error(f"cancelled job {job_id}; a write a worker had begun less than a second before "
                              f"still commits: `srdb result {job_id}` shows what happened")
        if state is JobState.CANCELLED:
            return self.error(f"cancelled job {job_id}")
        if state is JobState.NOT_FOUND:
            return self.error(f"cancelled: job {job_id} was never sent")
        return self.error(f"interrupted: job {job_id} is {state.value}; `srdb result {job_id}` shows it")

    def show(self, result: JobResult) -> bool:
        if result.state is not JobState.SUCCEEDED:
            error = result.error or {"type": result.state.value, "message": "the job did not run"}
            return self.error(describe(error))
        if result.columns:
            text = render(result, self.client.store.iter_rows(result), self.mode)
            if self.mode == "table":
                text = text.rsplit("\n", 1)[0]  # the table alone; .timer tells the rest
            self.say(text)
        elif result.rowcount:
            self.say(f"{result.rowcount} row{'s' if result.rowcount != 1 else ''} changed")
        return True

    # -- dot commands ----------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run a dot command; False to leave the shell."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return self.error(f"cannot read {line!r}: {exc}") or True
        name, args = words[0].lower(), words[1:]
        handler = self._commands().get(name)
        if handler is None:
            self.error(f"unknown command {name}: .help lists them")
            return True
        return handler(args) is not False

    def _commands(self) -> dict[str, Callable[[list[str]], bool | None]]:
        return {".help": self._help, ".tables": self._tables, ".schema": self._schema, ".mode": self._mode,
                ".timer": self._timer, ".as_of": self._as_of, ".read": self._read,
                ".quit": lambda args: False, ".exit": lambda args: False}

    def _help(self, args: list[str]) -> None:
        self.say(HELP.format(mode=self.mode, timer="on" if self.timer else "off", as_of=self.as_of or "off"))

    def _tables(self, args: list[str]) -> None:
        rows = self._query("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') "
                           "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_srdb_%' ORDER BY name")
        if rows is not None:
            self.say("  ".join(str(r[0]) for r in rows))

    def _schema(self, args: list[str]) -> None:
        sql = ("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
               "AND name NOT LIKE '_srdb_%'")
        params: list[Any] = []
        if args:
            sql += " AND tbl_name = ?"
            params.append(args[0])
        rows = self._query(sql + " ORDER BY tbl_name, type DESC, name", params)
        for row in rows or []:
            self.say(f"{row[0]};")

    def _mode(self, args: list[str]) -> bool | None:
        if len(args) != 1 or args[0] not in FORMATS:
            return self.error(f"usage: .mode {'|'.join(FORMATS)}") or None
        self.mode = args[0]
        return None

    def _timer(self, args: list[str]) -> bool | None:
        if len(args) != 1 or args[0] not in ("on", "off"):
            return self.error("usage: .timer on|off") or None
        self.timer = args[0] == "on"
        return None

    def _as_of(self, args: list[str]) -> bool | None:
        if len(args) != 1:
            return self.error("usage: .as_of VERSION|TIME|off") or None
        value = args[0]
        if value == "off":
            self.as_of = None
        elif value.isdigit():
            self.as_of = int(value)
        else:
            self.as_of = value
        return None

    def _read(self, args: list[str]) -> bool | None:
        if len(args) != 1:
            return self.error("usage: .read FILE") or None
        try:
            text = Path(args[0]).expanduser().read_text()
        except OSError as exc:
            return self.error(f"cannot read {args[0]}: {exc.strerror}") or None
        self.run_sql(text)
        return None

    def _query(self, sql: str, params: list[Any] | None = None) -> list[list[Any]] | None:
        try:
            result = self.client.query(self.database, sql, params, timeout=self.timeout, as_of=self.as_of)
            return [list(r) for r in self.client.store.iter_rows(result)]
        except JobFailed as exc:
            self.error(describe(exc.error))
        except SrdbError as exc:
            self.error(f"{exc.type}: {exc}")
        except KeyboardInterrupt:
            self.error("interrupted")
        return None

    # -- output and history ----------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def error(self, text: str) -> bool:
        print(f"Error: {text}", file=self.err, flush=True)
        return False

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


def _reads(sql: str) -> bool:
    try:
        return is_read_statement(sql)
    except SrdbError:
        return False


def _statements(text: str) -> Iterator[str]:
    for statement in sqlparse.split(text):
        if sqlparse.format(statement, strip_comments=True).strip().rstrip(";").strip():
            yield statement
