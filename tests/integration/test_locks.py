"""The same lock suite over both backends: the EC2 security group and the S3 lease."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from reaper.reaper import Reaper
from shared.errors import LockBusy, LockTimeout
from shared.lock import WriteLock
from shared.lock.factory import make_lock
from shared.lock.lease import S3Lease
from shared.lock.security_group import SecurityGroupLock
from shared.s3 import Bucket
from shared.settings import Settings
from shared.wanted import WantedMarks
from worker.keeper import LockKeeper

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
    from shared.lock.security_group import lock_groups
    from worker.batch import Worker

    leased = settings.replace(lock_backend="s3", vpc_id="", lock_linger=60)
    worker = Worker(leased, aws.s3, aws.sqs, None)  # no EC2 client at all
    job_ids = [client.submit("leased", "CREATE TABLE t (a)"), client.submit("leased", "INSERT INTO t VALUES (1)")]
    drain(worker)
    assert [client.wait(j, 5).state.value for j in job_ids] == ["SUCCEEDED", "SUCCEEDED"]
    assert lock_groups(aws.ec2, settings.vpc_id) == []
    assert [h.name for h in S3Lease(Bucket(aws.s3, settings.bucket)).held()] == ["locks/leased.json"]
    assert worker.locks.kept() == ["leased"]  # kept for a next batch (lock_linger)
    worker.close()
    assert S3Lease(Bucket(aws.s3, settings.bucket)).held() == []  # given back


# The lock a worker keeps between batches (worker/keeper.py), over both backends.

REAL_TIME = SimpleNamespace(now=time.time, sleep=time.sleep)


def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling the outcome: the keeper acts on a thread of its own
    return True


def test_a_kept_lock_serves_the_next_batch_with_no_call(backend: str, make: Factory, aws: Any) -> None:
    clock = Clock()
    service, call = TAKE[backend]
    counted = FaultyClient(getattr(aws, service))
    calls = counted.fail(call, times=1000, before=lambda: None)  # counts, fails nothing
    keeper = LockKeeper(make(clock, client=counted), linger=60, now=clock.now)
    first = keeper.take("sales", wait=5)
    keeper.give_back("sales", keep=True)
    assert keeper.kept() == ["sales"]
    second = keeper.take("sales", wait=5)
    assert (second.token, second.waited, calls.fired, keeper.reused) == (first.token, 0.0, 1, 1)
    keeper.give_back("sales", keep=False)  # e.g. the batch's commit was refused: not kept
    assert keeper.kept() == [] and make(clock).held() == []


def test_a_kept_lock_is_released_once_its_database_is_idle_for_the_linger(backend: str, make: Factory) -> None:
    lock = make(REAL_TIME)
    keeper = LockKeeper(lock, linger=0.2)
    keeper.take("sales", wait=5)
    keeper.give_back("sales", keep=True)
    assert len(lock.held()) == 1
    assert until(lambda: lock.held() == [])
    assert keeper.kept() == []
    assert make(REAL_TIME).acquire("sales", wait=1).database == "sales"  # free for any other worker


def test_a_lock_in_use_is_renewed_before_it_expires(backend: str, make: Factory) -> None:
    lock = make(REAL_TIME, ttl=1.5)  # renewed a third of the way: every half second
    keeper = LockKeeper(lock, linger=60)
    taken = keeper.take("sales", wait=5)
    assert until(lambda: keeper.handle("sales").expires_at > taken.expires_at + 1.0)  # two renewals
    assert [h.expired for h in make(REAL_TIME, ttl=1.5).held()] == [False]
    keeper.give_back("sales", keep=False)
    assert lock.held() == []  # released by the renewed handle


def test_a_kept_lock_freed_as_expired_is_taken_again(backend: str, make: Factory) -> None:
    clock = Clock()
    keeper = LockKeeper(make(clock), linger=3600, now=clock.now)
    first = keeper.take("sales", wait=5)
    keeper.give_back("sales", keep=True)
    clock.t += 31  # the kept lock expired (a frozen Lambda container), and a waiter freed it
    reaper = make(clock)
    assert [reaper.free(h) for h in reaper.held()] == [True]
    second = keeper.take("sales", wait=5)
    assert second.token != first.token
    assert [h.token for h in reaper.held()] == [second.token]
    keeper.close()  # a batch holds it: close leaves it to the batch
    keeper.give_back("sales", keep=False)
    assert reaper.held() == []


def test_a_worker_keeps_its_lock_across_batches_and_a_second_worker_gets_it_after_the_linger(
        backend: str, settings: Settings, aws: Any, client: Any, tmp_path: Any) -> None:
    from shared.job.model import Job
    from worker.batch import Record, Worker

    chosen = settings.replace(lock_backend=backend, lock_linger=0.3)
    first = Worker(chosen.replace(cache_dir=str(tmp_path / "a")), aws.s3, aws.sqs, aws.ec2)
    second = Worker(chosen.replace(cache_dir=str(tmp_path / "b"), lock_wait=20), aws.s3, aws.sqs, aws.ec2)
    jobs = [Job.create("sticky", "CREATE TABLE t (a)")] + [Job.create("sticky", "INSERT INTO t VALUES (1)")
                                                         for _ in range(3)]
    for job in jobs:
        client.submit_job(job)
    assert first.process([Record("m0", jobs[0].to_text())]) == []
    assert first.process([Record("m1", jobs[1].to_text())]) == []
    assert (first.locks.reused, first.locks.kept()) == (1, ["sticky"])
    assert second.process([Record("m2", jobs[2].to_text())]) == []  # waited for the linger, then took it
    assert first.locks.kept() == [] and second.last_stats.lock_wait_ms > 0
    assert first.process([Record("m3", jobs[3].to_text())]) == []  # the first worker takes it again
    assert [client.status(j.job_id).state.value for j in jobs] == ["SUCCEEDED"] * 4
    for worker in (first, second):
        worker.close()
    assert make_lock(chosen, ec2=aws.ec2, bucket=Bucket(aws.s3, settings.bucket)).held() == []


def test_a_parked_lock_blocks_others_for_the_linger_at_most_and_its_holder_renews_it(backend: str,
                                                                                   make: Factory) -> None:
    """A Lambda invocation parks its kept locks before it returns (the container may never run again)."""
    clock = Clock()
    keeper = LockKeeper(make(clock), linger=2, now=clock.now)
    first = keeper.take("sales", wait=5)
    keeper.give_back("sales", keep=True)
    keeper.park()
    other = make(clock)
    assert [h.expired for h in other.held()] == [False]
    clock.t += 2.5
    assert [h.expired for h in other.held()] == [True]  # another worker may now free it and take it
    again = keeper.take("sales", wait=5)  # the same container, invoked again: renewed, not taken anew
    assert (again.owner, again.expires_at, keeper.reused) == (first.owner, clock.t + 30, 1)
    assert [h.expired for h in other.held()] == [False]
    keeper.give_back("sales", keep=False)
    assert other.held() == []


def test_a_lock_another_writer_held_is_given_back_not_kept(backend: str, make: Factory) -> None:
    """Workers writing one database by turns: keeping would make the others wait out the linger each turn."""
    clock = Clock()
    make(clock, ttl=2.0).acquire("sales", wait=1)  # a writer that stalls; its lock expires in 2 s
    keeper = LockKeeper(make(clock), linger=60, now=clock.now)
    taken = keeper.take("sales", wait=10)
    assert taken.contended and taken.waited >= 2.0
    keeper.give_back("sales", keep=True)
    assert keeper.kept() == [] and make(clock).held() == []
    again = keeper.take("sales", wait=10)  # uncontended now: this one is kept
    keeper.give_back("sales", keep=True)
    assert not again.contended and keeper.kept() == ["sales"]
    keeper.close()
    assert make(clock).held() == []


def test_a_parked_lock_is_parked_once_not_at_every_invocation(backend: str, make: Factory, aws: Any) -> None:
    clock = Clock()
    service, _ = TAKE[backend]
    renew = {"security-group": "create_tags", "s3": "put_object"}[backend]
    counted = FaultyClient(getattr(aws, service))
    calls = counted.fail(renew, times=1000, before=lambda: None)  # counts, fails nothing
    keeper = LockKeeper(make(clock, client=counted), linger=3600, now=clock.now)
    keeper.take("sales", wait=5)
    keeper.give_back("sales", keep=True)
    before = calls.fired
    for _ in range(3):  # invocations for other databases: the kept lock is not parked again
        keeper.park()
    assert calls.fired == before + 1
    keeper.close()


def test_a_kept_lock_another_worker_wants_is_handed_over_within_the_poll(backend: str, make: Factory,
                                                                         settings: Settings, aws: Any) -> None:
    marks = WantedMarks(Bucket(aws.s3, settings.bucket))
    holder = LockKeeper(make(REAL_TIME), linger=60, wanted=marks, poll=0.05)
    waiter = LockKeeper(make(REAL_TIME), linger=60, wanted=WantedMarks(Bucket(aws.s3, settings.bucket)))
    holder.take("sales", wait=5, handoff=2)
    holder.give_back("sales", keep=True)
    assert holder.kept() == ["sales"]  # idle, kept for the linger (a minute) — unless someone wants it
    taken = waiter.take("sales", wait=60, handoff=5)
    assert taken.waited < 2 and holder.kept() == []
    waiter.give_back("sales", keep=False)


def test_a_busy_holder_lets_go_after_its_batch_and_a_waiter_gives_up_after_the_handoff(
        backend: str, make: Factory, settings: Settings, aws: Any) -> None:
    holder = LockKeeper(make(REAL_TIME), linger=60, wanted=WantedMarks(Bucket(aws.s3, settings.bucket)))
    waiter = LockKeeper(make(REAL_TIME), linger=60, wanted=WantedMarks(Bucket(aws.s3, settings.bucket)))
    holder.take("sales", wait=5, handoff=2)  # a batch in use: the holder looks at marks only when it ends
    started = time.monotonic()
    with pytest.raises(LockBusy, match="held by another worker"):
        waiter.take("sales", wait=60, handoff=2)  # a plain waiter gives a busy holder 1 s, never the minute
    assert time.monotonic() - started < 5
    holder.give_back("sales", keep=True)  # a plain mark: a busy holder keeps its lock (a lock cycle saved)
    assert holder.kept() == ["sales"]
    holder.take("sales", wait=5, handoff=2)  # its next batch
    with pytest.raises(LockBusy):
        waiter.take("sales", wait=60, handoff=0.3, urgent=True)  # jobs handed back again and again
    holder.give_back("sales", keep=True)  # the batch ends: the lock is wanted urgently, so it is not kept
    assert holder.kept() == []
    assert waiter.take("sales", wait=5, handoff=2).database == "sales"
    waiter.give_back("sales", keep=False)
