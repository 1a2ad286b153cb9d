"""Pages on demand: read jobs open a version straight from its chunks in S3, fetching only the chunks their
queries touch, through a SQLite VFS (APSW; the standard library cannot register one).

A version's manifest maps every byte of the file to a chunk (offset // chunk_size), and a chunk never
changes, so a chunk once fetched is good for ever: they are kept on local disk by name, least recently
used first out past ``SRDB_CACHE_BYTES`` (a chunk being read is never evicted under its reader). A read
of a cold worker costs the chunks its query touches, a read as of an old version the chunks that version
does not share with what is cached, and nothing is ever materialized. Consecutive chunks read in order
(a scan) are fetched ahead, several at a time.

The file is immutable to SQLite (``immutable=1``, no locks, no journal): what a read sees is exactly the
version its manifest names.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import apsw

from shared.guard import Guard, prepare_job_connection
from shared.s3 import UNCHANGED, Blob, Bucket
from shared.snapshot.chunks import fetch_chunk
from shared.snapshot.keys import manifest_key
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import TransferStats
from worker.apsw_conn import Connection

VFS_NAME = "srdb-pages"
READ_AHEAD = 32  # chunks fetched ahead of a scan: 8 MiB of 256 KiB chunks (bench --only pages: scans)
_IMMUTABLE = apsw.mapping_device_characteristics["SQLITE_IOCAP_IMMUTABLE"]


class ChunkCache:
    """Chunks on local disk by name, bounded to ``max_bytes`` (least recently used out first)."""

    def __init__(self, bucket: Bucket, folder: Path, max_bytes: int, stats: TransferStats,
                 concurrency: int = 8) -> None:
        self.bucket, self.folder, self.max_bytes, self.stats = bucket, folder, max_bytes, stats
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict(
            (p.name, p.stat().st_size) for p in sorted(self.folder.iterdir(), key=lambda p: p.stat().st_atime)
            if not p.name.startswith("."))
        self._pending: dict[str, Future[bytes]] = {}
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="srdb-chunks")

    @property
    def size(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def get(self, database: str, origins: list[str], digest: str) -> bytes:
        with self._lock:
            cached = digest in self._sizes
            if cached:
                self._sizes.move_to_end(digest)
        if cached:
            try:
                return (self.folder / digest).read_bytes()  # outside the lock: readers do not queue
            except FileNotFoundError:  # evicted meanwhile: fetched again
                pass
        with self._lock:
            pending = self._pending.get(digest)
            if pending is None:
                pending = self._pending[digest] = self._pool.submit(self._fetch, database, origins, digest)
        return pending.result()

    def ahead(self, database: str, origins: list[str], digests: list[str]) -> None:
        """Start fetching chunks a scan will want next."""
        with self._lock:
            for digest in digests:
                if digest not in self._sizes and digest not in self._pending:
                    self._pending[digest] = self._pool.submit(self._fetch, database, origins, digest)

    def put(self, digest: str, data: bytes) -> None:
        """Keep a chunk this worker made (a commit's): the next read of it costs no request."""
        with self._lock:
            if digest in self._sizes:
                return
        self._keep(digest, data)

    def _fetch(self, database: str, origins: list[str], digest: str) -> bytes:
        try:
            data = fetch_chunk(self.bucket, database, digest, origins)
            with self._lock:
                self.stats.requests += 1
                self.stats.bytes_down += len(data)
            self._keep(digest, data)
            return data
        finally:
            with self._lock:
                self._pending.pop(digest, None)

    def _keep(self, digest: str, data: bytes) -> None:
        tmp = self.folder / f".{digest}.{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / digest)
        with self._lock:
            self._sizes[digest] = len(data)
            self._evict()

    def _evict(self) -> None:
        total = sum(self._sizes.values())
        while total > self.max_bytes and len(self._sizes) > 1:
            oldest, size = self._sizes.popitem(last=False)
            (self.folder / oldest).unlink(missing_ok=True)  # a reader holding its bytes keeps them
            total -= size

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Unlocked:
    """What SQLite asks of a file that no other connection shares at once (a version is immutable; an overlay
    has one user at a time): no locks, nothing to sync, no file controls."""

    def xLock(self, level: int) -> None:
        pass

    def xUnlock(self, level: int) -> None:
        pass

    def xCheckReservedLock(self) -> bool:
        return False

    def xFileControl(self, op: int, pointer: int) -> bool:
        return False

    def xSectorSize(self) -> int:
        return 4096

    def xSync(self, flags: int) -> None:
        pass


class _PageFile(Unlocked):
    """One version of a database as SQLite reads it: immutable, its bytes from the chunk cache."""

    def __init__(self, database: str, manifest: Manifest, cache: ChunkCache) -> None:
        self.database, self.manifest, self.cache = database, manifest, cache
        self._last: tuple[int, bytes] = (-1, b"")
        self._previous = -2

    def _chunk(self, index: int) -> bytes:
        if self._last[0] == index:
            return self._last[1]
        chunks = self.manifest.chunks
        if index == self._previous + 1:  # in order: a scan; fetch what it will want next
            self.cache.ahead(self.database, self.manifest.origins, chunks[index + 1:index + 1 + READ_AHEAD])
        self._previous = index
        data = self.cache.get(self.database, self.manifest.origins, chunks[index])
        self._last = (index, data)
        return data

    def xRead(self, amount: int, offset: int) -> bytes:
        size, end = self.manifest.chunk_size, min(offset + amount, self.manifest.file_size)
        parts = []
        while offset < end:
            index, start = divmod(offset, size)
            take = min(size - start, end - offset)
            parts.append(self._chunk(index)[start:start + take])
            offset += take
        return b"".join(parts)  # short at the end of the file: SQLite fills the rest with zeros

    def xFileSize(self) -> int:
        return self.manifest.file_size

    def xClose(self) -> None:
        self._last = (-1, b"")

    def xDeviceCharacteristics(self) -> int:
        return int(_IMMUTABLE)

    def xTruncate(self, size: int) -> None:
        raise apsw.ReadOnlyError("a version is immutable")

    def xWrite(self, data: bytes, offset: int) -> None:
        raise apsw.ReadOnlyError("a version is immutable")


class _Vfs(apsw.VFS):
    """Opens ``srdb-<key>`` names as the files registered under them (:func:`register`); anything else
    (SQLite's temporary files) as the default VFS would."""

    def __init__(self) -> None:
        self.files: dict[str, Callable[[], Any]] = {}
        self.lock = threading.Lock()
        super().__init__(VFS_NAME, base="")

    def xOpen(self, name: Any, flags: list[int]) -> Any:
        filename = name.filename() if isinstance(name, apsw.URIFilename) else name
        with self.lock:
            found = self.files.get(os.path.basename(filename or ""))
        if found is None:
            return super().xOpen(name, flags)
        return found()


_vfs: _Vfs | None = None
_vfs_lock = threading.Lock()


def _registered() -> _Vfs:
    global _vfs
    with _vfs_lock:
        if _vfs is None:
            _vfs = _Vfs()
        return _vfs


def register(make_file: Callable[[], Any],
             open_connection: Callable[[str], apsw.Connection]) -> tuple[apsw.Connection, Callable[[], None]]:
    """A connection (``open_connection(name)``) on a file of srdb's VFS that ``make_file()`` makes, and what
    forgets the file once the connection is closed."""
    vfs = _registered()
    key = f"srdb-{uuid.uuid4().hex}"
    with vfs.lock:
        vfs.files[key] = make_file
    try:
        return open_connection(key), lambda: _forget(vfs, key)
    except BaseException:
        _forget(vfs, key)
        raise


def _forget(vfs: _Vfs, key: str) -> None:
    with vfs.lock:
        vfs.files.pop(key, None)


class Pages:
    """What a worker reads pages with: the chunk cache and the current manifests."""

    def __init__(self, bucket: Bucket, folder: Path, max_bytes: int, stats: TransferStats,
                 concurrency: int = 16) -> None:
        self.cache = ChunkCache(bucket, folder, max_bytes, stats, concurrency)
        self.manifests = Manifests(bucket, stats)

    def open(self, database: str, manifest: Manifest, guard: Guard) -> tuple[Connection, Callable[[], None]]:
        return open_version(database, manifest, self.cache, guard)

    def close(self) -> None:
        self.cache.close()
        self.manifests.close()


def open_version(database: str, manifest: Manifest, cache: ChunkCache,
                 guard: Guard) -> tuple[Connection, Callable[[], None]]:
    """A guarded read-only connection on ``manifest``'s version, and what forgets it once it is closed."""
    raw, forget = register(lambda: _PageFile(database, manifest, cache), lambda key: apsw.Connection(
        f"file:{key}?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI, vfs=VFS_NAME))
    try:
        conn = Connection(raw)
        prepare_job_connection(conn, guard)
    except BaseException:
        raw.close()
        forget()
        raise
    return conn, forget


def cap_page_heap(limit: int) -> None:
    """APSW's SQLite is a library of its own, with a heap of its own: capped as the standard one is
    (shared.guard.cap_sqlite_heap), only ever lowered."""
    current = apsw.hard_heap_limit(-1)
    if current == 0 or limit < current:
        apsw.hard_heap_limit(int(limit))


class Manifests:
    """The current manifest of each database, asked again each batch with If-None-Match: unchanged, a 304.

    A batch may ask ahead (:meth:`ahead`): the read starts as soon as a job names its database, beside the
    job's status document, and the batch's first :meth:`known` of that database takes it instead of asking
    again — a round trip off a write's path. What a read ahead answers is never older than the batch, and a
    commit's conditional manifest write fences it as it fences any read; one a batch did not take is
    dropped when it ends (:meth:`forget_ahead`), and one this worker's own commit overtook, at once."""

    def __init__(self, bucket: Bucket, stats: TransferStats) -> None:
        self.bucket, self.stats = bucket, stats
        self._known: dict[str, tuple[Manifest, str]] = {}
        self._ahead: dict[str, Future[tuple[Manifest, str] | None]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def current(self, database: str) -> Manifest | None:
        found = self.known(database)
        return found[0] if found is not None else None

    def ahead(self, database: str) -> None:
        """Start reading ``database``'s manifest for this batch, unless a read of it is already under way."""
        with self._lock:
            if database in self._ahead:
                return
            if self._pool is None:  # a FIFO batch holds at most 10 messages: as many databases
                self._pool = ThreadPoolExecutor(10, thread_name_prefix="srdb-manifests")
            with contextlib.suppress(RuntimeError):  # closed: the worker stops, and whatever asks reads for itself
                self._ahead[database] = self._pool.submit(self._read, database)

    def forget_ahead(self) -> None:
        """The batch ends: reads ahead it did not take are stale for the next one."""
        with self._lock:
            ahead, self._ahead = self._ahead, {}
        for future in ahead.values():
            future.cancel()

    def close(self) -> None:
        self.forget_ahead()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def known(self, database: str) -> tuple[Manifest, str] | None:
        """The current manifest and its ETag (None: the database does not exist)."""
        with self._lock:
            ahead = self._ahead.pop(database, None)
        if ahead is not None and ahead.exception() is None:  # one that failed is asked again, as if never made
            return ahead.result()
        return self._read(database)

    def _read(self, database: str) -> tuple[Manifest, str] | None:
        with self._lock:
            known = self._known.get(database)
        found = self.bucket.get_if_changed(manifest_key(database), known[1] if known else None)
        self.stats.requests += 1
        if found is UNCHANGED and known is not None:
            return known
        fresh = None
        if isinstance(found, Blob):
            self.stats.bytes_down += len(found.body)
            fresh = (Manifest.from_bytes(found.body), found.etag)
        with self._lock:
            if self._known.get(database) is known:  # else a commit of this worker's came in meanwhile: newer
                if fresh is None:
                    self._known.pop(database, None)
                else:
                    self._known[database] = fresh
        return fresh

    def remember(self, database: str, manifest: Manifest, etag: str) -> None:
        """A manifest this worker committed: the next batch asks S3 whether it is still current."""
        with self._lock:
            self._known[database] = (manifest, etag)
            overtaken = self._ahead.pop(database, None)
        if overtaken is not None:
            overtaken.cancel()
