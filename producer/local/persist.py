"""``srdb local``'s data on disk: the bucket's objects mirrored under ``.srdb/data/s3/``, so databases,
their history and job results survive a restart. moto keeps everything in memory; this copies each
new or changed object out every few seconds and at stop, and loads them all back at start. Queued
messages and locks are not kept (a restart is a new queue, and no lock outlives its holder)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("srdb.local")
SYNC_SECONDS = 2.0


class Mirror:
    """One bucket and the folder that mirrors it."""

    def __init__(self, s3: Any, bucket: str, folder: Path) -> None:
        self.s3, self.bucket, self.folder = s3, bucket, folder
        self._etags: dict[str, str] = {}

    def load(self) -> int:
        """Put every mirrored object back into the (new, empty) bucket; the number loaded."""
        count = 0
        if not self.folder.is_dir():
            return 0
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.endswith(".part")):
            key = path.relative_to(self.folder).as_posix()
            response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
            self._etags[key] = str(response["ETag"])
            count += 1
        return count

    def sync(self) -> int:
        """Copy out what changed since the last sync, and forget what was deleted; objects copied."""
        seen: dict[str, str] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                seen[str(item["Key"])] = str(item["ETag"])
        copied = 0
        for key, etag in seen.items():
            if self._etags.get(key) != etag and self._copy(key):
                self._etags[key] = etag
                copied += 1
        for key in set(self._etags) - set(seen):
            self._path(key).unlink(missing_ok=True)
            del self._etags[key]
        return copied

    def _copy(self, key: str) -> bool:
        path = self._path(key)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return False  # deleted since it was listed
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_bytes(body)
        os.replace(part, path)  # a copy is whole or absent, even if srdb local is killed mid-write
        return True

    def _path(self, key: str) -> Path:
        path = (self.folder / key).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise ValueError(f"object key {key!r} reaches outside {self.folder}")
        return path
