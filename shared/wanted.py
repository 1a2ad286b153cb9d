"""A waiter's word to a lock's holder: someone else wants this database.

A worker keeps a database's lock between its batches (worker/keeper.py), which saves a lock cycle a
batch — until another worker has writes for the same database. A waiter that finds the lock held writes
``locks/wanted/<database>.json`` (one S3 PUT, whatever the lock backend); the holder reads it (a
conditional GET: 304 while nothing changed). A holder keeping the lock idle looks every ``poll`` seconds
and lets go for any mark made while it was idle. A busy holder — its batches back to back — keeps the
lock for a plain mark (moving a lock costs a lock cycle, EC2's scarcest call, and the waiter's jobs go
back to the queue, where they reach the holder soon enough) and lets go after its batch only for an
*urgent* mark: one whose jobs were handed back several times already. A mark that cannot be read or
written only makes hand-off slower, never wrong: the lock still decides who writes, and the
conditional manifest write what is kept.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import StorageError
from shared.names import check_database
from shared.s3 import UNCHANGED, Blob, Bucket

log = logging.getLogger("srdb.lock")
WANTED_PREFIX = "locks/wanted/"


def wanted_key(database: str) -> str:
    return f"{WANTED_PREFIX}{check_database(database)}.json"


@dataclass(frozen=True)
class Mark:
    at: float  # when (the waiter's clock)
    urgent: bool  # its jobs were handed back often: a busy holder lets go too


class WantedMarks:
    def __init__(self, bucket: Bucket, *, now: Callable[[], float] = time.time) -> None:
        self.bucket, self.now = bucket, now
        self._seen: dict[str, tuple[str, Mark]] = {}  # database: (ETag, the mark)
        self._mutex = threading.Lock()

    def mark(self, database: str, *, urgent: bool = False, owner: str = "") -> None:
        """Say that a writer waits for ``database``'s lock (best effort). ``urgent``: its jobs were handed
        back often already, and even a busy holder should let go after its batch."""
        body = json.dumps({"at": self.now(), "urgent": urgent, "by": owner}).encode()
        try:
            self.bucket.put(wanted_key(database), body, content_type="application/json")
        except StorageError as exc:
            log.warning("database %s: could not mark the lock wanted: %s", database, exc)

    def since(self, database: str) -> Mark | None:
        """A waiter's last mark on ``database``; None when never (or S3 cannot say now)."""
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
            doc = json.loads(found.body)
            mark = Mark(float(doc["at"]), bool(doc.get("urgent", False)))
        except (ValueError, KeyError, TypeError, AttributeError):
            mark = Mark(0.0, False)
        with self._mutex:
            self._seen[database] = (found.etag, mark)
        return mark
