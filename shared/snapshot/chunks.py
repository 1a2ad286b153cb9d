"""Chunks, the storage engine's unit: fixed-size slices of a SQLite file in S3, named by their SHA-256.

A chunk never changes once written, so a copy of one is good for ever, and any number of versions
(or databases) may name it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from shared.errors import StorageError
from shared.s3 import Bucket
from shared.snapshot.keys import chunk_key, trash_key
from shared.snapshot.manifest import Manifest
from shared.snapshot.wal import dirty_chunks

SQLITE_HEADER = b"SQLite format 3\x00"


def fetch_chunk(bucket: Bucket, database: str, digest: str, origins: Sequence[str] = ()) -> bytes:
    """The chunk's bytes, checked against its name: from the database's own chunks, else (a fork's) from its
    origins' in order, else from a trash — a chunk the collector moved there while a commit was making it
    current again is read from there until the collector's next pass puts it back (reaper/gc.py).
    StorageError when it is nowhere, or keeps not matching its hash."""
    homes = [database, *origins]
    places = [chunk_key(home, digest) for home in homes] + [trash_key(home, digest) for home in homes]
    for _ in range(3):
        found = next((blob for blob in map(bucket.get, places) if blob is not None), None)
        if found is None:
            raise StorageError(f"chunk s3://{bucket.name}/{places[0]} is missing"
                               + (f" (and from {', '.join(origins)}, whose fork this is)" if origins else ""))
        if hashlib.sha256(found.body).hexdigest() == digest:
            return found.body
    raise StorageError(f"chunk s3://{bucket.name}/{places[0]} does not match its hash after 3 reads")


def page_size(path: Path) -> int:
    """The page size a SQLite file's header gives (0 for a file too short to have one)."""
    with open(path, "rb") as f:
        return header_page_size(f.read(18))


def header_page_size(header: bytes) -> int:
    """The page size the first 18 bytes of a SQLite file give (0 when there are fewer)."""
    if len(header) < 18:
        return 0
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def chunk_file(path: Path, chunk_size: int, old: Manifest | None, size: int,
               pages: set[int] | None = None) -> tuple[list[str], dict[str, bytes]]:
    """The file's chunk names in order, and the chunks among them that ``old`` does not name (what S3 does not
    have yet). ``pages``: the pages changed since ``old`` (from the write-ahead log): only their chunks are
    read and hashed; None: every chunk is."""
    count = -(-size // chunk_size)
    same_layout = old is not None and old.chunk_size == chunk_size
    previous = old.chunks if old is not None and same_layout else []
    if previous and old is not None and pages is not None:
        dirty = dirty_chunks(pages, page_size(path), chunk_size, old.file_size, size)
    else:
        dirty = set(range(count))
    known = set(previous)
    chunks: list[str] = []
    new: dict[str, bytes] = {}
    with open(path, "rb") as f:
        for index in range(count):
            if index not in dirty:
                chunks.append(previous[index])
                continue
            f.seek(index * chunk_size)
            data = f.read(chunk_size)
            digest = hashlib.sha256(data).hexdigest()
            chunks.append(digest)
            if digest not in known:
                new[digest] = data
    return chunks, new
