"""A load job (COPY): its files, streamed from S3, into a table inside the job's own transaction, so a load
is all its rows or none and, like any write job, runs once (worker.transaction records it).

- An existing table keeps its declared types (SQLite's affinity converts each value as the table says).
- A new table gets ``schema`` when the job gives one; otherwise each column is INTEGER or REAL only if
  every value in it reads back exactly as written (shared.load.types), else TEXT — ``types: text`` makes
  every column TEXT. The rows go to a TEMP staging table while the types are learnt, then into the table
  in one ``INSERT … SELECT``: the files are read once.
- A row that cannot be loaded (a field too many or too few, a constraint it breaks) fails the load,
  naming the file, the line, the column and the job — or, with ``max_errors``, is set aside in a reject
  file (``results/<job>/rejects.csv``) until more than ``max_errors`` are.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.awserrors import error_code
from shared.errors import ConstraintViolation, InfrastructureError, InternalError, InvalidJob
from shared.guard import Guard
from shared.job.model import Job
from shared.load.reader import LoadError, RowError, open_text, rows
from shared.load.spec import LoadSpec, Source
from shared.load.types import INTEGER, REAL, TEXT, Inference, json_value
from shared.s3 import is_missing, storage_error
from worker.execute import Outcome, job_error

REPORT_COLUMNS = ["rows_loaded", "rows_rejected", "bytes", "reject_key"]
STAGING = "temp.srdb_load_staging"


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Loader:
    """Runs load jobs for the write stage. ``open_source``: the bytes of one staged object;
    ``put``: store an object in the bucket (the reject file)."""

    def __init__(self, open_source: Callable[[Source], tuple[IO[bytes], int]],
                 put: Callable[[str, bytes], None]) -> None:
        self.open_source, self.put = open_source, put

    def run(self, conn: sqlite3.Connection, guard: Guard, job: Job, budget: float) -> Outcome:
        """Load on ``conn`` inside the caller's transaction; a failure is the outcome, never raised."""
        assert job.load is not None
        started = time.monotonic()
        try:
            with guard.job(budget):
                loaded, rejects, size = _Load(conn, job.load, self.open_source).run()
        except (LoadError, InvalidJob, ConstraintViolation) as exc:
            return Outcome.failed(job.job_id, type(exc)(f"{exc} (job {job.job_id})"), _ms(started))
        except sqlite3.Error as exc:
            return Outcome.failed(job.job_id, job_error(exc, guard, None, budget), _ms(started))
        except (InfrastructureError, OSError):
            raise  # S3 failed: the job goes back to the queue
        except Exception as exc:  # confined: this load fails alone, whatever was raised
            return Outcome.failed(job.job_id, InternalError.wrapping(exc), _ms(started))
        reject_key = None
        if rejects:
            reject_key = f"results/{job.job_id}/rejects.csv"
            self.put(reject_key, _rejects_csv(rejects))
        return Outcome(job.job_id, True, REPORT_COLUMNS, ["INTEGER", "INTEGER", "INTEGER", "TEXT"],
                       [[loaded, len(rejects), size, reject_key]], rowcount=loaded, run_ms=_ms(started))


class _Load:
    def __init__(self, conn: sqlite3.Connection, spec: LoadSpec,
                 open_source: Callable[[Source], tuple[IO[bytes], int]]) -> None:
        self.conn, self.spec, self.open_source = conn, spec, open_source
        self.rejects: list[tuple[str, int, str | None, str]] = []
        self.bytes = 0
        self.columns: list[str] | None = None
        self.where = (spec.sources[0].name, 0)  # the file and line of the row being loaded

    def run(self) -> tuple[int, list[tuple[str, int, str | None, str]], int]:
        spec, table = self.spec, identifier(self.spec.table)
        exists = self._table_columns() is not None
        if exists and spec.if_exists == "fail":
            raise LoadError(f"table {spec.table} exists already (--if-exists fail)")
        if exists and spec.if_exists == "replace":
            self.conn.execute(f"DROP TABLE {table}")
            exists = False
        if not exists and spec.schema is not None:
            self.conn.execute(f"CREATE TABLE {table} ({spec.schema})")
            exists = True
        if exists:
            target = self._table_columns() or []
            loaded = self._insert(table, target, None)
            return loaded, self.rejects, self.bytes
        inference = Inference()
        loaded = self._insert(STAGING, None, inference)
        if spec.format == "jsonl":
            self.columns, json_types = self._json_columns() if self._staging_made() else ([], [])
            inference.types = list(json_types)
        columns = self.columns or []
        if not columns:
            raise LoadError(f"{spec.sources[0].name}: no rows and no header: there is nothing to make "
                            f"table {spec.table} from")
        types = [TEXT] * len(columns) if spec.types == "text" else inference.result(len(columns))
        definition = ", ".join(f"{identifier(c)} {t}" for c, t in zip(columns, types, strict=True))
        self.conn.execute(f"CREATE TABLE {table} ({definition})")
        if spec.format == "jsonl":  # staged as one JSON text a record: each key becomes its column
            picks = ", ".join(_json_pick(c, t) for c, t in zip(columns, types, strict=True))
            self.conn.execute(f"INSERT INTO {table} SELECT {picks} FROM {STAGING} ORDER BY rowid")
        else:
            self.conn.execute(f"INSERT INTO {table} SELECT * FROM {STAGING}")
        self.conn.execute(f"DROP TABLE {STAGING}")
        return loaded, self.rejects, self.bytes

    def _table_columns(self) -> list[str] | None:
        found = self.conn.execute("SELECT name FROM pragma_table_info(?)", (self.spec.table,)).fetchall()
        return [r[0] for r in found] or None

    def _insert(self, into: str, target: list[str] | None, inference: Inference | None) -> int:
        """Every row of every file into ``into`` (``target``: the table's columns; None: staging, made
        from the first file's columns). The rows loaded."""
        loaded = 0
        for source in self.spec.sources:
            raw, size = self.open_source(source)
            self.bytes += size
            with contextlib.closing(raw):
                records = self._records(source, raw, target, inference)
                first = next(records, None)
                if first is None:
                    continue
                assert self.columns is not None
                width = 2 if target is None and self.spec.format == "jsonl" else len(self.columns)
                if target is None and not self._staging_made():
                    staged = ", ".join(f"c{i}" for i in range(width))
                    self.conn.execute(f"CREATE TABLE {STAGING} ({staged})")
                names = ", ".join(identifier(c) for c in self.columns) if target is not None else ", ".join(
                    f"c{i}" for i in range(width))
                sql = f"INSERT INTO {into} ({names}) VALUES ({', '.join('?' * width)})"
                loaded += self._execute(sql, _chain(first, records))
        return loaded

    def _staging_made(self) -> bool:
        return bool(self.conn.execute("SELECT 1 FROM temp.sqlite_schema WHERE name = 'srdb_load_staging'")
                    .fetchone())

    def _execute(self, sql: str, values: Iterator[list[Any]]) -> int:
        """executemany over ``values``; a row SQLite refuses is rejected (or fails the load) and the rest go
        on: the rows before it stay inserted (only the failing step is undone)."""
        cursor = self.conn.cursor()
        loaded = 0
        while True:
            before = self.conn.total_changes
            try:
                cursor.executemany(sql, values)
                return loaded + self.conn.total_changes - before
            except sqlite3.IntegrityError as exc:
                loaded += self.conn.total_changes - before
                name, line = self.where
                column = _constraint_column(str(exc))
                self._reject(RowError(line, column, str(exc)), name, "")
            finally:
                cursor.close()
                cursor = self.conn.cursor()

    def _records(self, source: Source, raw: IO[bytes], target: list[str] | None,
                 inference: Inference | None) -> Iterator[list[Any]]:
        spec = self.spec
        stream = open_text(raw, spec)
        header: list[str] | None = None
        width = 0
        for line, fields in rows(stream, spec, source.name, raw=target is None):
            self.where = (source.name, line)
            if spec.format == "jsonl" and target is None:  # staged as text; SQLite reads it (see _json_columns)
                self.columns = self.columns or ["doc", "line"]
                yield [fields[0], line]
                continue
            if spec.format == "jsonl" and target is not None:
                record = fields[0]
                self.columns = list(target)
                unknown = next((key for key in record if key not in target), None)
                if unknown is not None:
                    self._reject(RowError(line, unknown, f"table {spec.table} has no column {unknown}"),
                                 source.name, _raw_json(record))
                    continue
                yield [json_value(record.get(c)) for c in target]
                continue
            if header is None:
                header = self._header(fields, source, line, target)
                width = len(header)
                if spec.header:
                    continue
            if len(fields) != width:
                self._reject(RowError(line, None, f"{len(fields)} fields where the header has {width}"),
                             source.name, _raw_csv(fields, spec))
                continue
            if inference is not None:
                inference.feed_text(fields)
            yield fields

    def _json_columns(self) -> tuple[list[str], list[str]]:
        """The staged JSON Lines records, read by SQLite's JSON functions: the first line that is not a JSON
        object fails the load; each key becomes a column, INTEGER when every value is a 64-bit integer,
        REAL when every value is a number a double holds exactly, else TEXT."""
        bad = self.conn.execute(f"SELECT c1, c0 FROM {STAGING} WHERE CASE WHEN json_valid(c0) THEN "
                                "json_type(c0) != 'object' ELSE 1 END ORDER BY rowid LIMIT 1").fetchone()
        if bad is not None:
            line, text = bad
            try:
                kind = type(json.loads(text)).__name__
                why = f"a JSON Lines record must be an object, not {kind}"
            except ValueError as exc:
                why = f"not JSON: {exc}"
            raise LoadError(f"{self._file_of(line)}: line {line}: {why}")
        found = self.conn.execute(
            "SELECT j.key, max(j.type IN ('text', 'true', 'false', 'object', 'array')), max(j.type = 'real'), "
            "max(j.type = 'integer' AND typeof(j.atom) != 'integer'), "
            "max(j.type = 'integer' AND abs(j.atom) > 9007199254740992), max(j.type = 'integer') "
            f"FROM {STAGING} AS s, json_each(s.c0) AS j GROUP BY j.key ORDER BY min(s.rowid), min(j.id)").fetchall()
        columns, types = [], []
        for key, texty, reals, huge, wide, integers in found:
            if not key or '"' in key:
                raise LoadError(f"{self.spec.sources[0].name}: the key {key!r} cannot name a column (empty, or it "
                                "holds a double quote): load into a table made with --schema")
            columns.append(key)
            if texty or huge or (reals and wide):
                types.append(TEXT)
            elif reals:
                types.append(REAL)
            else:
                types.append(INTEGER if integers else TEXT)
        return columns, types

    def _file_of(self, line: int) -> str:
        return self.spec.sources[0].name if len(self.spec.sources) == 1 else "a file of the load"

    def _header(self, fields: list[Any], source: Source, line: int, target: list[str] | None) -> list[str]:
        spec = self.spec
        if spec.header:
            names = ["" if f is None else str(f) for f in fields]
            if any(not n.strip() for n in names):
                raise LoadError(f"{source.name}: line {line}: the header names an empty column")
            if len(set(names)) != len(names):
                raise LoadError(f"{source.name}: line {line}: the header names a column twice")
        elif spec.columns:
            names = list(spec.columns)
        elif target is not None:
            names = list(target[: len(fields)])
        else:
            names = [f"c{i + 1}" for i in range(len(fields))]
        if self.columns is not None and names != self.columns:
            raise LoadError(f"{source.name}: line {line}: its columns ({', '.join(names)}) differ from the first "
                            f"file's ({', '.join(self.columns)})")
        if target is not None:
            missing = [n for n in names if n not in target]
            if missing:
                raise LoadError(f"{source.name}: line {line}: table {spec.table} has no column "
                                f"{', '.join(missing)}")
        self.columns = names
        return names

    def _reject(self, error: RowError, name: str, raw: str) -> None:
        if len(self.rejects) >= self.spec.max_errors:
            more = f" (more than --max-errors {self.spec.max_errors})" if self.spec.max_errors else ""
            raise LoadError(f"{error.describe(name)}{more}; nothing was loaded")
        self.rejects.append((name, error.line, error.column, error.reason + (f": {raw}" if raw else "")))


def open_source(s3: Any, source: Source) -> tuple[IO[bytes], int]:
    """A staged object's body (a stream) and its size. LoadError when it is missing or refused (the user's
    to fix); other S3 failures are the infrastructure's, and the job is retried."""
    try:
        response = s3.get_object(Bucket=source.bucket, Key=source.key)
    except ClientError as exc:
        code = error_code(exc)
        if is_missing(exc) or code in ("AccessDenied", "AllAccessDisabled", "InvalidBucketName"):
            raise LoadError(f"{source.name}: cannot be read by the worker ({code}: "
                            f"{exc.response.get('Error', {}).get('Message', '')})") from None
        raise storage_error(f"reading {source.name}", exc) from exc
    except BotoCoreError as exc:
        raise storage_error(f"reading {source.name}", exc) from exc
    return response["Body"], int(response.get("ContentLength", 0))


def _json_pick(key: str, kind: str) -> str:
    """The SQL that takes ``key`` out of a staged record: numbers of a numeric column as numbers; into a
    TEXT column, text as itself and anything else as its JSON text as written (``->`` keeps a number's
    literal: 12345678901234567890123 stays whole; true stays true)."""
    path = "'$.\"" + key.replace("'", "''").replace('"', '\\"') + "\"'"
    if kind != TEXT:
        return f"json_extract(c0, {path})"
    return (f"CASE json_type(c0, {path}) WHEN 'text' THEN json_extract(c0, {path}) WHEN 'null' THEN NULL "
            f"ELSE c0 -> {path} END")


def _chain(first: list[Any], rest: Iterator[list[Any]]) -> Iterator[list[Any]]:
    yield first
    yield from rest


def _constraint_column(message: str) -> str | None:
    # "UNIQUE constraint failed: t.id", "NOT NULL constraint failed: t.name"
    if "constraint failed: " in message:
        return message.rsplit("constraint failed: ", 1)[1].split(",")[0].split(".")[-1].strip() or None
    return None


def _raw_csv(fields: list[Any], spec: LoadSpec) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=spec.delimiter, lineterminator="").writerow(["" if f is None else f for f in fields])
    return out.getvalue()


def _raw_json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


def _rejects_csv(rejects: list[tuple[str, int, str | None, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "line", "column", "reason"])
    writer.writerows([name, line, column or "", reason] for name, line, column, reason in rejects)
    return out.getvalue().encode()


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
