"""Freeing stale locks: a lock group whose expiry tag has passed belongs to a writer that died.

Deleting it is safe even if that writer is only stalled: its release deletes by group id, so it
cannot free a lock taken after this one, and its commit is conditional, so it cannot overwrite
the snapshot of whoever takes the lock next. (A writer that finds an expired lock in its way
frees it the same way; the reaper frees the ones nobody is waiting for.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.lock import SecurityGroupLock, lock_groups


@dataclass
class ReapReport:
    checked: int = 0
    freed: list[str] = field(default_factory=list)
    vanished: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "freed": self.freed, "vanished": self.vanished}


class Reaper:
    def __init__(self, ec2: Any, vpc_id: str, *, ttl: float, now: Callable[[], float] = time.time) -> None:
        self.ec2, self.vpc_id = ec2, vpc_id
        # Lock groups are found by their tag, whatever their prefix: the lock is used for its rules only.
        self.lock = SecurityGroupLock(ec2, vpc_id, ttl=ttl, now=now)

    def reap_locks(self) -> ReapReport:
        """Delete every lock group past its expiry (or, lacking tags, older than the TTL)."""
        report = ReapReport()
        for group in lock_groups(self.ec2, self.vpc_id):
            report.checked += 1
            if not self.lock.expired(group["tags"]):
                continue
            if self.lock.free(group):
                report.freed.append(group["name"])
            else:
                report.vanished += 1  # released or freed by someone else meanwhile
        return report
