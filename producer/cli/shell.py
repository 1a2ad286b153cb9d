"""``srdb shell --db NAME``: an SQL shell in the manner of the sqlite3 shell.

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
import shlex
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from producer.cli.dump import dump_lines
from producer.cli.output import MODES, rows_text
from producer.cli.sqltext import statements_of
from producer.cli.waiting import Speaker
from producer.client import Client
from producer.transaction import Transaction
from shared.errors import JobFailed, SerializationFailure, SrdbError, describe
from shared.job.classify import is_read_statement
from shared.job.model import AsOf, Job
from shared.job.result import JobResult, JobState
from shared.job.values import decode_row
from shared.names import new_job_id, sql_identifier

HISTORY_FILE = Path("~/.srdb_history")
HELP = """\
.help                   this list
.tables                 the tables and views of this database
.schema [TABLE]         CREATE statements, of every table or of one
.indexes [TABLE]        the indexes, of every table or of one
.databases              the databases in this stack (* marks this one)
.dump [TABLE]           the SQL that makes the database (or one table) again
.import [--csv] FILE TABLE  load a CSV file (header row = column names) into TABLE
.mode MODE              how results are printed: {modes} (now: {mode})
.headers on|off         column names above the rows (now: {headers})
.nullvalue TEXT         how NULL is shown (now: {nullvalue!r})
.output [FILE]          send results to FILE, or back to the screen
.once FILE              send the next result only to FILE
.bail on|off            stop at the first error (now: {bail})
.timer on|off           print each statement's time (now: {timer})
.as_of VERSION|TIME|off read an old snapshot (now: {as_of})
.read FILE              run the statements in FILE
BEGIN; … COMMIT; or ROLLBACK;  a transaction: its statements see its writes, nobody else does until
                        COMMIT, which fails (SerializationFailure) if another write committed first
.quit                   leave (Ctrl-D does too)
SQL ends with ; and may span lines. Ctrl-C cancels a wait, or drops the statement being typed."""
_TX_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|END|ROLLBACK)(?:\s+(?:DEFERRED|IMMEDIATE|EXCLUSIVE))?"
                         r"(?:\s+TRANSACTION)?\s*;?\s*", re.IGNORECASE)
SCHEMA_SQL = ("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL "
              "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_srdb_%'")


class Shell:
    def __init__(self, client: Client, database: str, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                 history_file: Path | None = HISTORY_FILE, timeout: float | None = None,
                 job_timeout: float | None = None, interactive: bool = True) -> None:
        self.client, self.database, self.screen, self.err = client, database, out, err
        self.history_file = history_file.expanduser() if history_file else None
        self.timeout, self.job_timeout = timeout, job_timeout
        self.interactive = interactive
        self.mode = "table"
        self.headers = True
        self.nullvalue = "NULL"
        self.bail = not interactive
        self.timer = False
        self.as_of: AsOf | None = None
        self.output: TextIO | None = None  # .output FILE
        self.once = False  # .once FILE: back to the screen after one result
        self.failed = False
        self.line_number = 0
        self.tx: Transaction | None = None  # BEGIN … COMMIT: an optimistic transaction (producer/transaction.py)

    @property
    def out(self) -> TextIO:
        return self.output or self.screen

    # -- the loop --------------------------------------------------------------------------

    def run(self, read_line: Callable[[str], str] = input) -> int:
        """Read and run lines until the end of the input or ``.quit``; 1 when a statement failed."""
        if self.interactive:
            self._load_history()
            self.say(f"srdb shell: database {self.database}. Statements end with ';'. .help for help.")
        self._consume(read_line, interactive=self.interactive)
        self._close_output()
        if self.interactive:
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
            self.tx = self.client.transaction(self.database, timeout=self.timeout, job_timeout=self.job_timeout)
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
        return {".help": self._help, ".tables": self._tables, ".schema": self._schema, ".indexes": self._indexes,
                ".indices": self._indexes, ".databases": self._databases, ".dump": self._dump,
                ".import": self._import, ".mode": self._mode, ".headers": self._headers,
                ".header": self._headers, ".nullvalue": self._nullvalue, ".output": self._output,
                ".once": self._once, ".bail": self._bail, ".timer": self._timer, ".as_of": self._as_of,
                ".read": self._read, ".quit": lambda args: False, ".exit": lambda args: False}

    def _help(self, args: list[str]) -> None:
        self.say(HELP.format(modes="|".join(MODES), mode=self.mode, headers=_on(self.headers),
                             nullvalue=self.nullvalue, bail=_on(self.bail), timer=_on(self.timer),
                             as_of=self.as_of or "off"))

    def _tables(self, args: list[str]) -> None:
        rows = self._query("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') "
                           "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_srdb_%' ORDER BY name")
        if rows is not None:
            self.result("  ".join(str(r[0]) for r in rows))

    def _schema(self, args: list[str]) -> None:
        for _, _, _, sql in self._schema_rows(args[0] if args else None, "tbl_name, type DESC, name") or []:
            self.result(f"{sql};")

    def _indexes(self, args: list[str]) -> None:
        sql = "SELECT name FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE '_srdb_%'"
        rows = self._query(sql + (" AND tbl_name = ?" if args else "") + " ORDER BY name", args[:1])
        for row in rows or []:
            self.result(str(row[0]))

    def _databases(self, args: list[str]) -> bool | None:
        try:
            names = [d.name for d in self.client.databases()]
        except SrdbError as exc:
            return self.error(f"{exc.type}: {exc}") or None
        for name in sorted(set(names) | {self.database}):
            self.result(("* " if name == self.database else "  ") + name)
        return None

    def _dump(self, args: list[str]) -> bool | None:
        schema = self._schema_rows(args[0] if args else None, "type != 'table', name")
        if schema is None:
            return None
        lines = dump_lines(((kind, name, sql) for kind, name, _, sql in schema),
                           lambda table: [decode_row(r) for r in self._query(f"SELECT * FROM {sql_identifier(table)}")
                                          or []])
        self.result("\n".join([f"-- srdb dump of database {self.database}", *lines]))
        return None

    def _import(self, args: list[str]) -> bool | None:
        from producer.cli.load import load_csv

        args = [a for a in args if a != "--csv"]
        if len(args) != 2:
            return self.error("usage: .import [--csv] FILE TABLE") or None
        path = Path(args[0]).expanduser()
        if not path.is_file():
            return self.error(f"cannot open {args[0]}: no such file") or None
        try:
            report = load_csv(self.client, self.database, args[1], path, progress=self.interactive,
                              job_timeout=self.job_timeout)
        except JobFailed as exc:
            return self.error(describe(exc.error)) or None
        except SrdbError as exc:
            return self.error(f"{exc.type}: {exc}") or None
        self.note(f"imported {report.rows} rows into {args[1]}")
        return None

    def _mode(self, args: list[str]) -> bool | None:
        if len(args) != 1 or args[0] not in MODES:
            return self.error(f"usage: .mode {'|'.join(MODES)}") or None
        self.mode = args[0]
        return None

    def _headers(self, args: list[str]) -> bool | None:
        return self._switch(args, ".headers", "headers")

    def _bail(self, args: list[str]) -> bool | None:
        return self._switch(args, ".bail", "bail")

    def _timer(self, args: list[str]) -> bool | None:
        return self._switch(args, ".timer", "timer")

    def _switch(self, args: list[str], command: str, attribute: str) -> bool | None:
        if len(args) != 1 or args[0] not in ("on", "off"):
            return self.error(f"usage: {command} on|off") or None
        setattr(self, attribute, args[0] == "on")
        return None

    def _nullvalue(self, args: list[str]) -> bool | None:
        if len(args) != 1:
            return self.error("usage: .nullvalue TEXT") or None
        self.nullvalue = args[0]
        return None

    def _output(self, args: list[str]) -> bool | None:
        self._close_output()
        if args and args[0] not in ("stdout", "-"):
            return self._open_output(args[0])
        return None

    def _once(self, args: list[str]) -> bool | None:
        if len(args) != 1:
            return self.error("usage: .once FILE") or None
        self._close_output()
        self._open_output(args[0])
        self.once = True
        return None

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

    def _as_of(self, args: list[str]) -> bool | None:
        if len(args) != 1:
            return self.error("usage: .as_of VERSION|TIME|off") or None
        value = args[0]
        if value == "off":
            self.as_of = None
            return None
        as_of: AsOf = int(value) if value.isdigit() else value
        try:
            Job.create(self.database, "SELECT 1", as_of=as_of)  # the checks a job gets
        except SrdbError as exc:
            return self.error(f"{value!r} is not a version number or an ISO 8601 time: {exc}") or None
        self.as_of = as_of
        return None

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

    def _schema_rows(self, table: str | None, order: str) -> list[list[Any]] | None:
        sql = SCHEMA_SQL + (" AND tbl_name = ?" if table else "") + f" ORDER BY {order}"
        return self._query(sql, [table] if table else [])

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


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _reads(sql: str) -> bool:
    try:
        return is_read_statement(sql)
    except SrdbError:
        return False
