"""The reaper's pass: free stale locks, then collect garbage (reaper/gc.py).

Freeing stale locks: a lock past its expiry belongs to a writer that died.

Freeing it is safe even if that writer is only stalled: it is freed by its token (the group id,
or the lease's ETag), so a lock taken after it is never touched, and the stalled writer's commit is
conditional, so it cannot overwrite the snapshot of whoever takes the lock next. (A writer that
finds an expired lock in its way frees it the same way; the reaper frees the ones nobody is waiting
for.) It frees both backends' locks: a deployment may have switched backends with locks held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reaper.gc import Collector, GcReport
from shared.lock import WriteLock
from shared.lock.factory import every_backend
from shared.s3 import Bucket
from shared.settings import Settings


@dataclass
class ReapReport:
    checked: int = 0
    freed: list[str] = field(default_factory=list)
    vanished: int = 0
    gc: GcReport | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checked": self.checked, "freed": self.freed, "vanished": self.vanished}
        if self.gc is not None:
            out["gc"] = self.gc.to_json()
        return out


class Reaper:
    def __init__(self, *locks: WriteLock, collector: Collector | None = None) -> None:
        self.locks, self.collector = locks, collector

    @classmethod
    def for_settings(cls, settings: Settings, *, ec2: Any, s3: Any, now: Callable[[], float] = time.time,
                     gc_budget: float | None = None) -> Reaper:
        """Both backends that ``settings`` make possible: lock groups when a VPC is set, leases when a
        bucket is. Lock groups are found by their tag, whatever their prefix. With a bucket, the
        collector too; ``gc_budget``: seconds after which it starts no other database."""
        locks = every_backend(settings, ec2=ec2, s3=s3, now=now)
        collector = None
        if settings.bucket:
            collector = Collector(Bucket(s3, settings.bucket), retention=settings.retention_seconds(),
                                  grace=settings.gc_grace_seconds(), now=now, budget=gc_budget,
                                  jobs=Bucket(s3, settings.jobs_bucket))
        return cls(*locks, collector=collector)

    def run(self) -> ReapReport:
        """One whole pass: stale locks, then garbage."""
        report = self.reap_locks()
        if self.collector is not None:
            report.gc = self.collector.collect()
        return report

    def reap_locks(self) -> ReapReport:
        """Free every lock past its expiry."""
        report = ReapReport()
        for lock in self.locks:
            for held in lock.held():
                report.checked += 1
                if not held.expired:
                    continue
                if lock.free(held):
                    report.freed.append(held.name)
                else:
                    report.vanished += 1  # released or freed by someone else meanwhile
        return report
