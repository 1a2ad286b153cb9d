"""Moving a database in and out whole: ``srdb pull`` writes a version as a plain SQLite file (for sqlite3, or
a backup), ``srdb push`` makes a SQLite file a database, or the next version of one.

A push commits as a worker does: the chunks S3 does not have yet first, then the manifest by a
conditional write over the version it read (CommitConflict if a write got there first: nothing is
overwritten, and the push can be run again). The file is first copied with SQLite's backup API, so a
database in use (a write-ahead log beside it, a writer mid-transaction) is pushed as one consistent
snapshot, and a file that is not SQLite is refused before anything is sent.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime
from pathlib import Path

from shared.errors import ClientSideError
from shared.names import check_database
from shared.s3 import Bucket
from shared.snapshot.chunks import SQLITE_HEADER, chunk_file, fetch_chunk, page_size
from shared.snapshot.history import History
from shared.snapshot.keys import chunk_key
from shared.snapshot.manifest import Manifest, next_version
from shared.snapshot.store import current_manifest, put_manifest, put_version


def pull_version(history: History, database: str, dest: Path, *, as_of: int | str | datetime | None = None,
                 concurrency: int = 8) -> Manifest:
    """Write the current version of ``database`` (or the one ``as_of`` a version or a time) to ``dest``; the
    manifest of the version written."""
    current, _ = history.current(database)
    wanted = current if as_of is None else history.resolve(database, as_of, current)
    pull_file(history.bucket, database, wanted, dest, concurrency=concurrency)
    return wanted


def pull_file(bucket: Bucket, database: str, manifest: Manifest, dest: Path, *, concurrency: int = 8) -> int:
    """Write the snapshot ``manifest`` of ``database`` to ``dest`` (replaced only once whole); its size."""
    digests = sorted(set(manifest.chunks))
    with ThreadPoolExecutor(max(1, min(concurrency, len(digests)))) as pool:
        fetched = dict(zip(digests, pool.map(lambda d: fetch_chunk(bucket, database, d, manifest.origins), digests),
                           strict=True))
    dest = dest.expanduser()
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "wb") as out:
            for digest in manifest.chunks:
                out.write(fetched[digest])
            out.truncate(manifest.file_size)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest.file_size


def push_file(bucket: Bucket, database: str, source: Path, *, chunk_size: int, label: str | None = None,
              now: Callable[[], float] = time.time, concurrency: int = 8) -> Manifest:
    """Commit the SQLite file ``source`` as the next version of ``database`` (version 1 of a new one).
    ``label``: what history says of it (default ``push of <file name>``)."""
    check_database(database)
    source = source.expanduser()
    if not source.is_file():
        raise ClientSideError(f"no such file: {source}")
    with open(source, "rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise ClientSideError(f"{source} is not a SQLite database (its header is not 'SQLite format 3')")
    with tempfile.TemporaryDirectory(prefix="srdb-push-") as scratch:
        copy = Path(scratch) / "db.sqlite"
        _consistent_copy(source, copy)
        found = current_manifest(bucket, database)
        old, etag = found if found is not None else (None, None)
        chunks, new = chunk_file(copy, chunk_size, old, copy.stat().st_size)
        with ThreadPoolExecutor(max(1, min(concurrency, len(new) or 1))) as pool:
            list(pool.map(lambda item: bucket.put(chunk_key(database, item[0]), item[1]), new.items()))
        manifest = next_version(old, file_size=copy.stat().st_size, page_size=page_size(copy), chunk_size=chunk_size,
                                chunks=chunks, created_at=now(), jobs=[], labels=[label or f"push of {source.name}"])
    body = manifest.to_bytes()
    put_manifest(bucket, database, manifest, body, etag)
    put_version(bucket, database, manifest, body)
    return manifest


def _consistent_copy(source: Path, dest: Path) -> None:
    """SQLite's online backup of ``source`` into ``dest``, in rollback-journal mode: one snapshot of it,
    whatever its journal, and nothing of its write-ahead log left behind."""
    try:
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader, \
                closing(sqlite3.connect(dest)) as writer:
            reader.backup(writer)
            writer.execute("PRAGMA journal_mode = DELETE")
            check = writer.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ClientSideError(f"{source} cannot be read as a SQLite database: {exc}") from None
    if check != "ok":
        raise ClientSideError(f"{source} is damaged (PRAGMA quick_check: {check}); nothing was pushed")
