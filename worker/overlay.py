"""Writes on pages: a version of a database, as SQLite writes it, with what it wrote kept on the side.

An overlay is a copy-on-write view of one version (its base). Reads of a chunk nobody wrote come from
the chunk cache (worker/pages.py: fetched from S3 on demand, shared with reads); the first write into a
chunk copies that chunk into the overlay's private file, and every later read or write of it goes there.
So a write job on a cold worker costs the chunks its statements touch, never the whole database; and
when the group commits, the chunks the overlay holds are exactly the chunks that may have changed
(:meth:`Overlay.chunks`), with no write-ahead log to read back.

SQLite keeps its rollback journal in memory on these connections (``journal_mode = MEMORY``): the
overlay itself is a scratch space that the commit to S3 makes durable, or that is thrown away.
The private file is unlinked as soon as it is made, so nothing of it outlives the process.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import apsw

from shared.snapshot.chunks import header_page_size
from shared.snapshot.manifest import Manifest
from worker.pages import VFS_NAME, ChunkCache, Unlocked, register

_VERSIONS = 18  # the header's file format write and read versions: 1 rollback journal, 2 WAL
_CHANGE_COUNTER, _VALID_FOR = 24, 92  # the header's file change counter, and the version-valid-for number
_SAFE_APPEND = apsw.mapping_device_characteristics["SQLITE_IOCAP_SAFE_APPEND"]


class Overlay:
    """Version ``base`` of ``database`` (None: a database with no version yet), and the chunks written on it."""

    def __init__(self, database: str, base: Manifest | None, cache: ChunkCache, chunk_size: int,
                 folder: Path) -> None:
        self.database, self.base, self.cache = database, base, cache
        self.chunk_size = base.chunk_size if base is not None else chunk_size
        self.size = base.file_size if base is not None else 0
        self.written: set[int] = set()  # chunks copied into the private file
        # The base's bytes still in the file: past the smallest size it was truncated to, the base is gone (a byte
        # there reads as zero until it is written again).
        self._kept = self.size
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".overlay-", dir=folder)
        os.unlink(name)  # the open file is all there is: gone with the process, whatever happens
        self._fd = handle
        self._last: tuple[int, bytes] = (-1, b"")

    def read(self, amount: int, offset: int) -> bytes:
        with self._lock:
            end = min(offset + amount, self.size)
            parts = []
            while offset < end:
                index, start = divmod(offset, self.chunk_size)
                take = min(self.chunk_size - start, end - offset)
                if index in self.written:
                    parts.append(os.pread(self._fd, take, offset))
                else:
                    parts.append(self._base(index)[start:start + take].ljust(take, b"\0"))
                offset += take
            return b"".join(parts)  # short at the end of the file: SQLite fills the rest with zeros

    def write(self, data: bytes, offset: int) -> None:
        with self._lock:
            end = offset + len(data)
            for index in range(offset // self.chunk_size, -(-end // self.chunk_size)):
                self._copy(index)
            os.pwrite(self._fd, data, offset)
            self.size = max(self.size, end)

    def truncate(self, size: int) -> None:
        with self._lock:
            if size < self.size and size % self.chunk_size:
                # The chunk the file now ends in changes (it is shorter), and bytes past the end must read as
                # zeros if the file grows again.
                index = size // self.chunk_size
                self._copy(index)
                tail = (index + 1) * self.chunk_size - size
                os.pwrite(self._fd, b"\0" * tail, size)
            self.written = {i for i in self.written if i * self.chunk_size < size}
            os.ftruncate(self._fd, max(size, 0))
            self.size, self._kept = size, min(self._kept, size)

    def chunks(self) -> tuple[list[str], dict[str, bytes]]:
        """The overlay's file as chunks: every chunk's name in order, and the bytes of those written here that
        the base does not name (the ones S3 may not have)."""
        with self._lock:
            base = self.base.chunks if self.base is not None else []
            names: list[str] = []
            new: dict[str, bytes] = {}
            for index in range(-(-self.size // self.chunk_size)):
                start = index * self.chunk_size
                length = min(self.chunk_size, self.size - start)
                if (index not in self.written and index < len(base) and self._whole(index)
                        and self._base_length(index) == length):
                    names.append(base[index])
                    continue
                data = self._chunk_bytes(index, start, length)
                if index == 0 and base and _counters_only(data, self._base(0)):
                    names.append(base[0])
                    continue
                digest = hashlib.sha256(data).hexdigest()
                names.append(digest)
                if digest not in base:
                    new[digest] = data
            return names, new

    def page_size(self) -> int:
        return header_page_size(self.read(18, 0))

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _chunk_bytes(self, index: int, start: int, length: int) -> bytes:
        if index in self.written:
            return os.pread(self._fd, length, start)
        return self._base(index)[:length].ljust(length, b"\0")

    @property
    def base_size(self) -> int:
        return self.base.file_size if self.base is not None else 0

    def _base_length(self, index: int) -> int:
        """The length of the base's chunk ``index`` (the last one may be short)."""
        return min(self.chunk_size, self.base_size - index * self.chunk_size)

    def _whole(self, index: int) -> bool:
        """Whether all of the base's chunk ``index`` is still in the file (none of it truncated away)."""
        return self._base_length(index) <= self._kept - index * self.chunk_size

    def _copy(self, index: int) -> None:
        """Copy chunk ``index`` of the base into the private file before it is first written."""
        if index in self.written:
            return
        start = index * self.chunk_size
        if start < self.size:
            data = self._base(index)[:self.size - start]
            os.pwrite(self._fd, data.ljust(min(self.chunk_size, self.size - start), b"\0"), start)
        self.written.add(index)

    def _base(self, index: int) -> bytes:
        """The base's chunk ``index``, as much of it as is still in the file."""
        base, kept = self.base, self._kept - index * self.chunk_size
        if base is None or index >= len(base.chunks) or kept <= 0:
            return b""
        if self._last[0] != index:
            self._last = (index, self.cache.get(self.database, base.origins, base.chunks[index]))
        data = self._last[1]
        return data if kept >= len(data) else data[:kept]


def _counters_only(data: bytes, base: bytes) -> bool:
    """Whether the first chunk differs from its base only in the header's transaction counters: in rollback-journal
    mode SQLite counts every write transaction in page 1 (the file change counter, and the version-valid-for
    number that matches it), so without this every commit would upload the first chunk again for nothing else.
    The counters only tell one connection that another changed the file; every connection on a version srdb
    commits is a new one, so the base's first chunk serves the new version unchanged. Where anything else differs
    (the page count beside them, the schema cookie, any page) the chunk is the new one."""
    return (len(data) == len(base) and data[:_CHANGE_COUNTER] == base[:_CHANGE_COUNTER]
            and data[_CHANGE_COUNTER + 4:_VALID_FOR] == base[_CHANGE_COUNTER + 4:_VALID_FOR]
            and data[_VALID_FOR + 4:] == base[_VALID_FOR + 4:])


class _OverlayFile(Unlocked):
    """An overlay as SQLite's main database file. Locks are the overlay owner's business: one group of jobs
    (or one preview) at a time uses it, so SQLite's own are not needed."""

    def __init__(self, overlay: Overlay) -> None:
        self.overlay = overlay

    def xRead(self, amount: int, offset: int) -> bytes:
        data = self.overlay.read(amount, offset)
        if offset <= _VERSIONS < offset + len(data):
            # A database last written in WAL mode says so in its header (bytes 18 and 19 are 2): SQLite would look
            # for its log and shared memory, which an overlay has no need of. Read as a rollback-journal database
            # (1), as SQLite itself reads one where WAL is unavailable; its next write of page 1 stores 1.
            start = _VERSIONS - offset
            versions = data[start:start + 2]
            if b"\x02" in versions:
                data = data[:start] + versions.replace(b"\x02", b"\x01") + data[start + 2:]
        return data

    def xWrite(self, data: bytes, offset: int) -> None:
        self.overlay.write(bytes(data), offset)

    def xTruncate(self, size: int) -> None:
        self.overlay.truncate(size)

    def xFileSize(self) -> int:
        return self.overlay.size

    def xClose(self) -> None:
        pass

    def xDeviceCharacteristics(self) -> int:
        return int(_SAFE_APPEND)


def connect(overlay: Overlay) -> tuple[apsw.Connection, Callable[[], None]]:
    """A plain APSW connection on ``overlay``, its journal in memory; the caller prepares it for jobs (or not,
    for the worker's own statements) and closes it."""
    raw, forget = register(lambda: _OverlayFile(overlay),
                           lambda key: apsw.Connection(f"file:{key}", flags=apsw.SQLITE_OPEN_READWRITE
                                                       | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI, vfs=VFS_NAME))
    try:
        raw.execute("PRAGMA journal_mode = MEMORY")
        raw.execute("PRAGMA synchronous = OFF")
    except BaseException:
        raw.close()
        forget()
        raise
    return raw, forget
