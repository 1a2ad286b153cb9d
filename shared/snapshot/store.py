"""A database in S3: a chain of immutable snapshots made of content-addressed chunks.

The SQLite file is cut into fixed-size chunks stored under ``db/<name>/chunks/<sha256>``; a
manifest lists them. ``db/<name>/manifest.json`` names the current snapshot and is only ever
replaced by a conditional write on the ETag the writer read. That write is the commit point:
a writer whose lock was broken while it stalled gets 412 and cannot overwrite a newer
snapshot, so no update is ever lost. Chunks are written before the manifest that names them,
so a reader never sees a manifest whose chunks are missing.

Each worker keeps a local copy and the manifest it matches. The state file is removed before
the copy is touched and written back only once copy and manifest agree again, so a crash in
between costs one cold download, never a wrong read.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from shared.errors import CommitConflict, DatabaseDamaged, InfrastructureError, StorageError
from shared.names import check_database
from shared.s3 import UNCHANGED, Blob, Bucket
from shared.snapshot.chunks import chunk_file, fetch_chunk, page_size
from shared.snapshot.keys import chunk_key, manifest_key, version_key, versions_prefix
from shared.snapshot.manifest import Manifest, next_version

log = logging.getLogger("srdb.storage")
T = TypeVar("T")
R = TypeVar("R")
DB_FILE = "db.sqlite"
CHUNK_CACHE = ".chunks"  # under the cache folder: the chunks reads fetched, by name (worker/pages.py)
STATE_FILE = "state.json"
_SIDE_FILES = ("-journal", "-wal", "-shm")
JSON = "application/json"


@dataclass(frozen=True)
class LocalSnapshot:
    """A local file that matches ``manifest`` (None: the database does not exist yet)."""

    database: str
    path: Path
    manifest: Manifest | None
    etag: str | None

    @property
    def version(self) -> int:
        return self.manifest.version if self.manifest else 0


class Writer:
    """What :meth:`SnapshotStore.writer` hands out: the local file to change, and its commit."""

    def __init__(self, store: SnapshotStore, snapshot: LocalSnapshot) -> None:
        self._store, self.snapshot = store, snapshot
        self.committed: LocalSnapshot | None = None

    @property
    def path(self) -> Path:
        return self.snapshot.path

    @property
    def version(self) -> int:
        """The version the writes apply to (0: the database does not exist yet)."""
        return self.snapshot.version

    def commit(self, jobs: list[str], pages: set[int] | None = None, labels: list[str] | None = None) -> LocalSnapshot:
        """Publish the changed file as the next version. CommitConflict when another writer got there first.
        ``pages``: the pages the writes changed (None: re-hash the whole file). ``labels``: what each job was."""
        if self.committed is not None:
            raise RuntimeError("a writer commits once")
        self.committed = self._store._commit(self.snapshot, jobs, pages, labels or [])
        return self.committed


@dataclass
class TransferStats:
    bytes_down: int = 0
    bytes_up: int = 0
    requests: int = 0


class SnapshotStore:
    """Keeps local copies of databases in step with S3 and commits new snapshots."""

    def __init__(
        self,
        bucket: Bucket,
        cache_dir: str | Path,
        *,
        chunk_size: int = 256 * 1024,
        concurrency: int = 16,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.bucket, self.cache_dir = bucket, Path(cache_dir)
        self._local = defaultdict(threading.Lock)  # type: defaultdict[str, threading.Lock]
        self.chunk_size, self.concurrency, self.now = chunk_size, concurrency, now
        self.stats = TransferStats()
        # History entries of committed versions that S3 did not take yet, per database.
        self._unrecorded: dict[str, list[tuple[Manifest, bytes]]] = {}
        self._history_lock = threading.Lock()
        self._history_pool: ThreadPoolExecutor | None = None  # set by defer_history()
        self._writing: dict[str, list[Future[None]]] = {}

    def defer_history(self, threads: int = 4) -> None:
        """From now on a commit returns once its manifest is written, and its history entry is written in the
        background, beside whatever the caller does next (the worker publishes the jobs' results). The caller
        must :meth:`settle_history` before another writer may commit the database: until then the version is
        current, so reads of it (as of its number or a moment after it) take the manifest and need no entry."""
        self._history_pool = self._history_pool or ThreadPoolExecutor(threads, thread_name_prefix="history")

    def settle_history(self, database: str | None = None) -> None:
        """Wait for the history entries being written in the background, of ``database`` or of all."""
        with self._history_lock:
            names = [database] if database is not None else list(self._writing)
            futures = [f for name in names for f in self._writing.pop(name, [])]
        for future in futures:
            try:
                future.result()
            except Exception:  # a StorageError is kept for the next commit already: this is a bug
                log.exception("writing a history entry failed")

    def close(self) -> None:
        """Settle and stop the background history writers (defer_history)."""
        self.settle_history()
        if self._history_pool is not None:
            self._history_pool.shutdown()
            self._history_pool = None

    def local_path(self, database: str) -> Path:
        return self.cache_dir / check_database(database) / DB_FILE

    @contextmanager
    def exclusive(self, database: str) -> Iterator[None]:
        """One batch at a time touches a local copy: across threads, and across processes on one machine."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._local[check_database(database)], open(self.cache_dir / f".{database}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def reader(self, database: str) -> Iterator[LocalSnapshot]:
        """The local copy brought up to the current snapshot, for reads: nothing changes it meanwhile
        (reads open it ``immutable``), and old snapshots (:meth:`materialize`) may be built beside it."""
        with self.exclusive(database):
            yield self.sync(database)

    @contextmanager
    def writer(self, database: str) -> Iterator[Writer]:
        """The local copy, current and ready to change, then committed or put back.

        The order is fixed here: take the copy exclusively, bring it up to the current snapshot (a
        database without a manifest only where it has no history either), mark it changing, let the
        caller apply its writes to ``writer.path``, and then either ``writer.commit(...)`` (the
        conditional manifest write) or nothing: leaving without a commit puts the copy back as the
        snapshot it was, and leaving by an exception discards it.
        """
        with self.exclusive(database):
            snapshot = self.sync(database, for_write=True)
            self._begin_write(snapshot)
            writer = Writer(self, snapshot)
            try:
                yield writer
            except BaseException:
                self.discard(database)
                raise
            if writer.committed is None:
                self._end_write(snapshot)

    def sync(self, database: str, *, for_write: bool = False) -> LocalSnapshot:
        """Bring the local copy up to the current snapshot, fetching only chunks that changed.

        ``for_write``: a database without a manifest is about to be created, which is only right when
        it has no history either; a lost ``manifest.json`` must not start a new version 1 over it."""
        folder = self.cache_dir / check_database(database)
        path = folder / DB_FILE
        local = self._load_state(database)
        found = self.bucket.get_if_changed(manifest_key(database), local.etag if local else None)
        self.stats.requests += 1
        if found is UNCHANGED and local:
            return local
        if not isinstance(found, Blob):
            self.discard(database)
            if for_write:
                self.check_no_history(database)
            return LocalSnapshot(database, path, None, None)
        self.stats.bytes_down += len(found.body)
        manifest, etag = Manifest.from_bytes(found.body), found.etag
        old = local.manifest if local else None
        if old is None or old.chunk_size != manifest.chunk_size or not path.exists():
            self.discard(database)
            old = None
        folder.mkdir(parents=True, exist_ok=True)
        self._forget_state(database)
        wanted = [i for i, digest in enumerate(manifest.chunks)
                  if old is None or i >= len(old.chunks) or old.chunks[i] != digest]
        mode = "r+b" if path.exists() else "w+b"
        with open(path, mode) as out:
            chunks = self._concurrently(lambda i: self._fetch_chunk(database, manifest.chunks[i], manifest.origins),
                                        wanted)
            for index, data in zip(wanted, chunks, strict=True):
                out.seek(index * manifest.chunk_size)
                out.write(data)
            out.truncate(manifest.file_size)
        snapshot = LocalSnapshot(database, path, manifest, etag)
        self._save_state(snapshot)
        return snapshot

    def check_no_history(self, database: str) -> None:
        prefix = versions_prefix(database)
        if any(self.bucket.list(prefix, limit=1)):
            raise DatabaseDamaged(
                f"database {database} has versions under s3://{self.bucket.name}/{prefix} but no manifest.json: "
                "nothing is written until it is repaired (copy its newest version to manifest.json); "
                "its write jobs are retried, then dead-lettered")

    def materialize(self, database: str, manifest: Manifest) -> Path:
        """A local file of an old snapshot, for reads ``as_of`` it: chunks the local copy shares with it
        are copied, only the others are fetched. One old snapshot is kept per database."""
        folder = self.cache_dir / check_database(database) / "versions"
        path = folder / f"{manifest.version}.sqlite"
        if path.exists():
            return path
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        local = self._load_state(database)
        have: dict[str, int] = {}
        if local is not None and local.manifest is not None and local.manifest.chunk_size == manifest.chunk_size:
            have = {digest: index for index, digest in enumerate(local.manifest.chunks)}
        missing = sorted({d for d in manifest.chunks if d not in have})
        fetched = dict(zip(missing, self._concurrently(lambda d: self._fetch_chunk(database, d, manifest.origins),
                                                       missing),
                           strict=True))
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out, open(local.path if have and local else os.devnull, "rb") as source:
            for digest in manifest.chunks:
                if digest in fetched:
                    out.write(fetched[digest])
                else:
                    source.seek(have[digest] * manifest.chunk_size)
                    out.write(source.read(manifest.chunk_size))
            out.truncate(manifest.file_size)
        os.replace(tmp, path)
        return path

    def _begin_write(self, snapshot: LocalSnapshot) -> None:
        """Mark the local copy as being changed: until commit, it no longer matches a manifest."""
        snapshot.path.parent.mkdir(parents=True, exist_ok=True)
        self._forget_state(snapshot.database)

    def _end_write(self, snapshot: LocalSnapshot) -> None:
        """The write was rolled back: the local copy matches its manifest again (or never existed)."""
        if snapshot.manifest is None:
            self.discard(snapshot.database)
        else:
            self._save_state(snapshot)

    def _commit(self, snapshot: LocalSnapshot, jobs: list[str], pages: set[int] | None = None,
                labels: list[str] | None = None) -> LocalSnapshot:
        """Publish the local file as the next snapshot. CommitConflict if another writer got there first.

        ``pages``: the pages the write changed (from the write-ahead log); only their chunks are
        read and hashed. None: re-hash the whole file.
        """
        size = snapshot.path.stat().st_size
        chunks, new = chunk_file(snapshot.path, self.chunk_size, snapshot.manifest, size, pages)
        try:
            manifest, etag = self.publish(snapshot.database, snapshot.manifest, snapshot.etag, size,
                                          page_size(snapshot.path), chunks, new, jobs, labels or [])
        except (CommitConflict, StorageError):
            self.discard(snapshot.database)
            raise
        committed = LocalSnapshot(snapshot.database, snapshot.path, manifest, etag)
        self._save_state(committed)
        return committed

    def publish(self, database: str, old: Manifest | None, etag: str | None, size: int, page_size: int,
                chunks: list[str], new: dict[str, bytes], jobs: list[str],
                labels: list[str], chunk_size: int = 0) -> tuple[Manifest, str]:
        """Commit the next version after ``old`` (read with ``etag``; None: the database's first): the chunks S3
        may not have (``new``) first, then the manifest naming ``chunks`` (of ``chunk_size`` bytes; 0: the
        store's) by the conditional write, then its history entry. The new manifest and its ETag;
        CommitConflict if another writer got there first."""
        self._concurrently(lambda item: self._put(chunk_key(database, item[0]), item[1]), list(new.items()))
        manifest = next_version(old, file_size=size, page_size=page_size, chunk_size=chunk_size or self.chunk_size,
                                chunks=chunks, created_at=self.now(), jobs=jobs, labels=labels)
        body = manifest.to_bytes()
        etag = put_manifest(self.bucket, database, manifest, body, etag)
        self.stats.requests += 1
        self.stats.bytes_up += len(body)
        # History for point-in-time reads; written after the commit so it never names a lost write,
        # and never over an entry that is there already. The commit stands whatever happens here: an
        # entry S3 would not take is written by this store's next commit of the database, or by the
        # collector while its version is current (reaper/gc.py).
        with self._history_lock:
            entries = [*self._unrecorded.pop(database, []), (manifest, body)]
            if self._history_pool is not None:
                self._writing.setdefault(database, []).append(
                    self._history_pool.submit(self._record_history, database, entries))
        if self._history_pool is None:
            self._record_history(database, entries)
        self.stats.requests += 1
        return manifest, etag

    def _record_history(self, database: str, entries: list[tuple[Manifest, bytes]]) -> None:
        for index, (manifest, body) in enumerate(entries):
            try:
                put_version(self.bucket, database, manifest, body)
            except StorageError as exc:
                log.warning("%s; this worker writes it with its next commit of %s", exc, database)
                with self._history_lock:
                    self._unrecorded.setdefault(database, []).extend(entries[index:])
                return

    def discard(self, database: str) -> None:
        """Drop the local copy (after a failed commit, or when the database vanished)."""
        folder = self.cache_dir / check_database(database)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)

    def _concurrently(self, work: Callable[[T], R], items: list[T]) -> list[R]:
        """Chunk transfers run ``concurrency`` at a time; a single one needs no pool."""
        if len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(min(self.concurrency, len(items))) as pool:
            return list(pool.map(work, items))

    def _put(self, key: str, body: bytes) -> None:
        self.bucket.put(key, body)
        self.stats.requests += 1
        self.stats.bytes_up += len(body)

    def _fetch_chunk(self, database: str, digest: str, origins: list[str]) -> bytes:
        try:  # a chunk the worker's reads fetched already (worker/pages.py keeps them by name)
            return (self.cache_dir / CHUNK_CACHE / digest).read_bytes()
        except OSError:
            pass
        data = fetch_chunk(self.bucket, database, digest, origins)
        self.stats.requests += 1
        self.stats.bytes_down += len(data)
        return data

    def _load_state(self, database: str) -> LocalSnapshot | None:
        folder = self.cache_dir / database
        try:
            doc = json.loads((folder / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        manifest = Manifest.from_bytes(json.dumps(doc["manifest"]).encode())
        return LocalSnapshot(database, folder / DB_FILE, manifest, doc["etag"])

    def _save_state(self, snapshot: LocalSnapshot) -> None:
        assert snapshot.manifest is not None
        folder = snapshot.path.parent
        tmp = folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps({"manifest": asdict(snapshot.manifest), "etag": snapshot.etag}))
        os.replace(tmp, folder / STATE_FILE)

    def _forget_state(self, database: str) -> None:
        folder = self.cache_dir / database
        (folder / STATE_FILE).unlink(missing_ok=True)
        for suffix in _SIDE_FILES:
            (folder / (DB_FILE + suffix)).unlink(missing_ok=True)


def put_manifest(bucket: Bucket, database: str, manifest: Manifest, body: bytes, etag: str | None) -> str:
    """The conditional write that commits: over ``etag`` (the manifest the writer read), or over
    nothing for a new database. Returns the new ETag; CommitConflict if another write got there first.

    A PUT whose response was lost may have been applied, and botocore's retry of it then fails
    its own condition. So after any failure the current manifest is read back: if it carries this
    commit's writer id, the commit happened.
    """
    key = manifest_key(database)
    failure: InfrastructureError
    try:
        if etag:
            written = bucket.put_if_match(key, body, etag, content_type=JSON)
        else:
            written = bucket.put_if_none_match(key, body, content_type=JSON)
        if written is not None:
            return written
        failure = CommitConflict(f"database {database} changed under this writer "
                                 f"(version {manifest.version - 1} is no longer current)")
    except StorageError as exc:
        failure = StorageError(f"committing {database}: {exc}")
        failure.__cause__ = exc
    try:
        current = current_manifest(bucket, database)
    except StorageError:
        current = None
    if current is not None and current[0].writer == manifest.writer:
        return current[1]
    raise failure


def put_version(bucket: Bucket, database: str, manifest: Manifest, body: bytes) -> None:
    """Write the history entry of a committed version, only where there is none (If-None-Match).

    An entry that is there already is left as it is and the clash logged: it is this commit's own
    when a PUT whose response was lost was sent again, and history is never overwritten."""
    key = version_key(database, manifest.version)
    try:
        written = bucket.put_if_none_match(key, body, content_type=JSON)
    except StorageError as exc:
        raise StorageError(f"version {manifest.version} of {database} is current, but its history entry "
                           f"was not written: {exc}") from exc
    if written is None:
        log.warning("database %s: history entry %s exists already; left as it is", database, key)


def current_manifest(bucket: Bucket, database: str) -> tuple[Manifest, str] | None:
    """The current manifest and its ETag; None when the database does not exist. StorageError when
    S3 fails: an outage is not an absent database."""
    found = bucket.get(manifest_key(database))
    return (Manifest.from_bytes(found.body), found.etag) if found is not None else None
