"""Per-database write lock made from an EC2 security group.

Creating a group whose name is already taken in a VPC fails with ``InvalidGroup.Duplicate``,
atomically, so creation is acquisition. Release deletes the group *by the id that acquire
returned*, never by name: if the reaper freed a stalled holder's lock and another writer took
it, the stalled holder's release deletes nothing of the new holder's. The lock only avoids
wasted work; the conditional manifest write is what guarantees that no update is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.awserrors import error_code
from shared.errors import LockError, LockTimeout
from shared.lock import Backoff, HeldLock, LockHandle
from shared.names import check_database

log = logging.getLogger("srdb.lock")
LOCK_TAG = "srdb:lock"
OWNER_TAG = "srdb:owner"
CREATED_TAG = "srdb:created"
EXPIRES_TAG = "srdb:expires"
NETWORK = "network"  # LockError.code when EC2 gave no answer (the request may or may not have been applied)
RELEASE_WAIT = 10.0  # seconds a release retries a throttled EC2 before it leaves the lock to expire
_RETRY_CODES = {"RequestLimitExceeded", "Throttling", "InternalError", "Unavailable", "ServiceUnavailable"}


class SecurityGroupLock:
    """Acquire and release write locks; ``now``, ``sleep`` and ``rng`` are injected for tests."""

    def __init__(
        self,
        ec2: Any,
        vpc_id: str,
        *,
        prefix: str = "srdb",
        ttl: float = 600.0,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.ec2, self.vpc_id, self.prefix, self.ttl = ec2, vpc_id, prefix, ttl
        self.now, self.sleep, self.rng = now, sleep, rng

    def group_name(self, database: str) -> str:
        return f"{self.prefix}-lock-{check_database(database)}"

    def acquire(self, database: str, wait: float, *, held_wait: float | None = None,
                on_held: Callable[[], None] | None = None) -> LockHandle:
        """Take the lock, retrying with jittered backoff; LockTimeout once ``wait`` seconds pass (``held_wait``
        once another writer's group was seen, after calling ``on_held``)."""
        start = self.now()
        owner = uuid.uuid4().hex
        backoff = Backoff(wait, self.now, self.sleep, self.rng, held_wait=held_wait, on_held=on_held)
        maybe_created = contended = False
        while True:
            try:
                group_id = self._create(database, owner)
                return self._handle(database, group_id, owner, start, contended)
            except LockError as exc:
                code = exc.code
                if code == NETWORK:
                    maybe_created = True  # the request may have been applied before the connection failed
                elif code != "InvalidGroup.Duplicate" and code not in _RETRY_CODES:
                    raise
                contended = contended or (code == "InvalidGroup.Duplicate" and not maybe_created)
                if code == "InvalidGroup.Duplicate":
                    holder = self.holder(database)
                    # A create whose response was lost still made the group: it is ours if it has our owner.
                    if holder is not None and holder["tags"].get(OWNER_TAG) == owner:
                        return self._handle(database, holder["group_id"], owner, start, contended)
                    if holder is not None:
                        backoff.saw_holder()
                        self._watch(database, holder, backoff)
                        continue
            backoff.pause(database)

    def _watch(self, database: str, holder: dict[str, Any], backoff: Backoff) -> None:
        """Wait while another writer's group holds the lock, looking at it (DescribeSecurityGroups,
        20 a second per account) instead of asking to create it again (CreateSecurityGroup, 5 a second:
        the budget every lock cycle of the account spends). Returns once it is gone or freed as
        expired; LockTimeout when the wait runs out first."""
        group_id = holder["group_id"]
        current: dict[str, Any] | None = holder
        while current is not None and current["group_id"] == group_id:
            if self.expired(current["tags"]):
                self.free(HeldLock(current["name"], group_id, True))
                return
            backoff.pause(database)
            current = self.holder(database)

    def renew(self, handle: LockHandle, ttl: float | None = None) -> LockHandle | None:
        """Move the expiry tag ``ttl`` (default the TTL) from now (CreateTags, 10 a second per account);
        None when the group is gone."""
        expires = self.now() + (self.ttl if ttl is None else ttl)
        try:
            self._ec2("create_tags", f"renewing the lock of {handle.database}", Resources=[handle.token],
                      Tags=[{"Key": EXPIRES_TAG, "Value": f"{expires:.3f}"}])
        except LockError as exc:
            if exc.code in ("InvalidGroup.NotFound", "InvalidID", "InvalidGroupId.NotFound"):
                return None
            raise
        return dataclasses.replace(handle, expires_at=expires)

    def held(self) -> list[HeldLock]:
        return [HeldLock(g["name"], g["group_id"], self.expired(g["tags"]))
                for g in lock_groups(self.ec2, self.vpc_id)]

    def _handle(self, database: str, group_id: str, owner: str, start: float, contended: bool) -> LockHandle:
        now = self.now()
        return LockHandle(database, group_id, owner, now, now - start, now + self.ttl, contended)

    def release(self, handle: LockHandle) -> bool:
        """Delete the lock group by id. False when it was already gone (the reaper freed it), or when EC2
        kept refusing for RELEASE_WAIT seconds: then the lock expires by its tag and a waiter frees it."""
        backoff = Backoff(RELEASE_WAIT, self.now, self.sleep, self.rng)
        unseen = 0
        while True:
            try:
                self._ec2("delete_security_group", f"releasing the lock of {handle.database}",
                          GroupId=handle.token)
                return True
            except LockError as exc:
                code = exc.code
                if code == "InvalidGroup.NotFound":
                    # EC2 is eventually consistent: a group just created may not be visible yet.
                    unseen += 1
                    if self.now() - handle.acquired_at >= 10 or unseen >= 3:
                        return False
                    self.sleep(0.2 * unseen)
                    continue
                if code not in _RETRY_CODES and code != NETWORK:
                    raise
            try:
                backoff.pause(handle.database)  # throttled: wait for the bucket to refill, do not give up at once
            except LockTimeout:
                log.warning("lock of %s not released (EC2 kept refusing); it expires at %.0f", handle.database,
                            handle.expires_at)
                return False

    def _create(self, database: str, owner: str) -> str:
        created = self.now()
        tags = [
            {"Key": LOCK_TAG, "Value": database},
            {"Key": OWNER_TAG, "Value": owner},
            {"Key": CREATED_TAG, "Value": f"{created:.3f}"},
            {"Key": EXPIRES_TAG, "Value": f"{created + self.ttl:.3f}"},
        ]
        response = self._ec2(
            "create_security_group", f"creating the lock group of {database}",
            GroupName=self.group_name(database),
            Description=f"srdb write lock for database {database}",
            VpcId=self.vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
        )
        return str(response["GroupId"])

    def holder(self, database: str) -> dict[str, Any] | None:
        """The group that holds ``database``'s lock now, with its tags, or None."""
        try:
            groups = self._ec2("describe_security_groups", f"looking up the lock of {database}", Filters=[
                {"Name": "vpc-id", "Values": [self.vpc_id]},
                {"Name": "group-name", "Values": [self.group_name(database)]},
            ])["SecurityGroups"]
        except LockError:
            return None
        return _group(groups[0]) if groups else None

    def expired(self, tags: dict[str, str]) -> bool:
        """Past its expiry tag (or, lacking one, older than the TTL): its holder is dead or stalled."""
        try:
            return self.now() >= float(tags[EXPIRES_TAG])
        except (KeyError, ValueError):
            try:
                return self.now() >= float(tags[CREATED_TAG]) + self.ttl
            except (KeyError, ValueError):
                return True

    def free(self, lock: HeldLock) -> bool:
        """Delete a stale lock group by id; False if someone else already had. Safe even when its holder
        is only stalled: that holder's commit is conditional, so it cannot overwrite a newer snapshot."""
        try:
            self._ec2("delete_security_group", f"freeing {lock.name}", GroupId=lock.token)
        except LockError as exc:
            if exc.code == "InvalidGroup.NotFound":
                return False
            raise
        log.warning("freed stale lock %s (%s)", lock.name, lock.token)
        return True


    def _ec2(self, action: str, doing: str, **request: Any) -> Any:
        with _translated(doing):
            return getattr(self.ec2, action)(**request)


@contextmanager
def _translated(doing: str) -> Iterator[None]:
    """The one place EC2's botocore errors become srdb's: LockError, with AWS's error code (or
    NETWORK when no answer came) for the callers that act on it."""
    try:
        yield
    except ClientError as exc:
        raise LockError(f"{doing}: {exc}", code=error_code(exc)) from exc
    except BotoCoreError as exc:
        raise LockError(f"{doing}: {exc}", code=NETWORK) from exc


def _group(group: dict[str, Any]) -> dict[str, Any]:
    return {"group_id": group["GroupId"], "name": group["GroupName"],
            "tags": {t["Key"]: t["Value"] for t in group.get("Tags", [])}}


def lock_groups(ec2: Any, vpc_id: str) -> list[dict[str, Any]]:
    """Every srdb lock group in the VPC, with its tags as a dict."""
    out: list[dict[str, Any]] = []
    paginator = ec2.get_paginator("describe_security_groups")
    pages = paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                        {"Name": "tag-key", "Values": [LOCK_TAG]}])
    with _translated("listing lock groups"):
        for page in pages:
            out.extend(_group(group) for group in page["SecurityGroups"])
    return out
