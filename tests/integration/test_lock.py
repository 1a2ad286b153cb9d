"""What is the security-group lock's own: its tags, EC2's faults. The rules both backends share are in
test_locks.py."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.reaper import Reaper
from shared.errors import LockTimeout
from shared.lock.security_group import EXPIRES_TAG, OWNER_TAG, SecurityGroupLock, lock_groups
from shared.settings import Settings

from ..faults import FaultyClient


class Clock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def make_lock(settings: Settings, aws: Any, clock: Clock, ec2: Any = None, ttl: float = 30.0) -> SecurityGroupLock:
    return SecurityGroupLock(ec2 or aws.ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=ttl,
                             now=clock.now, sleep=clock.sleep)


def test_acquire_creates_a_tagged_group_and_release_deletes_it(settings: Settings, aws: Any) -> None:
    clock = Clock()
    lock = make_lock(settings, aws, clock)
    handle = lock.acquire("sales", wait=5)
    [group] = lock_groups(aws.ec2, settings.vpc_id)
    assert group["group_id"] == handle.token
    assert group["name"] == f"{settings.lock_prefix}-lock-sales"
    assert group["tags"][OWNER_TAG] == handle.owner
    assert float(group["tags"][EXPIRES_TAG]) == pytest.approx(clock.t + 30.0)
    assert lock.release(handle) is True
    assert lock_groups(aws.ec2, settings.vpc_id) == []


class VanishingEC2:
    """Fault at the client boundary: each group is deleted by someone else just before we try."""

    def __init__(self, ec2: Any) -> None:
        self.ec2 = ec2

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ec2, name)

    def delete_security_group(self, **kwargs: Any) -> Any:
        self.ec2.delete_security_group(**kwargs)
        return self.ec2.delete_security_group(**kwargs)


def test_the_reaper_survives_a_group_that_disappears_under_it(settings: Settings, aws: Any) -> None:
    clock = Clock()
    make_lock(settings, aws, clock).acquire("d", wait=1)
    clock.t += 100
    report = Reaper(SecurityGroupLock(VanishingEC2(aws.ec2), settings.vpc_id, ttl=30, now=clock.now)).reap_locks()
    assert (report.freed, report.vanished) == ([], 1)


def test_throttling_is_retried(settings: Settings, aws: Any) -> None:
    clock = Clock()
    ec2 = FaultyClient(aws.ec2)
    ec2.fail("create_security_group", code="RequestLimitExceeded", times=3)
    handle = make_lock(settings, aws, clock, ec2=ec2).acquire("d", wait=10)
    assert handle.token and len(clock.sleeps) == 3


def test_a_waiter_watches_a_live_lock_instead_of_spending_creations(settings: Settings, aws: Any) -> None:
    """CreateSecurityGroup refills at 5 a second for the whole account: a waiter that asked again at
    every turn would spend what other databases' lock cycles need. It looks (Describe, 20 a second)."""
    clock = Clock()
    holder = make_lock(settings, aws, clock).acquire("busy", wait=1)
    ec2 = FaultyClient(aws.ec2)
    creates = ec2.fail("create_security_group", times=1000, before=lambda: None)  # counts, fails nothing
    looks = ec2.fail("describe_security_groups", times=1000, before=lambda: None)
    with pytest.raises(LockTimeout):
        make_lock(settings, aws, clock, ec2=ec2).acquire("busy", wait=10)
    assert creates.fired == 1 and looks.fired > 3
    make_lock(settings, aws, clock).release(holder)
    waiter = make_lock(settings, aws, clock, ec2=ec2)
    assert waiter.acquire("busy", wait=10).contended is False  # free: taken at the first creation
