"""What a load job asks for: the table, the staged objects, and how to read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidJob

FORMATS = ("csv", "tsv", "jsonl", "parquet")
IF_EXISTS = ("append", "replace", "fail")
TYPES = ("infer", "text")
MAX_SOURCES = 10_000


@dataclass(frozen=True)
class Source:
    """One object to read: ``s3://bucket/key``, and its name as the user gave it (for errors)."""

    bucket: str
    key: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key, "name": self.name}


@dataclass(frozen=True)
class LoadSpec:
    table: str
    sources: tuple[Source, ...]
    format: str = "csv"
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"
    header: bool = True
    null_string: str = ""
    schema: str | None = None  # "id INTEGER PRIMARY KEY, zip TEXT": the table's columns, as CREATE TABLE takes them
    types: str = "infer"
    if_exists: str = "append"
    max_errors: int = 0
    columns: tuple[str, ...] = field(default=())  # names for a file without a header

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"table": self.table, "sources": [s.to_json() for s in self.sources],
                               "format": self.format, "delimiter": self.delimiter, "quote": self.quote,
                               "encoding": self.encoding, "header": self.header, "null_string": self.null_string,
                               "types": self.types, "if_exists": self.if_exists, "max_errors": self.max_errors}
        if self.schema is not None:
            doc["schema"] = self.schema
        if self.columns:
            doc["columns"] = list(self.columns)
        return doc

    @classmethod
    def from_json(cls, doc: object) -> LoadSpec:
        """Validate a job's ``load`` object; InvalidJob names what is wrong."""
        if not isinstance(doc, dict):
            raise InvalidJob("load must be an object")
        known = {"table", "sources", "format", "delimiter", "quote", "encoding", "header", "null_string", "schema",
                 "types", "if_exists", "max_errors", "columns"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InvalidJob(f"load: unknown field(s): {', '.join(unknown)}")
        table = doc.get("table")
        if not isinstance(table, str) or not table or "\x00" in table or len(table) > 256:
            raise InvalidJob("load.table must be a table name")
        sources = doc.get("sources")
        if not isinstance(sources, list) or not 1 <= len(sources) <= MAX_SOURCES:
            raise InvalidJob(f"load.sources must be a list of 1 to {MAX_SOURCES} objects")
        parsed = []
        for i, item in enumerate(sources):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item.get(k)
                                                     for k in ("bucket", "key")):
                raise InvalidJob(f"load.sources[{i}] must be an object with bucket and key")
            parsed.append(Source(item["bucket"], item["key"], str(item.get("name") or f"s3://{item['bucket']}/"
                                                                  f"{item['key']}")))
        spec = cls(table, tuple(parsed), **{k: doc[k] for k in ("format", "delimiter", "quote", "encoding", "header",
                                                                  "null_string", "schema", "types", "if_exists",
                                                                  "max_errors") if k in doc},
                   columns=tuple(doc.get("columns", ())))
        spec.check()
        return spec

    def check(self) -> None:
        self._check_reading()
        if self.schema is not None and (not isinstance(self.schema, str) or not self.schema.strip()):
            raise InvalidJob("load.schema must be column definitions, as CREATE TABLE takes them")
        if self.types not in TYPES:
            raise InvalidJob(f"load.types must be one of {', '.join(TYPES)}")
        if self.if_exists not in IF_EXISTS:
            raise InvalidJob(f"load.if_exists must be one of {', '.join(IF_EXISTS)}")
        if isinstance(self.max_errors, bool) or not isinstance(self.max_errors, int) or self.max_errors < 0:
            raise InvalidJob("load.max_errors must be a whole number from 0")
        if not all(isinstance(c, str) and c for c in self.columns):
            raise InvalidJob("load.columns must be column names")

    def _check_reading(self) -> None:
        """How the files are read: format, delimiter, quote, encoding, header, null string."""
        if self.format not in FORMATS:
            raise InvalidJob(f"load.format must be one of {', '.join(FORMATS)}")
        for name in ("delimiter", "quote"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise InvalidJob(f"load.{name} must be one character (not a line break)")
        if self.delimiter == self.quote:
            raise InvalidJob("load.delimiter and load.quote must differ")
        if not isinstance(self.encoding, str):
            raise InvalidJob("load.encoding must be an encoding name")
        try:
            "".encode(self.encoding)
        except LookupError:
            raise InvalidJob(f"load.encoding {self.encoding!r} is not an encoding Python knows") from None
        if not isinstance(self.header, bool):
            raise InvalidJob("load.header must be true or false")
        if not isinstance(self.null_string, str):
            raise InvalidJob("load.null_string must be a string")
