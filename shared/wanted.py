"""A waiter's word to a lock's holder: someone else wants this database.

A worker keeps a database's lock between its batches (worker/keeper.py), which saves a lock cycle a
batch — until another worker has writes for the same database: then keeping it is starvation. A
waiter that finds the lock held writes ``locks/wanted/<database>.json`` (one S3 PUT, whatever the lock
backend); the holder reads it (a conditional GET: 304 while nothing changed) when a batch gives the lock
back and, while it keeps the lock idle, every ``poll`` seconds, and lets go instead of keeping it. A mark
counts only when it is newer than the holder's own acquisition, so a stale mark costs nothing, and a
mark that cannot be read or written only makes hand-off slower, never wrong: the lock still decides
who writes, and the conditional manifest write what is kept.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from shared.errors import StorageError
from shared.names import check_database
from shared.s3 import UNCHANGED, Blob, Bucket

log = logging.getLogger("srdb.lock")
WANTED_PREFIX = "locks/wanted/"


def wanted_key(database: str) -> str:
    return f"{WANTED_PREFIX}{check_database(database)}.json"


class WantedMarks:
    def __init__(self, bucket: Bucket, *, now: Callable[[], float] = time.time) -> None:
        self.bucket, self.now = bucket, now
        self._seen: dict[str, tuple[str, float]] = {}  # database: (ETag, the mark's time)
        self._mutex = threading.Lock()

    def mark(self, database: str, owner: str = "") -> None:
        """Say that a writer waits for ``database``'s lock (best effort)."""
        body = json.dumps({"at": self.now(), "by": owner}).encode()
        try:
            self.bucket.put(wanted_key(database), body, content_type="application/json")
        except StorageError as exc:
            log.warning("database %s: could not mark the lock wanted: %s", database, exc)

    def since(self, database: str) -> float | None:
        """When a waiter last marked ``database`` wanted; None when never (or S3 cannot say now)."""
        with self._mutex:
            seen = self._seen.get(database)
        try:
            found = self.bucket.get_if_changed(wanted_key(database), seen[0] if seen else None)
        except StorageError as exc:
            log.warning("database %s: could not read whether its lock is wanted: %s", database, exc)
            return seen[1] if seen else None
        if found is UNCHANGED and seen is not None:
            return seen[1]
        if not isinstance(found, Blob):
            return None
        try:
            at = float(json.loads(found.body)["at"])
        except (ValueError, KeyError, TypeError):
            at = 0.0
        with self._mutex:
            self._seen[database] = (found.etag, at)
        return at
