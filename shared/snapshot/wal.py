"""Which pages a transaction wrote, read from SQLite's write-ahead log.

Local copies are kept in WAL mode. A write transaction appends every page it changes to
``<db>-wal`` as a frame (a 24-byte header whose first field is the page number, then the
page); the writer reads those page numbers, checkpoints them into the database file and
truncates the log. So a commit knows its changed chunks without re-reading the whole file:
its cost grows with the change, not with the database.
"""

from __future__ import annotations

import struct
from pathlib import Path

WAL_MAGIC = {0x377F0682, 0x377F0683}
WAL_HEADER = 32
FRAME_HEADER = 24


def written_pages(wal_path: Path) -> set[int]:
    """Page numbers (1-based) of every frame of the current log generation; empty if there is no log."""
    try:
        data = wal_path.read_bytes()
    except FileNotFoundError:
        return set()
    if len(data) < WAL_HEADER:
        return set()
    magic, _version, page_size, _seq, salt1, salt2 = struct.unpack(">IIIIII", data[:24])
    if magic not in WAL_MAGIC or page_size < 512:
        raise ValueError(f"{wal_path} is not a SQLite write-ahead log")
    pages: set[int] = set()
    offset = WAL_HEADER
    # Frames of an older generation (left from before a restart of the log) carry other salts.
    while offset + FRAME_HEADER + page_size <= len(data):
        page, _size, frame_salt1, frame_salt2 = struct.unpack(">IIII", data[offset:offset + 16])
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break
        pages.add(page)
        offset += FRAME_HEADER + page_size
    return pages


def dirty_chunks(pages: set[int], page_size: int, chunk_size: int, old_size: int, new_size: int) -> set[int]:
    """Chunk indexes a commit must re-hash: those holding a written page, the header chunk, the chunk
    where the file now ends, and every chunk past the old end."""
    dirty = {0}
    for page in pages:
        start = (page - 1) * page_size
        dirty.update(range(start // chunk_size, (start + page_size - 1) // chunk_size + 1))
    if new_size:
        dirty.add((new_size - 1) // chunk_size)
    old_chunks = -(-old_size // chunk_size)
    dirty.update(range(old_chunks, -(-new_size // chunk_size)))
    return {i for i in dirty if i * chunk_size < new_size}
