"""A snapshot's manifest: the ordered chunk hashes of a SQLite file, its sizes, and what made it."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import DatabaseDamaged


@dataclass(frozen=True)
class Manifest:
    """One snapshot: the ordered chunk hashes that make up the file, and what made it."""

    version: int
    file_size: int
    page_size: int
    chunk_size: int
    chunks: list[str]
    created_at: float
    jobs: list[str] = field(default_factory=list)
    writer: str = ""
    restored_from: int | None = None
    # What each job of ``jobs`` was, in one line (Job.summary), in the same order.
    labels: list[str] = field(default_factory=list)
    # A fork's: the databases whose chunks it may name besides its own (its source, then the source's own
    # origins), nearest first, and what it was forked from ({"database", "version"}). See snapshot/fork.py.
    origins: list[str] = field(default_factory=list)
    forked_from: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
            return cls(int(doc["version"]), int(doc["file_size"]), int(doc["page_size"]), int(doc["chunk_size"]),
                       list(doc["chunks"]), float(doc["created_at"]), list(doc.get("jobs", [])),
                       str(doc.get("writer", "")), doc.get("restored_from"), [str(x) for x in doc.get("labels", [])],
                       [str(x) for x in doc.get("origins", [])], doc.get("forked_from"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatabaseDamaged(f"a manifest does not parse: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return (f"Manifest(version={self.version}, file_size={self.file_size}, chunks={len(self.chunks)}, "
                f"created_at={self.created_at}, writer={self.writer!r}, restored_from={self.restored_from})")


def next_version(old: Manifest | None, *, file_size: int, page_size: int, chunk_size: int, chunks: list[str],
                 created_at: float, jobs: list[str], labels: list[str]) -> Manifest:
    """The manifest of the version after ``old`` (the first, for None), by a writer of its own. A fork stays one:
    its unchanged chunks still live with its origins."""
    return Manifest(
        version=(old.version if old is not None else 0) + 1,
        file_size=file_size,
        page_size=page_size,
        chunk_size=chunk_size,
        chunks=chunks,
        created_at=to_millis(created_at),
        jobs=jobs,
        writer=uuid.uuid4().hex,
        labels=labels,
        origins=old.origins if old is not None else [],
        forked_from=old.forked_from if old is not None else None,
    )


def to_millis(epoch: float) -> float:
    """Snapshot times are whole milliseconds, so a time printed to the millisecond names its snapshot exactly."""
    return math.floor(epoch * 1000) / 1000
