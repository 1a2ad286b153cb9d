"""The job: one transaction on one database, validated the same way on both sides of the queue."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal, cast

from shared.errors import InvalidJob
from shared.job.values import SqlValue, decode_value, encode_value
from shared.load.spec import LoadSpec
from shared.names import check_database, check_job_id, new_job_id

SCHEMA_VERSION = 1
MAX_SQL_CHARS = 4 * 1024 * 1024  # a statement's characters (SQLite's own limit is ~1e9)
MAX_STATEMENTS = 1_000
MAX_PARAM_SETS = 1_000_000
MAX_TIMEOUT_SECONDS = 900.0
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

JsonParams = list[Any] | dict[str, Any]
Params = list[SqlValue] | dict[str, SqlValue]
JobKind = Literal["sql", "statements", "many", "load"]
_FIELDS = {"v", "job_id", "database", "sql", "params", "statements", "param_sets", "load",
           "reply_to", "submitted_at", "read_only", "timeout", "as_of", "create", "transaction", "label"}
MAX_LABEL = 200  # characters of a job's label (``--label``)
SUMMARY_CHARS = 80  # characters of the SQL a job is shown by when it has no label
AsOf = int | str


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the parameter sets it runs with (one set, or many for executemany)."""

    sql: str
    param_sets: tuple[JsonParams, ...] = ([],)
    # Every set is a list of text, reals, nulls and 64-bit integers, found while validating: sqlite3
    # takes them as they are. (The batch load's hot path: such sets are neither checked nor copied twice.)
    plain: bool = field(default=False, compare=False)

    @classmethod
    def checked(cls, sql: str, sets: list[Any], where: str) -> Statement:
        """Validate the parameter sets; ``where`` names them in errors, ``{}`` standing for the index."""
        plain, sets = True, list(sets)
        for index, params in enumerate(sets):
            if not _params(params, where.format(index)):
                plain = False
                sets[index] = _tagged(params)  # a non-finite real travels tagged: JSON has none
        return cls(sql, tuple(sets), plain)

    def decoded(self) -> list[Params]:
        """The parameter sets with blobs decoded, ready for sqlite3."""
        if self.plain:
            return cast(list[Params], list(self.param_sets))
        return [_decode_params(p) for p in self.param_sets]


@dataclass(frozen=True)
class TxStep:
    """A job's part in an interactive transaction (producer/transaction.py).

    ``preview``: run the transaction's statements so far on snapshot ``base`` (None: the current one,
    which then becomes the transaction's base) and return the last one's result, committing nothing.
    Otherwise the commit: apply the statements, under the lock, only if the database is still at
    ``base``; if anything committed since, fail ``SerializationFailure`` and apply nothing."""

    base: int | None
    preview: bool
    # The base snapshot's id (its manifest's writer): a version number alone is reused by a database
    # that was dropped and made again, and a commit must not apply to that other database.
    snapshot: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"base": self.base, "preview": self.preview}
        if self.snapshot:
            doc["snapshot"] = self.snapshot
        return doc

    @classmethod
    def from_json(cls, doc: object) -> TxStep:
        if not isinstance(doc, dict) or not set(doc) <= {"base", "preview", "snapshot"} or "preview" not in doc:
            raise InvalidJob("transaction must be an object with preview (true or false), base and snapshot")
        base, preview, snapshot = doc.get("base"), doc["preview"], doc.get("snapshot")
        if snapshot is not None and (not isinstance(snapshot, str) or len(snapshot) > 64):
            raise InvalidJob("transaction.snapshot must be the id a preview's result gave (a short string)")
        if not isinstance(preview, bool):
            raise InvalidJob("transaction.preview must be true or false")
        if base is not None and (isinstance(base, bool) or not isinstance(base, int) or base < 0):
            raise InvalidJob("transaction.base must be a snapshot version (an integer from 0)")
        if base is None and not preview:
            raise InvalidJob("a transaction's commit names its base version")
        return cls(base, preview, snapshot or None)


@dataclass(frozen=True)
class Job:
    """What a client submits. ``kind`` records which of the three shapes it arrived in."""

    job_id: str
    database: str
    kind: JobKind
    statements: tuple[Statement, ...]
    submitted_at: str
    reply_to: str | None = None
    read_only: bool = False
    timeout: float | None = None
    # A read of an old snapshot: its version number, or an ISO 8601 time (the snapshot current then).
    as_of: AsOf | None = None
    # False: a write to a database that does not exist fails (DatabaseNotFound) instead of creating it.
    may_create: bool = True  # "create" in the job document
    load: LoadSpec | None = None  # a bulk load (COPY): files in S3 into a table, in this job's transaction
    transaction: TxStep | None = None  # a step of an interactive transaction: a preview or the commit
    label: str | None = None  # what the job is, in the user's words: shown in history, jobs and status
    v: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def create(
        cls,
        database: str,
        sql: str | None = None,
        params: JsonParams | None = None,
        *,
        statements: list[tuple[str, JsonParams | None]] | None = None,
        statement_sets: list[tuple[str, list[JsonParams]]] | None = None,
        param_sets: list[JsonParams] | None = None,
        job_id: str | None = None,
        reply_to: str | None = None,
        read_only: bool = False,
        timeout: float | None = None,
        as_of: AsOf | datetime | None = None,
        create: bool = True,
        load: LoadSpec | None = None,
        transaction: TxStep | None = None,
        label: str | None = None,
        now: datetime | None = None,
    ) -> Job:
        """Build a job from client arguments, with the same checks a worker applies."""
        doc: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "job_id": job_id or new_job_id(),
            "database": database,
            "submitted_at": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        }
        if load is not None:
            doc["load"] = load.to_json()
        elif statements is not None:
            doc["statements"] = [{"sql": s, "params": p if p is not None else []} for s, p in statements]
        elif statement_sets is not None:  # each statement with its parameter sets (executemany in a transaction)
            doc["statements"] = [_statement_doc(s, sets) for s, sets in statement_sets]
        else:
            doc["sql"] = sql
            if param_sets is not None:
                doc["param_sets"] = param_sets
            elif params is not None:
                doc["params"] = params
        if isinstance(as_of, datetime):
            as_of = (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).isoformat()
        for name, value in (("reply_to", reply_to), ("timeout", timeout), ("as_of", as_of), ("label", label)):
            if value is not None:
                doc[name] = value
        if read_only:
            doc["read_only"] = True
        if not create:
            doc["create"] = False
        if transaction is not None:
            doc["transaction"] = transaction.to_json()
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: object) -> Job:
        """Validate a decoded job document; every problem is an InvalidJob naming the field."""
        if not isinstance(doc, dict):
            raise InvalidJob("a job must be a JSON object")
        unknown = sorted(set(doc) - _FIELDS)
        if unknown:
            raise InvalidJob(f"unknown field(s): {', '.join(unknown)}")
        if type(doc.get("v")) is not int or doc.get("v") != SCHEMA_VERSION:  # true == 1 in Python, not here
            raise InvalidJob(f"unsupported schema version {doc.get('v')!r}; this worker speaks v{SCHEMA_VERSION}")
        job_id = check_job_id(_required(doc, "job_id"))
        database = check_database(_required(doc, "database"))
        load = None
        kind: JobKind
        statements: tuple[Statement, ...]
        if "load" in doc:
            if any(name in doc for name in ("sql", "statements", "params", "param_sets", "as_of", "read_only")):
                raise InvalidJob("a load job has no sql, statements, params, as_of or read_only")
            kind, statements, load = "load", (), LoadSpec.from_json(doc["load"])
        else:
            kind, statements = _statements(doc)
        submitted_at = doc.get("submitted_at", "")
        if not isinstance(submitted_at, str) or len(submitted_at) > 64:
            raise InvalidJob("submitted_at must be an ISO 8601 timestamp string")
        reply_to = doc.get("reply_to")
        if reply_to is not None and (not isinstance(reply_to, str) or not reply_to.startswith(("https://", "http://"))):
            raise InvalidJob("reply_to must be an SQS queue URL")
        read_only = _flag(doc, "read_only", False)
        timeout = doc.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_SECONDS
        ):
            raise InvalidJob(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT_SECONDS:g}]")
        create = _flag(doc, "create", True)
        label = doc.get("label")
        if label is not None and (not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL):
            raise InvalidJob(f"label must be text of 1 to {MAX_LABEL} characters")
        job = cls(job_id, database, kind, statements, submitted_at, reply_to, read_only,
                  float(timeout) if timeout is not None else None, _as_of(doc.get("as_of")), create, load,
                  _transaction(doc), label)
        try:
            job.digest()  # computed once here; it also proves every text encodes as UTF-8
        except UnicodeEncodeError as exc:
            raise InvalidJob(f"the job holds text that is not valid Unicode ({exc.reason} at position "
                             f"{exc.start}, e.g. a lone surrogate \\u{ord(exc.object[exc.start]):04x})") from None
        return job

    @classmethod
    def from_text(cls, text: str) -> Job:
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidJob(f"job is not valid JSON: {exc}") from None
        return cls.from_json(doc)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"v": self.v, "job_id": self.job_id, "database": self.database,
                               "submitted_at": self.submitted_at}
        if self.load is not None:
            doc["load"] = self.load.to_json()
        elif self.kind == "statements":
            doc["statements"] = [_statement_doc(s.sql, list(s.param_sets)) for s in self.statements]
        elif self.kind == "many":
            doc["sql"] = self.statements[0].sql
            doc["param_sets"] = list(self.statements[0].param_sets)
        else:
            doc["sql"] = self.statements[0].sql
            if self.statements[0].param_sets[0]:
                doc["params"] = self.statements[0].param_sets[0]
        if self.reply_to:
            doc["reply_to"] = self.reply_to
        if self.read_only:
            doc["read_only"] = True
        if self.timeout is not None:
            doc["timeout"] = self.timeout
        if self.as_of is not None:
            doc["as_of"] = self.as_of
        if not self.may_create:
            doc["create"] = False
        if self.transaction is not None:
            doc["transaction"] = self.transaction.to_json()
        if self.label is not None:
            doc["label"] = self.label
        return doc

    @property
    def summary(self) -> str:
        """What the job is, in one line: its label, else the first line of its SQL (a load: its table and
        files), at most SUMMARY_CHARS characters."""
        if self.label is not None:
            text = self.label
        elif self.load is not None:
            names = [source.name for source in self.load.sources]
            text = f"load {self.load.table} from {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        else:
            text = next((line.strip() for s in self.statements for line in s.sql.splitlines() if line.strip()), "")
            more = len(self.statements) - 1
            if self.kind == "many":
                text += f" (x{len(self.statements[0].param_sets)})"
            elif more:
                text += f" (+{more} more)"
        line = " ".join(text.split())
        return line if len(line) <= SUMMARY_CHARS else line[:SUMMARY_CHARS - 1] + "…"

    def digest(self) -> str:
        """What the job does, hashed: the same job resubmitted has the same digest, whenever it was sent."""
        return self._encoded[1]

    def to_text(self) -> str:
        return self._encoded[0]

    @cached_property
    def _encoded(self) -> tuple[str, str]:
        """The message text and the digest from one serialisation (a batch load's job is ~240 KiB):
        the digest hashes every field but ``submitted_at`` (keys sorted), which the text adds last."""
        doc = self.to_json()
        submitted_at = doc.pop("submitted_at")
        what = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        text = f'{what[:-1]},"submitted_at":{json.dumps(submitted_at, ensure_ascii=False)}}}'
        return text, hashlib.sha256(what.encode()).hexdigest()


def _flag(doc: dict[str, Any], name: str, default: bool) -> bool:
    value = doc.get(name, default)
    if not isinstance(value, bool):
        raise InvalidJob(f"{name} must be true or false")
    return value


def _transaction(doc: dict[str, Any]) -> TxStep | None:
    if "transaction" not in doc:
        return None
    if any(name in doc for name in ("load", "as_of", "read_only")):
        raise InvalidJob("a transaction's job has no load, as_of or read_only (its base is its snapshot)")
    return TxStep.from_json(doc["transaction"])


def _required(doc: dict[str, Any], name: str) -> Any:
    if name not in doc:
        raise InvalidJob(f"missing field: {name}")
    return doc[name]


def _as_of(value: object) -> AsOf | None:
    """A snapshot version (an integer from 1) or a time: ISO 8601, UTC when it names no zone."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**63:
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            as_of_time(value)
            return value
        except ValueError:
            pass
    raise InvalidJob(f"as_of {value!r:.80} must be a snapshot version (an integer from 1) or an ISO 8601 time")


def as_of_point(value: AsOf) -> int | datetime:
    """An ``as_of`` as the snapshot engine takes it: a version number, or an aware moment."""
    if isinstance(value, int):
        return value
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_of_time(value: str) -> float:
    """An ``as_of`` time as epoch seconds; a time without a zone is UTC."""
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _sql(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidJob(f"{where} must be a non-empty string")
    if len(value) > MAX_SQL_CHARS:
        raise InvalidJob(f"{where} is longer than {MAX_SQL_CHARS} characters")
    return value


def _params(value: object, where: str) -> bool:
    """Check one parameter set; True when it is plain (see Statement.plain)."""
    if isinstance(value, list):
        if _plain(value):
            return True
        for item in value:
            decode_value(item)
        return False
    if isinstance(value, dict):
        for name, item in value.items():
            if not name or not name.replace("_", "a").isalnum():
                raise InvalidJob(f"{where}: parameter name {name!r:.40} is not a valid SQL parameter name")
            decode_value(item)
        return False
    raise InvalidJob(f"{where} must be a list (for ?) or an object (for :name)")


def _statements(doc: dict[str, Any]) -> tuple[JobKind, tuple[Statement, ...]]:
    shapes = [name for name in ("sql", "statements") if name in doc]
    if len(shapes) != 1:
        raise InvalidJob("a job needs exactly one of: sql, statements")
    if "statements" in doc:
        if "params" in doc or "param_sets" in doc:
            raise InvalidJob("params and param_sets go inside each of statements")
        items = doc["statements"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_STATEMENTS:
            raise InvalidJob(f"statements must be a list of 1 to {MAX_STATEMENTS} objects")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not set(item) <= {"sql", "params", "param_sets"} or (
                    "params" in item and "param_sets" in item):
                raise InvalidJob(f"statements[{i}] must be an object with sql and optional params or param_sets")
            sql = _sql(item.get("sql"), f"statements[{i}].sql")
            if "param_sets" in item:
                sets = item["param_sets"]
                if not isinstance(sets, list) or not 1 <= len(sets) <= MAX_PARAM_SETS:
                    raise InvalidJob(f"statements[{i}].param_sets must be a list of 1 to {MAX_PARAM_SETS} "
                                     "parameter lists")
                out.append(Statement.checked(sql, sets, f"statements[{i}].param_sets[{{}}]"))
            else:
                out.append(Statement.checked(sql, [item.get("params", [])], f"statements[{i}].params"))
        return "statements", tuple(out)
    sql = _sql(doc["sql"], "sql")
    if "param_sets" in doc:
        if "params" in doc:
            raise InvalidJob("give params or param_sets, not both")
        sets = doc["param_sets"]
        if not isinstance(sets, list) or not 1 <= len(sets) <= MAX_PARAM_SETS:
            raise InvalidJob(f"param_sets must be a list of 1 to {MAX_PARAM_SETS} parameter lists")
        return "many", (Statement.checked(sql, sets, "param_sets[{}]"),)
    return "sql", (Statement.checked(sql, [doc.get("params", [])], "params"),)


def _statement_doc(sql: str, sets: list[JsonParams]) -> dict[str, Any]:
    """A statement of a ``statements`` job: one parameter set as ``params`` (as every job before
    transactions had it, so their digests are unchanged), several as ``param_sets``."""
    return {"sql": sql, "params": sets[0]} if len(sets) == 1 else {"sql": sql, "param_sets": sets}


def _plain(values: list[Any]) -> bool:
    """True when every value is text, a real, null or a 64-bit integer: nothing to check or decode.
    This is the batch load's hot path, so it looks at types only."""
    for v in values:
        t = type(v)
        if t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                return False
        elif t is float:
            if not math.isfinite(v):
                return False
        elif t is not str and v is not None:
            return False
    return True


def _tagged(params: Any) -> Any:
    """A parameter set with its non-finite reals tagged (``{"$real": "NaN"}``), as JSON can carry them."""
    if isinstance(params, list):
        return [encode_value(v) if isinstance(v, float) else v for v in params]
    if isinstance(params, dict):
        return {k: encode_value(v) if isinstance(v, float) else v for k, v in params.items()}
    return params


def _decode_params(params: JsonParams) -> Params:
    if isinstance(params, dict):
        return {k: decode_value(v) for k, v in params.items()}
    return [decode_value(v) for v in params]
