"""Bulk in and out, as data tools do it: a load (COPY) stages its file in S3 and sends one job that names
it; an export streams a query's result into one file, locally or in S3.

A local file or stdin is uploaded to ``staging/<job id>/`` (multipart, parallel, bounded memory); an
``s3://bucket/key`` is read where it is, and ``s3://bucket/prefix/`` names every object under it.
The worker streams the objects into the table inside one transaction (worker.load).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import ClientSideError
from shared.job.keys import STAGING_PREFIX, staging_prefix
from shared.job.model import Job
from shared.job.result import JobResult
from shared.job.values import decode_row
from shared.load import parquet
from shared.load.reader import LoadError, open_text, rows
from shared.load.spec import LoadSpec, Source
from shared.load.types import Inference, JsonColumns
from shared.names import new_job_id

TRANSFER = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024,
                          max_concurrency=8)
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
               ".parquet": "parquet", ".pq": "parquet"}


def format_of(name: str) -> str | None:
    """``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, each perhaps with ``.gz``; None when the name says nothing."""
    lower = name.lower().removesuffix(".gz")
    return next((fmt for ext, fmt in _EXTENSIONS.items() if lower.endswith(ext)), None)


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key)."""
    rest = url.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not url.startswith("s3://") or not bucket:
        raise ClientSideError(f"{url!r} is not an s3://bucket/key URL")
    return bucket, key


@dataclass(frozen=True)
class LoadReport:
    job_id: str
    rows: int
    rejected: int
    bytes: int
    seconds: float
    version: int | None
    reject_key: str | None
    result: JobResult

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "rows_loaded": self.rows, "rows_rejected": self.rejected,
                "bytes": self.bytes, "seconds": round(self.seconds, 3), "rows_per_second": round(self.rows_per_second),
                "version": self.version}


class Bulk:
    """Loads and exports for one client (its boto3 S3 client and bucket)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    # -- in ------------------------------------------------------------------------------------

    def sources(self, source: str, job_id: str, *, progress: Callable[[int], None] | None = None,
                stdin: IO[bytes] | None = None) -> list[Source]:
        """The objects a load reads: a local file or ``-`` staged under ``staging/<job_id>/``, or the
        ``s3://`` object (or every object under an ``s3://…/`` prefix) where it is."""
        if source.startswith("s3://"):
            return self._s3_sources(source)
        key = staging_prefix(job_id) + ("stdin" if source == "-" else Path(source).name)
        try:
            if source == "-":
                self.s3.upload_fileobj(stdin or sys.stdin.buffer, self.bucket, key, Config=TRANSFER,
                                       Callback=progress)
            else:
                path = Path(source).expanduser()
                if not path.exists() or path.is_dir():
                    raise ClientSideError(f"no such file: {source}")
                if path.is_file():
                    before = path.stat()
                    self.s3.upload_file(str(path), self.bucket, key, Config=TRANSFER, Callback=progress)
                    self._unchanged(path, before, key)
                else:  # /dev/stdin, a named pipe, <(zcat …): read as a stream
                    with open(path, "rb") as stream:
                        self.s3.upload_fileobj(stream, self.bucket, key, Config=TRANSFER, Callback=progress)
        except (ClientError, BotoCoreError) as exc:
            raise ClientSideError(f"staging {source} in s3://{self.bucket}/{key}: {exc}") from exc
        return [Source(self.bucket, key, "stdin" if source == "-" else source)]

    def _unchanged(self, path: Path, before: os.stat_result, key: str) -> None:
        """A file written or truncated while it was uploaded staged a torn copy: refuse it, never load it."""
        after = path.stat()
        staged = int(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or staged != before.st_size:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            raise ClientSideError(f"{path} changed while it was uploaded ({before.st_size} bytes before, "
                                  f"{after.st_size} after, {staged} staged): nothing was loaded; load it again "
                                  "once it is complete")

    def unstage(self, sources: Iterable[Source]) -> None:
        """Delete what :meth:`sources` staged (best effort: the bucket's lifecycle rule expires the rest)."""
        for source in sources:
            if source.key.startswith(STAGING_PREFIX) and source.bucket == self.bucket:
                with contextlib.suppress(ClientError, BotoCoreError):
                    self.s3.delete_object(Bucket=source.bucket, Key=source.key)

    def preview(self, spec: LoadSpec, limit: int = 10, open_source: Callable[[Source], IO[bytes]] | None = None,
                ) -> tuple[list[str], list[str], list[list[Any]]]:
        """What a load into a new table would make of the files: columns, inferred types, first rows. Reads
        every row, as the load does, so the types are the ones the load would choose."""
        if spec.format == "parquet":
            return self._preview_parquet(spec, limit, open_source or self._open)
        inference = Inference()
        json = JsonColumns()
        columns: list[str] | None = None
        first: list[list[Any]] = []
        for source in spec.sources:
            with contextlib.closing((open_source or self._open)(source)) as raw:
                header = not spec.header
                for line, fields in rows(open_text(raw, spec), spec, source.name):
                    if spec.format == "jsonl":  # as the load stages it: every key a column
                        record = fields[0]
                        for key in record:
                            if key not in json.keys:
                                json.add(key)
                        values = json.row(record)
                    else:
                        if not header:
                            header = True
                            columns = columns or [str(f) for f in fields]
                            continue
                        columns = columns or list(spec.columns) or [f"c{i + 1}" for i in range(len(fields))]
                        if len(fields) != len(columns):
                            raise LoadError(f"{source.name}: line {line}: {len(fields)} fields where the header has "
                                            f"{len(columns)}")
                        values = fields
                        inference.feed_text(values)
                    if len(first) < limit:
                        first.append(values)
        if spec.format == "jsonl":
            columns, learnt = list(json.keys), json.types()
            first = [row + [None] * (len(columns) - len(row)) for row in first]
        else:
            columns = columns or []
            learnt = inference.result(len(columns))
        types = ["TEXT"] * len(columns) if spec.types == "text" else learnt
        return columns, types, first

    def _preview_parquet(self, spec: LoadSpec, limit: int, open_source: Callable[[Source], IO[bytes]],
                         ) -> tuple[list[str], list[str], list[list[Any]]]:
        source = spec.sources[0]
        with contextlib.closing(open_source(source)) as raw, tempfile.NamedTemporaryFile(suffix=".parquet") as local:
            shutil.copyfileobj(raw, local, 1024 * 1024)
            local.flush()
            columns, types, values = parquet.read(Path(local.name), source.name)
            first = [row for _, row in zip(range(limit), values, strict=False)]
        return columns, ["TEXT"] * len(types) if spec.types == "text" else types, first

    def fetch(self, key: str, dest: str) -> None:
        """Copy an object of the bucket to a local path or an ``s3://`` URL."""
        try:
            if dest.startswith("s3://"):
                bucket, target = split_s3(dest)
                self.s3.copy({"Bucket": self.bucket, "Key": key}, bucket, target)
            else:
                self.s3.download_file(self.bucket, key, str(Path(dest).expanduser()))
        except (ClientError, BotoCoreError) as exc:
            raise ClientSideError(f"copying s3://{self.bucket}/{key} to {dest}: {exc}") from exc

    def _s3_sources(self, url: str) -> list[Source]:
        bucket, key = split_s3(url)
        keys: list[str] = []
        if key and not key.endswith("/"):
            with contextlib.suppress(ClientError):
                self.s3.head_object(Bucket=bucket, Key=key)
                keys = [key]
        if not keys:
            try:
                for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                    keys += [str(o["Key"]) for o in page.get("Contents", []) if not str(o["Key"]).endswith("/")]
            except (ClientError, BotoCoreError) as exc:
                raise ClientSideError(f"listing {url}: {exc}") from exc
        if not keys:
            raise ClientSideError(f"nothing to load at {url}: no such object, and no object under that prefix")
        return [Source(bucket, k, f"s3://{bucket}/{k}") for k in sorted(keys)]

    def _open(self, source: Source) -> IO[bytes]:
        try:
            body: IO[bytes] = self.s3.get_object(Bucket=source.bucket, Key=source.key)["Body"]
            return body
        except (ClientError, BotoCoreError) as exc:
            raise ClientSideError(f"reading {source.name}: {exc}") from exc


def load_spec(table: str, sources: list[Source], *, input_format: str | None = None, **options: Any) -> LoadSpec:
    """The job's load: the format from ``input_format``, else from the first file's name, else CSV."""
    fmt = input_format or format_of(sources[0].name) or "csv"
    spec = replace(LoadSpec(table, tuple(sources), format=fmt), **{k: v for k, v in options.items() if v is not None})
    spec.check()
    return spec


def report(result: JobResult, seconds: float) -> LoadReport:
    row: list[Any] = result.rows[0] if result.rows else [result.rowcount, 0, 0, None]
    loaded, rejected, size, reject_key = row
    return LoadReport(result.job_id, int(loaded), int(rejected), int(size), seconds, result.version, reject_key,
                      result)


def load_job(database: str, spec: LoadSpec, *, job_id: str | None = None, timeout: float | None = None,
             create: bool = True, label: str | None = None) -> Job:
    return Job.create(database, load=spec, job_id=job_id or new_job_id(), timeout=timeout, create=create,
                      label=label)


# -- out ------------------------------------------------------------------------------------------


def export_format(dest: str, given: str | None) -> str:
    """The format asked for, else the one the destination's name says; a name that says another (``.xyz``)
    is refused rather than written as CSV under a name that promises something else."""
    suffix = dest.lower().removesuffix(".gz").rsplit("/", 1)[-1]
    if given is None and format_of(dest) is None and "." in suffix:
        raise ClientSideError(f"{dest}: its name does not say csv, jsonl or parquet (.csv, .jsonl, .ndjson, "
                              ".parquet, perhaps .gz); name one with --output-format")
    fmt = given or format_of(dest) or "csv"
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ClientSideError(f"export writes csv, jsonl or parquet, not {fmt}")
    return fmt


def parquet_blocks(columns: list[str], types: list[str], encoded_rows: Iterable[list[Any]]) -> Iterator[bytes]:
    """A result as a Parquet file's bytes, written a row group of 65,536 rows at a time. Column types
    follow the result's: INTEGER int64, REAL double, BLOB binary, anything else string."""
    import pyarrow as pa

    pq = parquet.pyarrow_parquet()
    arrow = {"INTEGER": pa.int64(), "REAL": pa.float64(), "BLOB": pa.binary()}
    schema = pa.schema([(c, arrow.get((t or "").upper(), pa.string())) for c, t in zip(columns, types, strict=False)])
    sink = io.BytesIO()
    writer = pq.ParquetWriter(sink, schema)

    def flush(batch: list[list[Any]]) -> bytes:
        values = [[_arrow_value(row[i], schema.field(i).type) for row in batch] for i in range(len(columns))]
        arrays = [pa.array(v, type=f.type) for v, f in zip(values, schema, strict=True)]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        data = sink.getvalue()
        sink.seek(0)
        sink.truncate()
        return data

    batch: list[list[Any]] = []
    for row in encoded_rows:
        batch.append(decode_row(row))
        if len(batch) == parquet.BATCH_ROWS:
            yield flush(batch)
            batch = []
    if batch or not columns:
        yield flush(batch)
    writer.close()
    yield sink.getvalue()


def _arrow_value(value: Any, arrow_type: Any) -> Any:
    """A value as its column's Arrow type takes it (a text in an INTEGER column stays text: string columns)."""
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_string(arrow_type) and not isinstance(value, str):
        return value.hex() if isinstance(value, bytes) else str(value)
    return value


@dataclass(frozen=True)
class CsvStyle:
    """How an export writes CSV, as ``load`` reads it (and PostgreSQL's COPY … CSV): NULL is
    ``null_string`` unquoted (default the empty field), an empty string is a quoted ``""``, so the two
    never meet; a field is quoted when it holds the delimiter, the quote, a line break, leading or
    trailing space, or would read as the null string."""

    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    null_string: str = ""

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1 or len(self.quote) != 1 or self.delimiter == self.quote:
            raise ClientSideError("--delimiter and --quote are one character each, and not the same one")
        if self.delimiter in self.null_string or self.quote in self.null_string:
            raise ClientSideError("--null-string may hold neither the delimiter nor the quote")

    def field(self, value: Any) -> str:
        if value is None:
            return self.null_string
        text = value.hex() if isinstance(value, bytes) else str(value)
        if (text == "" or text == self.null_string or text != text.strip(" ")
                or any(c in text for c in (self.delimiter, self.quote, "\n", "\r"))):
            return self.quote + text.replace(self.quote, self.quote * 2) + self.quote
        return text

    def line(self, values: Iterable[Any]) -> str:
        return self.delimiter.join(self.field(v) for v in values) + "\n"


def export_lines(columns: list[str], encoded_rows: Iterable[list[Any]], fmt: str,
                 style: CsvStyle | None = None) -> Iterator[bytes]:
    """A result as the bytes of a CSV (header first, unless ``style`` says not) or JSON Lines file, a block
    of rows at a time."""
    style = style or CsvStyle()
    out = io.StringIO()
    if fmt == "csv" and style.header:
        out.write(style.line(columns))
    for count, row in enumerate(encoded_rows, start=1):
        if fmt == "csv":
            out.write(style.line(decode_row(row)))
        else:
            out.write(json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n")
        if count % 10_000 == 0:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


class _Chunks(io.RawIOBase):
    """An iterator of byte blocks as a readable stream (for upload_fileobj)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


def write_export(s3: Any, dest: str, blocks: Iterator[bytes], *, compress: bool) -> int:
    """Write blocks to ``dest`` (a path or ``s3://``), gzipped when ``compress``; the bytes written (the
    file's size: compressed, when it is)."""
    written = 0

    def counted(data: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal written
        for block in data:
            written += len(block)
            yield block

    data = counted(_gzipped(blocks) if compress else blocks)
    try:
        if dest.startswith("s3://"):
            bucket, key = split_s3(dest)
            s3.upload_fileobj(io.BufferedReader(_Chunks(data), 1024 * 1024), bucket, key, Config=TRANSFER)
        else:
            with open(Path(dest).expanduser(), "wb") as f:
                for block in data:
                    f.write(block)
    except (ClientError, BotoCoreError, OSError) as exc:
        raise ClientSideError(f"writing {dest}: {exc}") from exc
    return written


def _gzipped(blocks: Iterator[bytes]) -> Iterator[bytes]:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as zipped:
        for block in blocks:
            zipped.write(block)
            if buffer.tell() > 1024 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()
