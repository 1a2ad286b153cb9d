"""The status document a job leaves under ``results/``: its state, and its result when it ends."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from shared.job.values import SqlValue, decode_row


class JobState(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"  # a worker has run it for over a second (short jobs go from QUEUED to their end)
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NOT_FOUND = "NOT_FOUND"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class ResultPart:
    """A slice of a large result stored as gzip JSON Lines under ``results/<job_id>/``."""

    key: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "rows": self.rows}


@dataclass
class JobResult:
    """A job's status document. ``rows`` hold encoded values (blobs tagged); use :meth:`values`."""

    job_id: str
    state: JobState
    database: str | None = None
    columns: list[str] = field(default_factory=list)
    # Per column: the declared type when the column comes straight from a table, else the storage
    # class of its first non-null value (INTEGER, REAL, TEXT, BLOB), else "".
    types: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    rowcount: int = 0
    lastrowid: int | None = None
    error: dict[str, Any] | None = None
    parts: list[ResultPart] = field(default_factory=list)
    version: int | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    job_digest: str | None = None
    # A QUEUED document that `srdb dlq redrive` wrote: the error that dead-lettered the job before.
    redriven_after: dict[str, Any] | None = None
    created: bool = False  # a write whose commit created its database
    # The queue its client sent it to (a QUEUED document's): a copy that came through another queue is
    # not this job's message, and the worker leaves the document alone.
    queue: str | None = None
    # The id of the snapshot a transaction's preview ran on (its manifest's writer; see TxStep.snapshot).
    snapshot: str | None = None
    # A QUEUED job's: why it is not running yet (another worker held its database's lock).
    waiting: str | None = None
    # What the job is in one line: its --label, else the first line of its SQL (Job.summary).
    label: str | None = None

    @property
    def settled(self) -> bool:
        """Final and not to be run again: a dead-lettered failure (retryable) may still be redriven."""
        return self.state.final and not (self.error or {}).get("retryable", False)

    @property
    def total_rows(self) -> int:
        return len(self.rows) + sum(p.rows for p in self.parts)

    def values(self) -> list[list[SqlValue]]:
        """The inline rows with blobs decoded to bytes."""
        return [decode_row(r) for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"job_id": self.job_id, "state": self.state.value}
        for name in ("database", "submitted_at", "started_at", "finished_at", "version", "lastrowid", "error",
                     "job_digest", "redriven_after", "queue", "snapshot", "waiting", "label"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.state.final:
            doc.update(columns=self.columns, types=self.types, rows=self.rows, rowcount=self.rowcount,
                       timings=self.timings)
            if self.parts:
                doc["parts"] = [p.to_json() for p in self.parts]
            if self.created:
                doc["created"] = True
        return doc

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> JobResult:
        return cls(
            job_id=doc["job_id"],
            state=JobState(doc["state"]),
            database=doc.get("database"),
            columns=list(doc.get("columns", [])),
            types=list(doc.get("types", [])),
            rows=list(doc.get("rows", [])),
            rowcount=int(doc.get("rowcount", 0)),
            lastrowid=doc.get("lastrowid"),
            error=doc.get("error"),
            parts=[ResultPart(p["key"], int(p["rows"])) for p in doc.get("parts", [])],
            version=doc.get("version"),
            submitted_at=doc.get("submitted_at"),
            started_at=doc.get("started_at"),
            finished_at=doc.get("finished_at"),
            timings=dict(doc.get("timings", {})),
            job_digest=doc.get("job_digest"),
            redriven_after=doc.get("redriven_after"),
            created=bool(doc.get("created", False)),
            queue=doc.get("queue"),
            snapshot=doc.get("snapshot"),
            waiting=doc.get("waiting"),
            label=doc.get("label"),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> JobResult:
        return cls.from_json(json.loads(data))

    @classmethod
    def not_found(cls, job_id: str) -> JobResult:
        return cls(job_id, JobState.NOT_FOUND)


def iso(epoch_seconds: float) -> str:
    """A status document's time: ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")


def epoch(text: str) -> float | None:
    """The epoch seconds of a status document's time; None when it is not one."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
