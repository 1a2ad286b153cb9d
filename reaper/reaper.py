"""Freeing stale locks: a lock group whose expiry tag has passed belongs to a writer that died.

Deleting it is safe even if that writer is only stalled: its release deletes by group id, so it
cannot free a lock taken after this one, and its commit is conditional, so it cannot overwrite
the snapshot of whoever takes the lock next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from shared.awserrors import error_code
from shared.errors import LockError
from shared.lock import CREATED_TAG, EXPIRES_TAG, lock_groups

log = logging.getLogger("srdb.reaper")


@dataclass
class ReapReport:
    checked: int = 0
    freed: list[str] = field(default_factory=list)
    vanished: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "freed": self.freed, "vanished": self.vanished}


class Reaper:
    def __init__(self, ec2: Any, vpc_id: str, *, ttl: float, now: Callable[[], float] = time.time) -> None:
        self.ec2, self.vpc_id, self.ttl, self.now = ec2, vpc_id, ttl, now

    def reap_locks(self) -> ReapReport:
        """Delete every lock group past its expiry (or, lacking tags, older than the TTL)."""
        report = ReapReport()
        now = self.now()
        for group in lock_groups(self.ec2, self.vpc_id):
            report.checked += 1
            if now < self._expires(group["tags"]):
                continue
            try:
                self.ec2.delete_security_group(GroupId=group["group_id"])
                report.freed.append(group["name"])
                log.warning("freed stale lock %s (%s)", group["name"], group["group_id"])
            except ClientError as exc:
                if error_code(exc) == "InvalidGroup.NotFound":
                    report.vanished += 1  # released or reaped by someone else meanwhile
                    continue
                raise LockError(f"could not free {group['name']}: {exc}") from exc
        return report

    def _expires(self, tags: dict[str, str]) -> float:
        try:
            return float(tags[EXPIRES_TAG])
        except (KeyError, ValueError):
            try:
                return float(tags[CREATED_TAG]) + self.ttl
            except (KeyError, ValueError):
                return 0.0  # a lock group with no readable times is stale by definition
