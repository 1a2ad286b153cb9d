"""Time travel: the retained snapshots of a database, reads as of one of them, and restore.

The reaper deletes versions older than the retention window (reaper/gc.py); the current one is
always kept, and a read as of a collected version says where the window begins.

Every commit leaves its manifest under ``db/<name>/versions/<version>.json`` as well as in
``manifest.json``. Chunks are content-addressed and never overwritten, so an old manifest is a
complete old database. Restoring makes an old manifest current again as a *new* version, through
the same conditional write as any commit: nothing is overwritten, and a writer that was working
on the version before the restore gets 412 and runs its jobs again on the restored one.
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

from shared.errors import DatabaseNotFound, VersionNotFound, no_version_yet
from shared.names import check_database
from shared.s3 import Bucket
from shared.snapshot.keys import version_key, versions_prefix
from shared.snapshot.manifest import Manifest, to_millis
from shared.snapshot.store import current_manifest, put_manifest, put_version


class History:
    """The version manifests of the databases in one bucket."""

    def __init__(self, bucket: Bucket, *, now: Callable[[], float] = time.time) -> None:
        self.bucket, self.now = bucket, now

    def current(self, database: str) -> tuple[Manifest, str]:
        found = current_manifest(self.bucket, check_database(database))
        if found is None:
            raise DatabaseNotFound(no_version_yet(database))
        return found

    def versions(self, database: str) -> list[int]:
        """Every retained version number, oldest first."""
        prefix = versions_prefix(database)
        names = (key[len(prefix):].removesuffix(".json") for key in self.bucket.list(prefix))
        return sorted(int(name) for name in names if name.isdigit())

    def manifest(self, database: str, version: int) -> Manifest:
        found = self.bucket.get(version_key(database, version))
        if found is None:
            oldest = next(iter(self.versions(database)), None)
            if oldest is not None and version < oldest:
                raise VersionNotFound(f"version {version} of {database} is no longer retained: "
                                      f"{self._window(database, oldest)}")
            raise VersionNotFound(f"database {database} has no retained version {version}")
        return Manifest.from_bytes(found.body)

    def oldest(self, database: str) -> Manifest:
        """The oldest snapshot still retained: where time travel's window begins."""
        current, _ = self.current(database)
        older = [v for v in self.versions(database) if v < current.version]
        for version in older:  # the collector may delete the oldest while this reads it
            found = self.bucket.get(version_key(database, version))
            if found is not None:
                return Manifest.from_bytes(found.body)
        return current

    def _window(self, database: str, oldest: int) -> str:
        try:
            first = self.manifest(database, oldest)
        except VersionNotFound:
            return f"history begins at version {oldest}"
        when = datetime.fromtimestamp(first.created_at, UTC).isoformat(timespec="milliseconds")
        return (f"history begins at version {oldest} ({when}); the reaper collects versions older than "
                "the retention window (SRDB_RETENTION)")

    def list(self, database: str, limit: int = 20) -> list[Manifest]:
        """The newest ``limit`` retained snapshots, newest first."""
        current, _ = self.current(database)
        numbers = [v for v in self.versions(database) if v < current.version][-max(0, limit - 1):][::-1]
        with ThreadPoolExecutor(8) as pool:
            older = list(pool.map(lambda v: self.manifest(database, v), numbers))
        return [current, *older][:limit]

    def resolve(self, database: str, as_of: int | str | datetime, current: Manifest | None = None) -> Manifest:
        """The snapshot a read ``as_of`` a version number or a moment (a ``datetime``, or ISO 8601 text) sees."""
        if isinstance(as_of, str):
            as_of = datetime.fromisoformat(as_of)
        if current is None:
            current, _ = self.current(database)
        if isinstance(as_of, int):
            if as_of == current.version:
                return current
            if as_of > current.version:
                raise VersionNotFound(f"database {database} has no version {as_of} yet "
                                      f"(the current version is {current.version})")
            return self.manifest(database, as_of)
        moment = as_of.timestamp()
        if moment >= current.created_at:
            return current
        # Versions are committed in order, so their times are sorted: a binary search reads log2(n) of them.
        numbers = [v for v in self.versions(database) if v < current.version]
        times: dict[int, float] = {}

        def created(index: int) -> float:
            version = numbers[index]
            if version not in times:
                times[version] = self.manifest(database, version).created_at
            return times[version]

        index = bisect.bisect_right(range(len(numbers)), moment, key=created) - 1
        if index < 0:
            first = numbers[0] if numbers else current.version
            if first > 1:
                raise VersionNotFound(f"{as_of.isoformat()} is before what {database} retains: "
                                      f"{self._window(database, first)}")
            raise VersionNotFound(f"database {database} did not exist yet at {as_of.isoformat()}")
        return self.manifest(database, numbers[index])

    def restore(self, database: str, version: int) -> Manifest:
        """Make ``version`` current again as a new version; return the new manifest."""
        current, etag = self.current(database)
        old = self.resolve(database, version, current)
        restored = replace(old, version=current.version + 1, created_at=to_millis(self.now()), jobs=[], labels=[],
                           writer=uuid.uuid4().hex, restored_from=old.version)
        body = restored.to_bytes()
        put_manifest(self.bucket, database, restored, body, etag)
        put_version(self.bucket, database, restored, body)
        return restored
