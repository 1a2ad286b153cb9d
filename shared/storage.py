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

import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.awserrors import MISSING_CODES, NOT_MODIFIED_CODES, PRECONDITION_CODES, error_code
from shared.errors import CommitConflict, DatabaseDamaged, StorageError
from shared.keys import check_database, chunk_key, manifest_key, version_key
from shared.wal import dirty_chunks

log = logging.getLogger("srdb.storage")
T = TypeVar("T")
R = TypeVar("R")
DB_FILE = "db.sqlite"
STATE_FILE = "state.json"
_SIDE_FILES = ("-journal", "-wal", "-shm")


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

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
            return cls(int(doc["version"]), int(doc["file_size"]), int(doc["page_size"]), int(doc["chunk_size"]),
                       list(doc["chunks"]), float(doc["created_at"]), list(doc.get("jobs", [])),
                       str(doc.get("writer", "")), doc.get("restored_from"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatabaseDamaged(f"a manifest does not parse: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return (f"Manifest(version={self.version}, file_size={self.file_size}, chunks={len(self.chunks)}, "
                f"created_at={self.created_at}, writer={self.writer!r}, restored_from={self.restored_from})")


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


@dataclass
class TransferStats:
    bytes_down: int = 0
    bytes_up: int = 0
    requests: int = 0


class SnapshotStore:
    """Keeps local copies of databases in step with S3 and commits new snapshots."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        cache_dir: str | Path,
        *,
        chunk_size: int = 256 * 1024,
        concurrency: int = 16,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.s3, self.bucket, self.cache_dir = s3, bucket, Path(cache_dir)
        self.chunk_size, self.concurrency, self.now = chunk_size, concurrency, now
        self.stats = TransferStats()

    def local_path(self, database: str) -> Path:
        return self.cache_dir / check_database(database) / DB_FILE

    def sync(self, database: str, *, for_write: bool = False) -> LocalSnapshot:
        """Bring the local copy up to the current snapshot, fetching only chunks that changed.

        ``for_write``: a database without a manifest is about to be created, which is only right when
        it has no history either; a lost ``manifest.json`` must not start a new version 1 over it."""
        folder = self.cache_dir / check_database(database)
        path = folder / DB_FILE
        local = self._load_state(database)
        try:
            extra = {"IfNoneMatch": local.etag} if local and local.etag else {}
            response = self.s3.get_object(Bucket=self.bucket, Key=manifest_key(database), **extra)
            self.stats.requests += 1
        except ClientError as exc:
            self.stats.requests += 1
            code = error_code(exc)
            if code in NOT_MODIFIED_CODES and local:
                return local
            if code in MISSING_CODES:
                self.discard(database)
                if for_write:
                    self._check_no_history(database)
                return LocalSnapshot(database, path, None, None)
            raise StorageError(f"reading manifest of {database}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading manifest of {database}: {exc}") from exc
        body = response["Body"].read()
        self.stats.bytes_down += len(body)
        manifest, etag = Manifest.from_bytes(body), str(response["ETag"])
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
            chunks = self._concurrently(lambda i: self._fetch_chunk(database, manifest.chunks[i]), wanted)
            for index, data in zip(wanted, chunks, strict=True):
                out.seek(index * manifest.chunk_size)
                out.write(data)
            out.truncate(manifest.file_size)
        snapshot = LocalSnapshot(database, path, manifest, etag)
        self._save_state(snapshot)
        return snapshot

    def _check_no_history(self, database: str) -> None:
        prefix = version_key(database, 0).rsplit("/", 1)[0] + "/"
        try:
            found = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"listing the history of {database}: {exc}") from exc
        if found:
            raise DatabaseDamaged(
                f"database {database} has versions under s3://{self.bucket}/{prefix} but no manifest.json: "
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
        fetched = dict(zip(missing, self._concurrently(lambda d: self._fetch_chunk(database, d), missing),
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

    def begin_write(self, snapshot: LocalSnapshot) -> None:
        """Mark the local copy as being changed: until commit, it no longer matches a manifest."""
        snapshot.path.parent.mkdir(parents=True, exist_ok=True)
        self._forget_state(snapshot.database)

    def end_write(self, snapshot: LocalSnapshot) -> None:
        """The write was rolled back: the local copy matches its manifest again (or never existed)."""
        if snapshot.manifest is None:
            self.discard(snapshot.database)
        else:
            self._save_state(snapshot)

    def commit(self, snapshot: LocalSnapshot, jobs: list[str], pages: set[int] | None = None) -> LocalSnapshot:
        """Publish the local file as the next snapshot. CommitConflict if another writer got there first.

        ``pages``: the pages the write changed (from the write-ahead log); only their chunks are
        read and hashed. None: re-hash the whole file.
        """
        database, old = snapshot.database, snapshot.manifest
        size = snapshot.path.stat().st_size
        chunks, new = self._chunk_file(snapshot.path, old, size, pages)
        self._concurrently(lambda item: self._put(chunk_key(database, item[0]), item[1]), list(new.items()))
        manifest = Manifest(
            version=snapshot.version + 1,
            file_size=size,
            page_size=_page_size(snapshot.path),
            chunk_size=self.chunk_size,
            chunks=chunks,
            created_at=to_millis(self.now()),
            jobs=jobs,
            writer=uuid.uuid4().hex,
        )
        body = manifest.to_bytes()
        committed = LocalSnapshot(database, snapshot.path, manifest, self._put_manifest(snapshot, manifest, body))
        self._save_state(committed)
        # History for point-in-time reads; written after the commit so it never names a lost write,
        # and never over an entry that is there already.
        put_version(self.s3, self.bucket, database, manifest, body)
        self.stats.requests += 1
        return committed

    def _put_manifest(self, snapshot: LocalSnapshot, manifest: Manifest, body: bytes) -> str:
        try:
            etag = put_manifest(self.s3, self.bucket, snapshot.database, manifest, body, snapshot.etag)
        except (CommitConflict, StorageError):
            self.discard(snapshot.database)
            raise
        self.stats.requests += 1
        self.stats.bytes_up += len(body)
        return etag

    def discard(self, database: str) -> None:
        """Drop the local copy (after a failed commit, or when the database vanished)."""
        folder = self.cache_dir / check_database(database)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)

    def _chunk_file(self, path: Path, old: Manifest | None, size: int,
                    pages: set[int] | None) -> tuple[list[str], dict[str, bytes]]:
        """The file's chunk hashes, and the chunks S3 does not have yet."""
        count = -(-size // self.chunk_size)
        same_layout = old is not None and old.chunk_size == self.chunk_size
        previous = old.chunks if old is not None and same_layout else []
        if previous and old is not None and pages is not None:
            dirty = dirty_chunks(pages, _page_size(path), self.chunk_size, old.file_size, size)
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
                f.seek(index * self.chunk_size)
                data = f.read(self.chunk_size)
                digest = hashlib.sha256(data).hexdigest()
                chunks.append(digest)
                if digest not in known:
                    new[digest] = data
        return chunks, new

    def _concurrently(self, work: Callable[[T], R], items: list[T]) -> list[R]:
        """Chunk transfers run ``concurrency`` at a time; a single one needs no pool."""
        if len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(min(self.concurrency, len(items))) as pool:
            return list(pool.map(work, items))

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"writing s3://{self.bucket}/{key}: {exc}") from exc
        self.stats.requests += 1
        self.stats.bytes_up += len(body)

    def _fetch_chunk(self, database: str, digest: str) -> bytes:
        key = chunk_key(database, digest)
        for _ in range(3):
            try:
                data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"reading s3://{self.bucket}/{key}: {exc}") from exc
            self.stats.requests += 1
            self.stats.bytes_down += len(data)
            if hashlib.sha256(data).hexdigest() == digest:
                return data
        raise StorageError(f"chunk s3://{self.bucket}/{key} does not match its hash after 3 reads")

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


def to_millis(epoch: float) -> float:
    """Snapshot times are whole milliseconds, so a time printed to the millisecond names its snapshot exactly."""
    return math.floor(epoch * 1000) / 1000


def put_manifest(s3: Any, bucket: str, database: str, manifest: Manifest, body: bytes, etag: str | None) -> str:
    """The conditional write that commits: over ``etag`` (the manifest the writer read), or over
    nothing for a new database. Returns the new ETag; CommitConflict if another write got there first.

    A PUT whose response was lost may have been applied, and botocore's retry of it then fails
    its own condition. So after any failure the current manifest is read back: if it carries this
    commit's writer id, the commit happened.
    """
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        response = s3.put_object(Bucket=bucket, Key=manifest_key(database), Body=body,
                                 ContentType="application/json", **condition)
        return str(response["ETag"])
    except (ClientError, BotoCoreError) as exc:
        failure: Exception = exc
    try:
        current = current_manifest(s3, bucket, database)
    except StorageError:
        current = None
    if current is not None and current[0].writer == manifest.writer:
        return current[1]
    if isinstance(failure, ClientError) and error_code(failure) in PRECONDITION_CODES:
        raise CommitConflict(f"database {database} changed under this writer "
                             f"(version {manifest.version - 1} is no longer current)") from failure
    raise StorageError(f"committing {database}: {failure}") from failure


def put_version(s3: Any, bucket: str, database: str, manifest: Manifest, body: bytes) -> None:
    """Write the history entry of a committed version, only where there is none (If-None-Match).

    An entry that is there already is this commit's own when its writer id matches (a PUT whose
    response was lost and was sent again); any other is left as it is and the clash logged."""
    key = version_key(database, manifest.version)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*")
    except ClientError as exc:
        if error_code(exc) not in PRECONDITION_CODES:
            raise StorageError(f"version {manifest.version} of {database} is current, but its history entry "
                               f"was not written: {exc}") from exc
        log.warning("database %s: history entry %s exists already; left as it is", database, key)
    except BotoCoreError as exc:
        raise StorageError(f"version {manifest.version} of {database} is current, but its history entry "
                           f"was not written: {exc}") from exc


def current_manifest(s3: Any, bucket: str, database: str) -> tuple[Manifest, str] | None:
    """The current manifest and its ETag; None when the database does not exist. StorageError when
    S3 fails: an outage is not an absent database."""
    try:
        response = s3.get_object(Bucket=bucket, Key=manifest_key(database))
        return Manifest.from_bytes(response["Body"].read()), str(response["ETag"])
    except ClientError as exc:
        if error_code(exc) in MISSING_CODES:
            return None
        raise StorageError(f"reading manifest of {database}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"reading manifest of {database}: {exc}") from exc


def _page_size(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(18)
    if len(header) < 18:
        return 0
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size
