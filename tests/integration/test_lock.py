"""The security-group lock and the reaper, against moto's EC2."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.reaper import Reaper
from shared.errors import LockTimeout
from shared.lock import EXPIRES_TAG, OWNER_TAG, SecurityGroupLock, lock_groups
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
    assert group["group_id"] == handle.group_id
    assert group["name"] == f"{settings.lock_prefix}-lock-sales"
    assert group["tags"][OWNER_TAG] == handle.owner
    assert float(group["tags"][EXPIRES_TAG]) == pytest.approx(clock.t + 30.0)
    assert lock.release(handle) is True
    assert lock_groups(aws.ec2, settings.vpc_id) == []


def test_a_held_lock_blocks_until_the_deadline(settings: Settings, aws: Any) -> None:
    clock = Clock()
    holder, waiter = make_lock(settings, aws, clock), make_lock(settings, aws, clock)
    holder.acquire("sales", wait=5)
    with pytest.raises(LockTimeout, match="not acquired within 3s"):
        waiter.acquire("sales", wait=3)
    assert sum(clock.sleeps) == pytest.approx(3.0)
    assert len(clock.sleeps) > 3  # backed off and retried, not one long sleep
    other = waiter.acquire("other", wait=1)  # locks are per database
    assert other.database == "other"


def test_a_released_lock_can_be_taken_again(settings: Settings, aws: Any) -> None:
    clock = Clock()
    lock = make_lock(settings, aws, clock)
    lock.release(lock.acquire("d", wait=1))
    assert lock.acquire("d", wait=1).group_id


def test_release_after_the_reaper_freed_the_lock(settings: Settings, aws: Any) -> None:
    clock = Clock()
    stalled, next_writer = make_lock(settings, aws, clock), make_lock(settings, aws, clock)
    old = stalled.acquire("d", wait=1)
    clock.t += 60  # the holder stalls past its TTL
    report = Reaper(aws.ec2, settings.vpc_id, ttl=30, now=clock.now).reap_locks()
    assert report.freed == [f"{settings.lock_prefix}-lock-d"]
    new = next_writer.acquire("d", wait=1)
    # The stalled holder's release deletes by its own group id: the new holder keeps the lock.
    assert stalled.release(old) is False
    assert [g["group_id"] for g in lock_groups(aws.ec2, settings.vpc_id)] == [new.group_id]


def test_a_waiter_frees_a_lock_past_its_expiry(settings: Settings, aws: Any) -> None:
    clock = Clock()
    dead = make_lock(settings, aws, clock, ttl=5).acquire("d", wait=1)
    waiter = make_lock(settings, aws, clock)
    handle = waiter.acquire("d", wait=30)
    assert handle.group_id != dead.group_id
    # Waited for the expiry (5 s), then freed the dead holder's group itself: it looks at the holder at
    # most once a second and sleeps at most 3 s (2 s backoff, 1.5x jitter), so it is in within 4 s of it.
    assert 5 <= handle.waited <= 9
    assert [g["group_id"] for g in lock_groups(aws.ec2, settings.vpc_id)] == [handle.group_id]


def test_the_reaper_leaves_live_locks_alone(settings: Settings, aws: Any) -> None:
    clock = Clock()
    make_lock(settings, aws, clock).acquire("d", wait=1)
    clock.t += 29
    report = Reaper(aws.ec2, settings.vpc_id, ttl=30, now=clock.now).reap_locks()
    assert (report.checked, report.freed) == (1, [])


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
    report = Reaper(VanishingEC2(aws.ec2), settings.vpc_id, ttl=30, now=clock.now).reap_locks()
    assert (report.freed, report.vanished) == ([], 1)


def test_throttling_is_retried(settings: Settings, aws: Any) -> None:
    clock = Clock()
    ec2 = FaultyClient(aws.ec2)
    ec2.fail("create_security_group", code="RequestLimitExceeded", times=3)
    handle = make_lock(settings, aws, clock, ec2=ec2).acquire("d", wait=10)
    assert handle.group_id and len(clock.sleeps) == 3
