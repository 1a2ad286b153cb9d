"""Time travel: the retained snapshots of a database, reads as of one of them, and restore.

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
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.awserrors import MISSING_CODES, error_code
from shared.errors import DatabaseNotFound, StorageError, VersionNotFound
from shared.jobs import AsOf, as_of_time
from shared.keys import check_database, version_key
from shared.storage import Manifest, current_manifest, put_manifest, put_version, to_millis


class History:
    """The version manifests of the databases in one bucket."""

    def __init__(self, s3: Any, bucket: str, *, now: Callable[[], float] = time.time) -> None:
        self.s3, self.bucket, self.now = s3, bucket, now

    def current(self, database: str) -> tuple[Manifest, str]:
        found = current_manifest(self.s3, self.bucket, check_database(database))
        if found is None:
            raise DatabaseNotFound(f"database {database} does not exist: no write has created it yet")
        return found

    def versions(self, database: str) -> list[int]:
        """Every retained version number, oldest first."""
        prefix = f"db/{check_database(database)}/versions/"
        found: list[int] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix):].removesuffix(".json")
                    if name.isdigit():
                        found.append(int(name))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"listing versions of {database}: {exc}") from exc
        return sorted(found)

    def manifest(self, database: str, version: int) -> Manifest:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=version_key(database, version))["Body"].read()
        except ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                raise VersionNotFound(f"database {database} has no retained version {version}") from None
            raise StorageError(f"reading version {version} of {database}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading version {version} of {database}: {exc}") from exc
        return Manifest.from_bytes(body)

    def list(self, database: str, limit: int = 20) -> list[Manifest]:
        """The newest ``limit`` retained snapshots, newest first."""
        current, _ = self.current(database)
        numbers = [v for v in self.versions(database) if v < current.version][-max(0, limit - 1):][::-1]
        with ThreadPoolExecutor(8) as pool:
            older = list(pool.map(lambda v: self.manifest(database, v), numbers))
        return [current, *older][:limit]

    def resolve(self, database: str, as_of: AsOf, current: Manifest | None = None) -> Manifest:
        """The snapshot a read ``as_of`` a version number or a time sees."""
        if current is None:
            current, _ = self.current(database)
        if isinstance(as_of, int):
            if as_of == current.version:
                return current
            if as_of > current.version:
                raise VersionNotFound(f"database {database} has no version {as_of} yet "
                                      f"(the current version is {current.version})")
            return self.manifest(database, as_of)
        moment = as_of_time(as_of)
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
            raise VersionNotFound(f"database {database} did not exist yet at {as_of}")
        return self.manifest(database, numbers[index])

    def restore(self, database: str, version: int) -> Manifest:
        """Make ``version`` current again as a new version; return the new manifest."""
        current, etag = self.current(database)
        old = self.resolve(database, version, current)
        restored = replace(old, version=current.version + 1, created_at=to_millis(self.now()), jobs=[],
                           writer=uuid.uuid4().hex, restored_from=old.version)
        body = restored.to_bytes()
        put_manifest(self.s3, self.bucket, database, restored, body, etag)
        put_version(self.s3, self.bucket, database, restored, body)
        return restored
