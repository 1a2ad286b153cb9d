"""The same lock suite over both backends: the EC2 security group and the S3 lease."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reaper.reaper import Reaper
from shared.errors import LockTimeout
from shared.lease import S3Lease
from shared.lock import WriteLock, make_lock
from shared.s3 import Bucket
from shared.security_group_lock import SecurityGroupLock
from shared.settings import Settings

from ..faults import FaultyClient
from .test_lock import Clock

Factory = Callable[..., WriteLock]
# The call a lock is taken by, per backend: where a lost response is injected.
TAKE = {"security-group": ("ec2", "create_security_group"), "s3": ("s3", "put_object")}


@pytest.fixture(params=["security-group", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(backend: str, settings: Settings, aws: Any) -> Factory:
    def build(clock: Clock, *, ttl: float = 30.0, client: Any = None) -> WriteLock:
        if backend == "s3":
            return S3Lease(Bucket(client or aws.s3, settings.bucket), ttl=ttl, now=clock.now, sleep=clock.sleep)
        return SecurityGroupLock(client or aws.ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=ttl,
                                 now=clock.now, sleep=clock.sleep)

    return build


def test_acquire_then_release(make: Factory) -> None:
    clock = Clock()
    lock = make(clock)
    handle = lock.acquire("sales", wait=5)
    assert handle.expires_at == pytest.approx(clock.t + 30.0)
    assert [h.expired for h in lock.held()] == [False]
    assert lock.release(handle) is True
    assert lock.held() == []


def test_a_held_lock_blocks_until_the_deadline(make: Factory) -> None:
    clock = Clock()
    holder, waiter = make(clock), make(clock)
    holder.acquire("sales", wait=5)
    with pytest.raises(LockTimeout, match="not acquired within 3s"):
        waiter.acquire("sales", wait=3)
    assert sum(clock.sleeps) == pytest.approx(3.0)
    assert len(clock.sleeps) > 3  # backed off and retried, not one long sleep
    assert waiter.acquire("other", wait=1).database == "other"  # locks are per database


def test_a_released_lock_can_be_taken_again(make: Factory) -> None:
    clock = Clock()
    lock = make(clock)
    first = lock.acquire("d", wait=1)
    lock.release(first)
    again = lock.acquire("d", wait=1)
    assert again.token != first.token and not clock.sleeps


def test_a_stalled_holder_cannot_release_the_next_holders_lock(make: Factory) -> None:
    clock = Clock()
    stalled, next_writer = make(clock), make(clock)
    old = stalled.acquire("d", wait=1)
    clock.t += 60  # the holder stalls past its TTL
    report = Reaper(make(clock)).reap_locks()
    assert len(report.freed) == 1
    new = next_writer.acquire("d", wait=1)
    assert stalled.release(old) is False  # by its own token: the new holder keeps the lock
    assert stalled.renew(old) is None
    assert [h.token for h in next_writer.held()] == [new.token]


def test_a_waiter_frees_a_lock_past_its_expiry(make: Factory) -> None:
    clock = Clock()
    dead = make(clock, ttl=5).acquire("d", wait=1)
    handle = make(clock).acquire("d", wait=30)
    assert handle.token != dead.token
    assert 5 <= handle.waited <= 9


def test_the_reaper_leaves_live_locks_alone(make: Factory) -> None:
    clock = Clock()
    make(clock).acquire("d", wait=1)
    clock.t += 29
    report = Reaper(make(clock)).reap_locks()
    assert (report.checked, report.freed) == (1, [])


def test_renewing_moves_the_expiry(make: Factory) -> None:
    clock = Clock()
    lock = make(clock)
    handle = lock.acquire("d", wait=1)
    clock.t += 20
    renewed = lock.renew(handle)
    assert renewed is not None and renewed.expires_at == pytest.approx(clock.t + 30)
    clock.t += 20  # past the first expiry, within the renewed one
    assert Reaper(make(clock)).reap_locks().freed == []
    assert lock.release(renewed) is True


def test_a_take_whose_response_was_lost_still_holds_the_lock(make: Factory, backend: str, aws: Any) -> None:
    clock = Clock()
    service, call = TAKE[backend]
    faulty = FaultyClient(getattr(aws, service))
    faulty.fail(call, after_call=True)
    lock = make(clock, client=faulty)
    handle = lock.acquire("d", wait=5)
    assert [h.token for h in lock.held()] == [handle.token]
    assert lock.release(handle) is True


def test_the_setting_chooses_the_backend(settings: Settings, aws: Any) -> None:
    bucket = Bucket(aws.s3, settings.bucket)
    assert isinstance(make_lock(settings.replace(lock_backend="s3", vpc_id=""), ec2=None, bucket=bucket), S3Lease)
    assert isinstance(make_lock(settings, ec2=aws.ec2, bucket=bucket), SecurityGroupLock)


def test_a_worker_on_the_s3_lease_needs_no_vpc(settings: Settings, aws: Any, client: Any,
                                               drain: Callable[..., int]) -> None:
    from shared.security_group_lock import lock_groups
    from worker.batch import Worker

    leased = settings.replace(lock_backend="s3", vpc_id="")
    worker = Worker(leased, aws.s3, aws.sqs, None)  # no EC2 client at all
    job_ids = [client.submit("leased", "CREATE TABLE t (a)"), client.submit("leased", "INSERT INTO t VALUES (1)")]
    drain(worker)
    assert [client.wait(j, 5).state.value for j in job_ids] == ["SUCCEEDED", "SUCCEEDED"]
    assert lock_groups(aws.ec2, settings.vpc_id) == []
    assert S3Lease(Bucket(aws.s3, settings.bucket)).held() == []  # given back
