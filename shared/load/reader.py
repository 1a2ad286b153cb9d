"""Reading a load's files as rows: gzip found by content, the encoding as asked (a UTF-8 BOM dropped),
CSV/TSV with its delimiter and quote, or JSON Lines. Every problem names the file and the line."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from typing import IO, Any

from shared.errors import UserError
from shared.load.spec import LoadSpec

GZIP_MAGIC = b"\x1f\x8b"
csv.field_size_limit(64 * 1024 * 1024)  # a field may be as long as a value may (shared.guard.MAX_VALUE_BYTES)


class LoadError(UserError):
    """The input cannot be read as asked: the message names the file, the line and, where it can, the column."""

    dbapi = "DataError"


class RowError(Exception):
    """One row that cannot be loaded (too few or too many fields, a value its column refuses): rejectable."""

    def __init__(self, line: int, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.line, self.column, self.reason = line, column, reason

    def describe(self, name: str) -> str:
        where = f", column {self.column}" if self.column else ""
        return f"{name}: line {self.line}{where}: {self.reason}"


def open_text(raw: IO[bytes], spec: LoadSpec) -> IO[str]:
    """The bytes of one file as text: gunzipped when they start as gzip does, whatever the name says."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(_Raw(raw), 1024 * 1024)
    stream: IO[bytes] = buffered
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
    encoding = "utf-8-sig" if spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else spec.encoding
    return io.TextIOWrapper(stream, encoding=encoding, newline="")


class _Raw(io.RawIOBase):
    """Anything with ``read(n)`` (an S3 body, a pipe) as a raw stream that buffering and gzip can use."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def rows(text: IO[str], spec: LoadSpec, name: str) -> Iterator[tuple[int, list[Any]]]:
    """(line, fields) for each record; CSV fields are text (None for the null string), JSON Lines
    records are objects. LoadError when the file itself cannot be read on."""
    try:
        if spec.format == "jsonl":
            yield from _json_lines(text, name)
        else:
            delimiter = "\t" if spec.format == "tsv" and spec.delimiter == "," else spec.delimiter
            lines = _Lines(text)
            reader = csv.reader(lines, delimiter=delimiter, quotechar=spec.quote, strict=True)
            quoted = _QuotedFields(delimiter, spec.quote)
            null = spec.null_string
            line = 0
            try:
                for record in reader:
                    line = reader.line_num
                    raw = lines.take()
                    if not record:  # a blank line is no record
                        continue
                    if null in record:  # only an unquoted null string is NULL: a quoted one is that text
                        flags = quoted(raw)
                        yield line, [None if v == null and not (i < len(flags) and flags[i]) else v
                                     for i, v in enumerate(record)]
                    else:
                        yield line, list(record)
            except csv.Error as exc:
                raise LoadError(f"{name}: line {reader.line_num}: not {spec.format.upper()}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise LoadError(f"{name}: not {spec.encoding} text ({exc.reason} at byte {exc.start} of a block); "
                        "give the file's encoding with --encoding (e.g. latin-1, cp1252)") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise LoadError(f"{name}: a damaged or truncated gzip file ({exc})") from None


class _Lines:
    """The lines a CSV reader takes, kept until :meth:`take`: the raw text of the record it just read."""

    def __init__(self, text: IO[str]) -> None:
        self.text, self.taken = iter(text), list[str]()

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.text)
        self.taken.append(line)
        return line

    def take(self) -> str:
        raw = "".join(self.taken)
        self.taken.clear()
        return raw


class _QuotedFields:
    """Which fields of a record's raw text were quoted: Python's csv module (before 3.12's QUOTE_NOTNULL)
    reads ``""`` and an empty field alike, and COPY … CSV tells them apart (an empty string, NULL)."""

    def __init__(self, delimiter: str, quote: str) -> None:
        d, q = re.escape(delimiter), re.escape(quote)
        self.field = re.compile(f"(?:({q})(?:[^{q}]|{q}{q})*{q}|[^{d}\\r\\n]*)({d})?")

    def __call__(self, raw: str) -> list[bool]:
        flags: list[bool] = []
        at = 0
        while True:
            found = self.field.match(raw, at)
            if found is None:  # csv read the record, so this cannot happen; then nothing counts as quoted
                return flags
            flags.append(found.group(1) is not None)
            if found.group(2) is None:  # no delimiter after it: the record's last field
                return flags
            at = found.end()


def _json_lines(text: IO[str], name: str) -> Iterator[tuple[int, list[Any]]]:
    for line, content in enumerate(text, start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except ValueError as exc:
            raise LoadError(f"{name}: line {line}: not JSON: {exc}") from None
        except RecursionError:
            raise LoadError(f"{name}: line {line}: nested too deeply to read (a record may nest at most about "
                            "900 levels)") from None
        if not isinstance(record, dict):
            raise LoadError(f"{name}: line {line}: a JSON Lines record must be an object, not "
                            f"{type(record).__name__}")
        yield line, [record]
