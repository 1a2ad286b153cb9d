"""The write lock as a lease object in S3 (``SRDB_LOCK_BACKEND=s3``): ``locks/<database>.json``.

S3's conditional writes make it a lock: taking it is a PUT with ``If-None-Match: *`` (only one
writer creates the object), and every later change — renewing it, giving it back, taking over
one that expired — is a PUT with ``If-Match`` on the ETag the writer holds, so exactly one of any
writers racing on the same version wins. A lease is never deleted (an unconditional delete could
remove a lease taken a moment before); giving it back writes it as released, which the next
writer takes over like an expired one. S3 allows thousands of such writes a second per prefix,
where EC2 allows five security-group creations a second per account.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import StorageError
from shared.lock import Backoff, HeldLock, LockHandle
from shared.names import check_database
from shared.s3 import Bucket

log = logging.getLogger("srdb.lock")
LEASE_PREFIX = "locks/"
JSON = "application/json"


def lease_key(database: str) -> str:
    return f"{LEASE_PREFIX}{check_database(database)}.json"


@dataclass(frozen=True)
class Lease:
    database: str
    owner: str
    expires_at: float

    def to_bytes(self) -> bytes:
        return json.dumps({"database": self.database, "owner": self.owner, "expires_at": self.expires_at}).encode()

    @classmethod
    def from_bytes(cls, data: bytes, database: str) -> Lease:
        """A lease that does not parse is taken for an expired one: it holds nothing anyone can honour."""
        try:
            doc = json.loads(data)
            return cls(str(doc["database"]), str(doc["owner"]), float(doc["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return cls(database, "", 0.0)


class S3Lease:
    """Acquire, renew and release leases; ``now``, ``sleep`` and ``rng`` are injected for tests."""

    def __init__(self, bucket: Bucket, *, ttl: float = 600.0, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random) -> None:
        self.bucket, self.ttl, self.now, self.sleep, self.rng = bucket, ttl, now, sleep, rng

    def acquire(self, database: str, wait: float, *, held_wait: float | None = None,
                on_held: Callable[[], None] | None = None) -> LockHandle:
        start = self.now()
        owner = uuid.uuid4().hex
        key = lease_key(database)
        backoff = Backoff(wait, self.now, self.sleep, self.rng, held_wait=held_wait, on_held=on_held)
        contended = False
        while True:
            try:
                taken = self._take(database, key, owner)
                if taken is None:  # another writer's
                    backoff.saw_holder()
            except StorageError as exc:
                # No answer: the PUT may have been applied. The next try reads the lease and knows.
                log.warning("lease of %s: %s; trying again", database, exc)
                taken = None
            if taken is not None:
                now = self.now()
                return LockHandle(database, taken, owner, now, now - start, now + self.ttl, contended)
            contended = True
            backoff.pause(database)

    def _take(self, database: str, key: str, owner: str) -> str | None:
        """The new ETag when the lease is ours now; None when someone else holds it. It reads first: a
        lease object stays once made (given back, it says so), and a waiter that reads (GET) instead of
        trying to write (PUT, 12 times the price) pays little for its wait."""
        body = Lease(database, owner, self.now() + self.ttl).to_bytes()
        current = self.bucket.get(key)
        if current is None:
            return self.bucket.put_if_none_match(key, body, content_type=JSON)  # None: another made it first
        lease = Lease.from_bytes(current.body, database)
        if lease.owner == owner:
            return current.etag  # our own PUT, whose answer was lost
        if lease.expires_at > self.now():
            return None
        return self.bucket.put_if_match(key, body, current.etag, content_type=JSON)  # expired or released

    def release(self, handle: LockHandle) -> bool:
        released = Lease(handle.database, "", 0.0).to_bytes()
        return self.bucket.put_if_match(lease_key(handle.database), released, handle.token,
                                        content_type=JSON) is not None

    def renew(self, handle: LockHandle, ttl: float | None = None) -> LockHandle | None:
        expires = self.now() + (self.ttl if ttl is None else ttl)
        etag = self.bucket.put_if_match(lease_key(handle.database),
                                        Lease(handle.database, handle.owner, expires).to_bytes(), handle.token,
                                        content_type=JSON)
        if etag is None:
            return None
        return dataclasses.replace(handle, token=etag, expires_at=expires)

    def held(self) -> list[HeldLock]:
        """Every lease that is not given back, and whether it expired."""
        found = []
        for key in self.bucket.list(LEASE_PREFIX):
            current = self.bucket.get(key)
            if current is None:
                continue
            lease = Lease.from_bytes(current.body, key)
            if lease.owner:
                found.append(HeldLock(key, current.etag, lease.expires_at <= self.now()))
        return found

    def free(self, lock: HeldLock) -> bool:
        """Write an expired lease as released, only over the version that was seen expired."""
        database = lock.name.removeprefix(LEASE_PREFIX).removesuffix(".json")
        freed = self.bucket.put_if_match(lock.name, Lease(database, "", 0.0).to_bytes(), lock.token,
                                         content_type=JSON) is not None
        if freed:
            log.warning("freed stale lease %s", lock.name)
        return freed
