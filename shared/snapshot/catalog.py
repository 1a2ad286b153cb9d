"""The databases of a bucket, as objects: list them with their size and history, drop one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared.errors import DatabaseNotFound
from shared.names import DATABASE_RE
from shared.s3 import Bucket
from shared.snapshot.keys import (
    DATABASES_PREFIX,
    database_prefix,
    forks_prefix,
    gc_state_key,
    manifest_key,
    versions_prefix,
)
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import current_manifest


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    size: int  # bytes of the current version's file
    version: int
    last_write: float  # epoch seconds of the current version
    forked_from: str | None = None  # "source@version" for a fork (snapshot/fork.py)


class Catalog:
    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def databases(self, *, concurrency: int = 16) -> list[DatabaseInfo]:
        """Every database with a current version, by name."""
        names = [n for n in self.bucket.folders(DATABASES_PREFIX) if DATABASE_RE.fullmatch(n)]
        with ThreadPoolExecutor(max(1, min(concurrency, len(names)))) as pool:
            found = list(pool.map(lambda n: (n, current_manifest(self.bucket, n)), names))
        return [DatabaseInfo(name, m.file_size, m.version, m.created_at, _origin(m)) for name, (m, _) in
                ((n, f) for n, f in found if f is not None)]

    def drop(self, database: str) -> int:
        """Delete the database and its whole history; the number of objects deleted. The manifest goes
        first, so from then on the database reads as one that does not exist; a writer caught in between
        fails its conditional commit and, once the rest is gone, creates the database anew."""
        if current_manifest(self.bucket, database) is None:
            raise DatabaseNotFound(f"database {database} does not exist")
        self.bucket.delete(manifest_key(database))
        deleted = 1
        # The history before the chunks: a history left without chunks would name snapshots that are gone.
        prefixes = [versions_prefix(database), database_prefix(database)]
        if self._forked(database):  # its forks still name its chunks: those stay, with the forks' markers
            prefixes = [versions_prefix(database), gc_state_key(database)]
        for prefix in prefixes:
            keys = list(self.bucket.list(prefix))
            for start in range(0, len(keys), 1000):
                self.bucket.delete_many(keys[start:start + 1000])
            deleted += len(keys)
        return deleted

    def _forked(self, database: str) -> bool:
        """Whether a fork that exists names this database among its origins."""
        prefix = forks_prefix(database)
        for key in self.bucket.list(prefix):
            found = current_manifest(self.bucket, key[len(prefix):].removesuffix(".json"))
            if found is not None and database in found[0].origins:
                return True
        return False


def _origin(manifest: Manifest) -> str | None:
    forked = manifest.forked_from
    return f"{forked['database']}@{forked['version']}" if forked else None
