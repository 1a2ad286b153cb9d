"""The lock backends srdb's settings name: the one the worker writes with (``make_lock``), and every one
the reaper frees stale locks of (``every_backend``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.errors import NotConfigured
from shared.lock.base import WriteLock
from shared.lock.lease import S3Lease
from shared.lock.security_group import SecurityGroupLock
from shared.s3 import Bucket
from shared.settings import Settings

BACKENDS = ("security-group", "s3")


def make_lock(settings: Settings, *, ec2: Any, bucket: Any, now: Callable[[], float] = time.time,
              sleep: Callable[[float], None] = time.sleep) -> WriteLock:
    """The backend ``settings.lock_backend`` names. ``bucket``: a ``shared.s3.Bucket``."""
    if settings.lock_backend == "s3":
        return S3Lease(bucket, ttl=settings.lock_ttl, now=now, sleep=sleep)
    if settings.lock_backend == "security-group":
        settings.require("vpc_id")
        return SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=settings.lock_ttl,
                                 now=now, sleep=sleep)
    raise NotConfigured(f"SRDB_LOCK_BACKEND={settings.lock_backend!r}: choose one of {', '.join(BACKENDS)}")


def every_backend(settings: Settings, *, ec2: Any, s3: Any, now: Callable[[], float] = time.time) -> list[WriteLock]:
    """Both backends that ``settings`` make possible, for the reaper: lock groups when a VPC is set (found by
    their tag, whatever their prefix), leases when a bucket is — a deployment may have switched backends
    with locks held."""
    locks: list[WriteLock] = []
    if settings.vpc_id:
        locks.append(SecurityGroupLock(ec2, settings.vpc_id, ttl=settings.lock_ttl, now=now))
    if settings.bucket:
        locks.append(S3Lease(Bucket(s3, settings.bucket), ttl=settings.lock_ttl, now=now))
    return locks
