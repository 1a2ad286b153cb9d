"""What a group of write jobs runs on: one version of a database, opened for writing, and its commit.

Two kinds, one protocol. :class:`LocalCopy` is the whole file in the worker's cache folder, brought up to
date chunk by chunk (shared.snapshot.store), its jobs on ``sqlite3`` connections; the pages they wrote are
read back from the write-ahead log. worker/page_writes.py's target takes pages on demand instead (an
overlay over the version's chunks, APSW), so a write costs the chunks it touches, not the database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from shared.guard import Guard, open_job_connection
from shared.snapshot.store import Writer
from shared.snapshot.wal import written_pages


class WriteTarget(Protocol):
    @property
    def version(self) -> int:
        """The version the writes apply to (0: the database has none yet)."""

    @property
    def base(self) -> str:
        """That version's manifest's writer id ("" when there is none): which snapshot it is."""

    def own(self) -> Any:
        """A context holding the worker's own connection (no guard) for the whole group."""

    def connect(self, guard: Guard) -> Any:
        """A job's connection, guarded, outside any transaction; the caller closes it."""

    def commit(self, jobs: list[str], labels: list[str]) -> int:
        """Publish what the group wrote as the next version (its number). CommitConflict when another writer
        got there first."""


class LocalCopy:
    """The whole file at ``path``: jobs commit into its write-ahead log, which an idle connection keeps open for
    the whole group (SQLite checkpoints and deletes the log when its last connection closes), and the log is how
    the commit learns which pages changed."""

    def __init__(self, path: Path, writer: Writer | None = None) -> None:
        self.path, self.writer = path, writer
        self._pages: set[int] | None = None

    @property
    def version(self) -> int:
        return self.writer.version if self.writer is not None else 0

    @property
    def base(self) -> str:
        manifest = self.writer.snapshot.manifest if self.writer is not None else None
        return manifest.writer if manifest is not None else ""

    @contextmanager
    def own(self) -> Iterator[sqlite3.Connection]:
        anchor = sqlite3.connect(self.path, isolation_level=None)
        try:
            was_wal = anchor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            anchor.execute("PRAGMA journal_mode = WAL")
            anchor.execute("PRAGMA wal_autocheckpoint = 0")
            yield anchor
            self._pages = written_pages(Path(f"{self.path}-wal")) if was_wal else None
            anchor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            anchor.close()

    def connect(self, guard: Guard) -> sqlite3.Connection:
        conn = open_job_connection(self.path, guard)
        try:
            # The local copy is a cache: the commit to S3 is what is durable, so no fsync per job.
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    def commit(self, jobs: list[str], labels: list[str]) -> int:
        if self.writer is None:
            raise RuntimeError("a local file with no writer has nothing to commit to")
        return self.writer.commit(jobs, self._pages, labels).version
