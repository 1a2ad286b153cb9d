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
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.awserrors import error_code
from shared.errors import Cancelled, ConstraintViolation, Forbidden, InfrastructureError, InternalError, InvalidJob
from shared.guard import Guard
from shared.job.keys import rejects_key
from shared.job.model import Job
from shared.load import parquet
from shared.load.reader import LoadError, RowError, open_text, rows
from shared.load.spec import LoadSpec, Source
from shared.load.types import TEXT, Inference, JsonColumns, json_value
from shared.names import sql_identifier
from shared.s3 import is_missing, storage_error
from worker.execute import Outcome, job_error
from worker.foreign_keys import is_broken_key, keys_of
from worker.sources import SourcePolicy

REPORT_COLUMNS = ["rows_loaded", "rows_rejected", "bytes", "reject_key"]
STAGING = "temp.srdb_load_staging"


class Loader:
    """Runs load jobs for the write stage. ``open_source``: the bytes of one staged object;
    ``put``: store an object in the bucket (the reject file)."""

    def __init__(self, open_source: Callable[[Source], tuple[IO[bytes], int]],
                 put: Callable[[str, bytes], None], policy: SourcePolicy) -> None:
        self.open_source, self.put, self.policy = open_source, put, policy

    def run(self, conn: sqlite3.Connection, guard: Guard, job: Job, budget: float) -> Outcome:
        """Load on ``conn`` inside the caller's transaction; a failure is the outcome, never raised."""
        assert job.load is not None
        started = time.monotonic()
        try:
            for source in job.load.sources:
                self.policy.check(source, job.job_id)
            with guard.job(budget):
                loaded, rejects, size = _Load(conn, job.load, self.open_source).run()
        except Forbidden as exc:
            return Outcome.failed(job.job_id, Forbidden(f"{exc} (job {job.job_id})"), _ms(started))
        except (LoadError, InvalidJob, ConstraintViolation) as exc:
            return Outcome.failed(job.job_id, type(exc)(f"{exc} (job {job.job_id})"), _ms(started))
        except sqlite3.Error as exc:
            return Outcome.failed(job.job_id, job_error(exc, guard, None, budget), _ms(started))
        except (InfrastructureError, OSError):
            raise  # S3 failed: the job goes back to the queue
        except Exception as exc:  # confined: this load fails alone, whatever was raised
            return Outcome.failed(job.job_id, InternalError.wrapping(exc), _ms(started))
        if guard.cancelled.is_set():  # cancelled after its last row: not committed yet, so not applied
            return Outcome.failed(job.job_id, Cancelled("the load was cancelled; nothing of it was committed"),
                                  _ms(started))
        reject_key = None
        if rejects:
            reject_key = rejects_key(job.job_id)
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
        self._json = JsonColumns()  # JSON Lines: each key's staging column, and its type

    def run(self) -> tuple[int, list[tuple[str, int, str | None, str]], int]:
        spec, table = self.spec, sql_identifier(self.spec.table)
        exists = self._table_columns() is not None
        if exists and spec.if_exists == "fail":
            raise LoadError(f"table {spec.table} exists already (--if-exists fail)")
        if exists and spec.if_exists == "replace":
            self.conn.execute(f"DROP TABLE {table}")
            exists = False
        if not exists and spec.schema is not None:
            self.conn.execute(f"CREATE TABLE {table} ({spec.schema})")
            exists = True
        if spec.format == "parquet":  # typed by its schema: nothing to learn, no staging
            return self._parquet(table, self._table_columns() if exists else None), self.rejects, self.bytes
        if exists:
            target = self._table_columns() or []
            loaded = self._insert(table, target, None)
            return loaded, self.rejects, self.bytes
        inference = Inference()
        loaded = self._insert(STAGING, None, inference)
        if spec.format == "jsonl":
            self.columns, learnt = list(self._json.keys), self._json.types()
        else:
            learnt = inference.result(len(self.columns or []))
        columns = self.columns or []
        if not columns:
            raise LoadError(f"{spec.sources[0].name}: no rows and no header: there is nothing to make "
                            f"table {spec.table} from")
        types = [TEXT] * len(columns) if spec.types == "text" else learnt
        definition = ", ".join(f"{sql_identifier(c)} {t}" for c, t in zip(columns, types, strict=True))
        self.conn.execute(f"CREATE TABLE {table} ({definition})")
        if self._staging_made():  # a file of a header alone makes the table and nothing else
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
                if target is None and self.spec.format == "jsonl":
                    loaded += self._stage_json(source, raw)
                    continue
                records = self._records(source, raw, target, inference)
                first = next(records, None)
                if first is None:
                    continue
                assert self.columns is not None
                width = len(self.columns)
                if target is None and not self._staging_made():
                    staged = ", ".join(f"c{i}" for i in range(width))
                    self.conn.execute(f"CREATE TABLE {STAGING} ({staged})")
                names = ", ".join(sql_identifier(c) for c in self.columns) if target is not None else ", ".join(
                    f"c{i}" for i in range(width))
                sql = f"INSERT INTO {into} ({names}) VALUES ({', '.join('?' * width)})"
                loaded += self._execute(sql, _chain(first, records))
        return loaded

    def _parquet(self, table: str, target: list[str] | None) -> int:
        """Parquet files into ``table`` (made from the first file's schema when ``target`` is None)."""
        loaded = 0
        for source in self.spec.sources:
            raw, size = self.open_source(source)
            self.bytes += size
            with contextlib.closing(raw), tempfile.NamedTemporaryFile(suffix=".parquet") as local:
                shutil.copyfileobj(raw, local, 1024 * 1024)
                local.flush()
                columns, types, values = parquet.read(Path(local.name), source.name)
                if self.columns is not None and columns != self.columns:
                    raise LoadError(f"{source.name}: its columns ({', '.join(columns)}) differ from the first "
                                    f"file's ({', '.join(self.columns)})")
                self.columns = columns
                if target is None:
                    if self.spec.types == "text":
                        types = [TEXT] * len(types)
                    definition = ", ".join(f"{sql_identifier(c)} {t}" for c, t in zip(columns, types, strict=True))
                    self.conn.execute(f"CREATE TABLE {table} ({definition})")
                    target = columns
                missing = [c for c in columns if c not in target]
                if missing:
                    raise LoadError(f"{source.name}: table {self.spec.table} has no column {', '.join(missing)}")
                names = ", ".join(sql_identifier(c) for c in columns)
                sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
                loaded += self._execute(sql, self._numbered(source, values))
        return loaded

    def _numbered(self, source: Source, values: Iterator[list[Any]]) -> Iterator[list[Any]]:
        for row, value in enumerate(values, start=1):
            self.where = (source.name, row)
            yield value

    def _stage_json(self, source: Source, raw: IO[bytes]) -> int:
        """JSON Lines into staging, each key a column (shared.load.types.JsonColumns: the values as SQLite
        takes them, the types learnt as they pass). A record with a key not seen before adds its column and
        goes on."""
        records = rows(open_text(raw, self.spec), self.spec, source.name)
        loaded = 0
        carry: dict[str, Any] | None = None
        while True:
            for key in carry or ():
                if key not in self._json.keys:
                    self._add_key(key)
            held: list[dict[str, Any]] = []
            values = self._json_batch(source, records, carry, held)
            first = next(values, None)
            if first is not None:
                loaded += self._execute(self._staging_insert(len(self._json.keys)), _chain(first, values))
            if not held:
                return loaded
            carry = held[0]

    def _json_batch(self, source: Source, records: Iterator[tuple[int, list[Any]]], first: dict[str, Any] | None,
                    held: list[dict[str, Any]]) -> Iterator[list[Any]]:
        """Rows for the staging columns there are, until a record brings a new key (put in ``held``)."""
        if first is not None:
            yield self._json.row(first)
        for line, fields in records:
            self.where = (source.name, line)
            record = fields[0]
            if not self._json.keys:  # the very first record names the first columns
                for key in record:
                    self._add_key(key)
            elif not record.keys() <= self._json.keys.keys():
                held.append(record)
                return
            yield self._json.row(record)

    def _add_key(self, key: str) -> None:
        if not key or '"' in key:
            name, line = self.where
            raise LoadError(f"{name}: line {line}: the key {key!r} cannot name a column (empty, or it holds a "
                            "double quote): load into a table made with --schema")
        index = self._json.add(key)
        if index == 0:
            self.conn.execute(f"CREATE TABLE {STAGING} (c0)")
        else:
            self.conn.execute(f"ALTER TABLE {STAGING} ADD COLUMN c{index}")

    def _staging_insert(self, width: int) -> str:
        return f"INSERT INTO {STAGING} ({', '.join(f'c{i}' for i in range(width))}) VALUES ({', '.join('?' * width)})"

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
                message = str(exc)
                if is_broken_key(exc):
                    message = f"{message}: {keys_of(self.conn, self.spec.table)}"
                self._reject(RowError(line, column, message), name, "")
            finally:
                cursor.close()
                cursor = self.conn.cursor()

    def _records(self, source: Source, raw: IO[bytes], target: list[str] | None,
                 inference: Inference | None) -> Iterator[list[Any]]:
        spec = self.spec
        stream = open_text(raw, spec)
        header: list[str] | None = None
        width = 0
        for line, fields in rows(stream, spec, source.name):
            self.where = (source.name, line)
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
