"""The shell's dot-commands, as sqlite3's: .tables, .schema, .dump, .import, .mode, .output, …"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from producer.cli.args import parse_as_of
from producer.cli.dump import dump_lines
from producer.cli.output import MODES
from producer.cli.shell.screen import Screen
from shared.errors import JobFailed, SrdbError, describe
from shared.job.model import AsOf, Job
from shared.job.values import decode_row
from shared.names import sql_identifier

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
.show                   the settings above
.width NUM ...          column widths, kept and shown (sqlite3's column mode; the tables here size themselves)
.as_of VERSION|TIME|off read an old snapshot (now: {as_of})
.read FILE              run the statements in FILE
BEGIN; … COMMIT; or ROLLBACK;  a transaction: its statements see its writes, nobody else does until
                        COMMIT, which fails (SerializationFailure) if another write committed first
.quit                   leave (Ctrl-D does too)
SQL ends with ; and may span lines. Ctrl-C cancels a wait, or drops the statement being typed."""
SCHEMA_SQL = ("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL "
              "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_srdb_%'")



class DotCommands(Screen):
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
                ".show": self._show, ".width": self._width, ".quit": lambda args: False, ".exit": lambda args: False}

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

    def _show(self, args: list[str]) -> None:
        """The settings, as sqlite3's .show prints them."""
        output = getattr(self.output, "name", "stdout")
        shown = {"headers": _on(self.headers), "mode": self.mode, "nullvalue": f'"{self.nullvalue}"',
                 "output": output, "colseparator": '"|"', "rowseparator": '"\\n"', "bail": _on(self.bail),
                 "timer": _on(self.timer), "as_of": str(self.as_of or "off"),
                 "width": " ".join(str(w) for w in self.widths)}
        self.result("\n".join(f"{name:>12}: {value}" for name, value in shown.items()))

    def _width(self, args: list[str]) -> bool | None:
        try:
            self.widths = [int(a) for a in args]
        except ValueError:
            return self.error("usage: .width NUM NUM ...") or None
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

    def _as_of(self, args: list[str]) -> bool | None:
        if len(args) != 1:
            return self.error("usage: .as_of VERSION|TIME|off") or None
        value = args[0]
        if value == "off":
            self.as_of = None
            return None
        as_of: AsOf = parse_as_of(value)
        try:
            Job.create(self.database, "SELECT 1", as_of=as_of)  # the checks a job gets
        except SrdbError as exc:
            return self.error(f"{value!r} is not a version number or an ISO 8601 time: {exc}") or None
        self.as_of = as_of
        return None

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


def _on(flag: bool) -> str:
    return "on" if flag else "off"
