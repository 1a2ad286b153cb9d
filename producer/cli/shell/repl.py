"""The shell's loop: lines to statements and dot-commands, each statement a job, BEGIN … COMMIT a transaction.

Statements end with ``;`` and may span lines; each one is a job, submitted and awaited. Ctrl-C
while waiting cancels the job if no worker has finished it, and keeps the shell; Ctrl-C at the
prompt drops the statement being typed; Ctrl-D or ``.quit`` leaves. Lines are kept in a history
file (``~/.srdb_history``) and recalled with the arrow keys.

Script mode, as sqlite3's: when the input is not a terminal (``srdb shell --db d < script.sql``), or
with ``-f FILE`` or ``-c SQL``, there is no banner and no prompt, and the first error stops the
script (unless ``.bail off``) with exit status 1, naming the line it happened near.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from producer.cli.output import rows_text
from producer.cli.shell.dot import DotCommands
from producer.cli.shell.editor import LineEditor, ShellCompleter, interactive_terminal
from producer.cli.sqltext import statements_of
from producer.cli.waiting import Speaker
from shared.errors import JobFailed, SerializationFailure, SrdbError, describe
from shared.job.classify import is_read_statement
from shared.job.result import JobResult, JobState
from shared.names import new_job_id

_TX_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|END|ROLLBACK)(?:\s+(?:DEFERRED|IMMEDIATE|EXCLUSIVE))?"
                         r"(?:\s+TRANSACTION)?\s*;?\s*", re.IGNORECASE)


class Shell(DotCommands):
    def run(self, read_line: Callable[[str], str] | None = None) -> int:
        """Read and run lines until the end of the input or ``.quit``; 1 when a statement failed. Without
        ``read_line``: the line editor on a terminal a person types at (shell/editor.py), else ``input``."""
        editor = read_line is None and self.interactive and interactive_terminal()
        if editor:
            self.names.refresh()
            read_line = LineEditor(self.history_file, ShellCompleter(self._commands, self.names)).read
        elif self.interactive:
            self._load_history()
        if self.interactive:
            self.say(f"srdb shell: database {self.database}. Statements end with ';'. .help for help.")
        self._consume(read_line or input, interactive=self.interactive)
        self._close_output()
        if self.interactive and not editor:
            self._save_history()
        return 1 if self.failed and not self.interactive else 0

    def _consume(self, read_line: Callable[[str], str], *, interactive: bool) -> bool:
        """Run lines — dot-commands and statements — until the input ends; False once ``.quit`` asked to
        stop (or ``.bail`` met an error). ``.read`` feeds its file through here too."""
        buffer: list[str] = []
        while not (self.failed and self.bail):
            prompt = ("   ...> " if buffer else self.prompt) if interactive else ""
            try:
                line = read_line(prompt)
            except EOFError:
                if interactive:
                    self.say("")
                break
            except KeyboardInterrupt:
                self.say("^C")
                buffer.clear()
                continue
            self.line_number += 1
            if not buffer and not line.strip():
                continue  # an empty line between statements, as sqlite3 takes it
            if not buffer and line.strip().startswith("."):
                if not self.command(line.strip()):
                    return False
                continue
            buffer.append(line)
            text = "\n".join(buffer)
            if sqlite3.complete_statement(text):
                buffer.clear()
                try:
                    self.run_sql(text)
                except KeyboardInterrupt:
                    self.error("interrupted")
        if buffer and not (self.failed and self.bail) and "".join(buffer).strip():
            self.error(f"incomplete statement at the end of the input: {' '.join(buffer).strip()[:80]}")
        return not (self.failed and self.bail)

    def run_lines(self, lines: Iterable[str]) -> int:
        """Script mode over ``lines`` (``-f FILE``, ``-c SQL``, or stdin that is not a terminal)."""
        feed = iter(lines)

        def read_line(prompt: str) -> str:
            try:
                return next(feed).rstrip("\n")
            except StopIteration:
                raise EOFError from None

        return self.run(read_line)

    def run_sql(self, text: str) -> None:
        """Run each statement of ``text`` in turn; an error stops the rest, as in sqlite3."""
        for statement in statements_of(text):
            if not self.run_statement(statement):
                return

    def run_statement(self, sql: str) -> bool:
        control = _TX_CONTROL.fullmatch(sql)
        if control is not None:
            return self._control(control.group(1).upper())
        if self.tx is not None:
            return self._in_transaction(sql)
        started = time.monotonic()
        job_id = new_job_id()  # known before it is sent, so Ctrl-C at any point can cancel it
        try:
            self.client.submit(self.database, sql, job_id=job_id, as_of=self.as_of,
                               read_only=self.as_of is not None, timeout=self.job_timeout)
            result = self.client.wait(job_id, self.timeout,
                                      on_slow=Speaker(self.err, live=False, quiet=not self.interactive))
        except KeyboardInterrupt:
            return self._cancel(job_id, sql)
        except SrdbError as exc:
            return self.error(f"{exc.type}: {exc}")
        ok = self.show(result)
        if ok and not _reads(sql):
            self.names.refresh()  # it may have changed the schema: completion learns the new names
        if self.timer:
            total = time.monotonic() - started
            worker = result.timings.get("run_ms", 0.0) / 1000
            snapshot = f", snapshot v{result.version}" if result.version is not None else ""
            self.say(f"Run Time: total {total:.3f}s, in the worker {worker:.3f}s{snapshot}")
        return ok

    def _control(self, word: str) -> bool:
        """BEGIN, COMMIT (END) and ROLLBACK, as SQLite's shell takes them."""
        if word == "BEGIN":
            if self.tx is not None:
                return self.error("cannot start a transaction within a transaction")
            if self.as_of is not None:
                return self.error("a transaction writes: turn .as_of off first")
            self.tx = self.client.transaction(self.database, timeout=self.timeout, job_timeout=self.job_timeout,
                                              on_slow=Speaker(self.err, live=False, quiet=not self.interactive))
            return True
        tx, self.tx = self.tx, None
        if tx is None:
            return self.error(f"cannot {word.lower()} - no transaction is active")
        if word == "ROLLBACK":
            tx.rollback()
            return True
        try:
            tx.commit()
        except SerializationFailure as exc:
            return self.error(f"SerializationFailure: {exc}")
        except SrdbError as exc:
            return self.error(f"{exc.type}: {exc}")
        return True

    def _in_transaction(self, sql: str) -> bool:
        assert self.tx is not None
        try:
            result = self.tx.execute(sql)
        except KeyboardInterrupt:
            return self.error("interrupted; the statement is not part of the transaction")
        except JobFailed as exc:
            return self.error(describe(exc.error))
        except SrdbError as exc:
            return self.error(f"{exc.type}: {exc}")
        return self.show(result)

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
        if result.created:
            self.note(f"created database {result.database}")
        if result.columns:
            rows = list(self.client.store.iter_rows(result))
            self.result(rows_text(result.columns, rows, self.mode, headers=self.headers, nullvalue=self.nullvalue))
        elif result.rowcount and self.interactive:
            self.note(f"{result.rowcount} row{'s' if result.rowcount != 1 else ''} changed")
        return True

    def _commands(self) -> dict[str, Callable[[list[str]], bool | None]]:
        return {**super()._commands(), ".read": self._read}

    def _read(self, args: list[str]) -> bool | None:
        if len(args) != 1:
            return self.error("usage: .read FILE") or None
        try:
            lines = iter(Path(args[0]).expanduser().read_text().splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            return self.error(f"cannot read {args[0]}: {getattr(exc, 'strerror', None) or exc}") or None

        def next_line(_prompt: str) -> str:
            try:
                return next(lines)
            except StopIteration:
                raise EOFError from None

        # Its lines as if typed: dot-commands run as commands, never sent as SQL. .quit there ends the shell.
        return None if self._consume(next_line, interactive=False) else False


def _reads(sql: str) -> bool:
    try:
        return is_read_statement(sql)
    except SrdbError:
        return False
