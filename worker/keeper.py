"""The write locks a warm worker holds: in use by a batch, or kept for the next one.

Taking a database's lock costs a full cycle of calls (two EC2 security-group calls, ~270 ms in a
Region, from buckets that refill at 5 a second per account; or two conditional S3 PUTs). A worker
that writes the same database batch after batch keeps the lock instead of giving it back, and the
next batch starts at once, with no call at all. The keeper:

- **renews** a lock in use once a third of its TTL has passed (CreateTags, or one S3 PUT), so a long
  batch keeps it while an idle one costs nothing — a kept lock is never renewed;
- **releases** a kept lock when its database has been idle for ``linger`` seconds (a thread of its
  own wakes for it), and every lock on ``close``;
- renews a kept lock before a batch uses it when less than half its TTL is left, and takes a new one
  when the old was freed meanwhile (expired, and broken by a waiter or the reaper);
- without wanted marks, keeps only a lock it got without waiting: one another writer held when asked is
  contended (several workers are writing that database by turns), and keeping it would make the others
  wait out the linger every turn, so it goes back after the batch;
- lets go of a lock **another worker wants** (shared/wanted.py): a waiter marks the database wanted; a
  holder keeping the lock idle lets go within ``poll`` seconds, a busy one keeps it (moving it costs a
  lock cycle) unless the mark is urgent — the waiter's jobs were handed back ``URGENT_AFTER`` times —
  and then lets go after its batch. A waiter waits at most IDLE_HANDOFF seconds (``handoff`` when
  urgent): the worker then hands that database's jobs back to the queue and runs the rest of its
  batch, so one busy database never holds up the others, and no writer is kept out for ever.

In a Lambda container that is frozen between invocations the thread is frozen too, so the handler
**parks** its kept locks before it returns: their expiry becomes the linger, so a container that is
never invoked again (or only for other databases) keeps other writers waiting for the linger at most,
and the next batch here renews the lock it reuses. The lock only avoids wasted work either way: the
conditional manifest write is what keeps every update.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from shared.errors import InfrastructureError, LockBusy, LockTimeout
from shared.lock import LockHandle, WriteLock
from shared.wanted import WantedMarks

log = logging.getLogger("srdb.worker")


RETRY_RENEW = 1.0  # seconds before a renewal that failed is tried again
POLL = 0.25  # seconds between looks at whether a lock kept idle is wanted by another worker
# Seconds a plain waiter gives a holder to let go: enough for one keeping the lock idle (it looks every POLL).
IDLE_HANDOFF = 1.0


@dataclass
class _Held:
    handle: LockHandle
    busy: bool  # a batch is using it; otherwise kept since ``since``
    since: float
    renew_at: float  # while busy: when to renew it next
    parked: bool = False  # kept, and its expiry already shortened to the linger
    polled: float = 0.0  # kept: when it was last looked at for a waiter's mark

class LockKeeper:
    def __init__(self, lock: WriteLock, *, linger: float, now: Callable[[], float] = time.time,
                 wanted: WantedMarks | None = None, poll: float = POLL) -> None:
        self.lock, self.linger, self.now, self.wanted, self.poll = lock, linger, now, wanted, poll
        self._held: dict[str, _Held] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.reused = 0  # batches that found their lock kept for them (a figure for tests and metrics)

    def take(self, database: str, wait: float, handoff: float | None = None, *, urgent: bool = False) -> LockHandle:
        """The database's lock for a batch: the one kept from an earlier batch, or a new one."""
        with self._changed:
            held = self._held.pop(database, None)
        if held is not None:
            handle: LockHandle | None = held.handle
            if held.handle.expires_at - self.now() < self.lock.ttl / 2:
                handle = self._renew(held.handle)
            if handle is not None:
                self.reused += 1
                return self._use(replace(handle, waited=0.0))
            log.warning("database %s: the kept lock was freed meanwhile; taking it again", database)
        return self._use(self._acquire(database, wait, handoff, urgent))

    def _acquire(self, database: str, wait: float, handoff: float | None, urgent: bool) -> LockHandle:
        """Take the lock. Once another writer is seen holding it, mark it wanted and give up with LockBusy
        after IDLE_HANDOFF seconds — time for a holder keeping it idle to let go — or, ``urgent``, after
        ``handoff`` seconds: time for a busy one to finish its batch. One call: the backend watches the
        holder (DescribeSecurityGroups, a GET) instead of asking to create the lock again and again
        (CreateSecurityGroup, EC2's scarcest budget). A lock nobody holds but EC2 or S3 will not give yet
        is waited for up to ``wait`` (LockTimeout)."""
        if self.wanted is None or handoff is None:
            return self.lock.acquire(database, wait)
        wanted = self.wanted
        patience = min(wait, handoff if urgent else min(handoff, IDLE_HANDOFF))
        started = self.now()
        try:
            handle = self.lock.acquire(database, wait, held_wait=patience,
                                       on_held=lambda: wanted.mark(database, urgent=urgent))
        except LockTimeout as exc:
            if exc.held:
                raise LockBusy(f"write lock of database {database} is held by another worker, told it is "
                               f"wanted; not handed over within {patience:g}s") from None
            raise
        return replace(handle, waited=self.now() - started)

    def give_back(self, database: str, *, keep: bool) -> None:
        """The batch is done with the lock: keep it for the next one (unless it was contended), or
        release it now."""
        with self._changed:
            held = self._held.get(database)
            if held is None:
                return
            # Without marks, a lock another writer held when asked goes back after the batch (they take turns
            # and would each wait out the linger); with them, a waiter says so and it goes when wanted.
            keep = (keep and self.linger > 0 and held.renew_at != float("inf")
                    and (self.wanted is not None or not held.handle.contended))
        if keep and self._is_wanted(held.handle, held.handle.acquired_at, urgent_only=True):
            keep = False  # a worker whose jobs went back again and again waits: it goes now
        with self._changed:
            if keep:
                held.busy, held.since, held.polled = False, self.now(), self.now()
                self._changed.notify()
                return
            self._held.pop(database, None)
        self._release(held.handle)

    def _is_wanted(self, handle: LockHandle, since: float, *, urgent_only: bool) -> bool:
        """Whether a waiter marked the lock wanted after ``since`` (urgently, when ``urgent_only``)."""
        if self.wanted is None:
            return False
        mark = self.wanted.since(handle.database)
        return mark is not None and mark.at > since and (mark.urgent or not urgent_only)

    def park(self) -> None:
        """Before the process may be frozen (a Lambda invocation returns): shorten every kept lock's
        expiry to the linger, so a container that is never invoked again, or is invoked for other
        databases, blocks other writers for the linger at most; the next batch here renews it."""
        with self._changed:
            kept = [h.handle for h in self._held.values() if not h.busy and not h.parked]
        for handle in kept:
            try:
                parked = self.lock.renew(handle, ttl=self.linger)
            except InfrastructureError as exc:
                log.warning("database %s: parking the kept lock failed: %s", handle.database, exc)
                parked = None
            with self._changed:
                held = self._held.get(handle.database)
                if held is None or held.busy or held.handle is not handle:
                    continue
                if parked is None:
                    del self._held[handle.database]
                else:
                    held.handle, held.parked = parked, True
            if parked is None:
                self._release(handle)

    def close(self) -> None:
        """Release every lock kept; a batch in flight keeps its own until it gives it back."""
        with self._changed:
            kept = [d for d, h in self._held.items() if not h.busy]
            handles = [self._held.pop(d).handle for d in kept]
        for handle in handles:
            self._release(handle)

    def handle(self, database: str) -> LockHandle | None:
        """The database's lock as last taken or renewed, while held."""
        with self._changed:
            held = self._held.get(database)
            return held.handle if held is not None else None

    def kept(self) -> list[str]:
        with self._changed:
            return sorted(d for d, h in self._held.items() if not h.busy)

    def _use(self, handle: LockHandle) -> LockHandle:
        with self._changed:
            self._held[handle.database] = _Held(handle, True, self.now(), self._renewal(handle))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._tend, name="srdb-lock-keeper", daemon=True)
                self._thread.start()
            self._changed.notify()
        return handle

    def _renewal(self, handle: LockHandle) -> float:
        return handle.expires_at - self.lock.ttl * 2 / 3

    def _tend(self) -> None:
        """Renew locks in use a third of the way through their TTL; release kept ones idle past the linger,
        or as soon as another worker marks them wanted (looked at every ``poll`` seconds)."""
        while True:
            with self._changed:
                now = self.now()
                renew = [h.handle for h in self._held.values() if h.busy and h.renew_at <= now]
                idle = [d for d, h in self._held.items() if not h.busy and now - h.since >= self.linger]
                released = [self._held.pop(d).handle for d in idle]
                look = [(h.handle, h.since) for h in self._held.values()
                        if self.wanted is not None and not h.busy and now - h.polled >= self.poll]
                for handle, _ in look:
                    self._held[handle.database].polled = now
                if not renew and not released and not look:
                    if not self._held:
                        self._thread = None
                        return
                    due = min(self._due(h) for h in self._held.values())
                    self._changed.wait(max(0.01, due - now))
                    continue
            released += self._wanted_of(look)
            for handle in released:
                self._release(handle)
            for handle in renew:
                renewed = self._renew(handle)
                with self._changed:
                    held = self._held.get(handle.database)
                    if held is None or held.handle is not handle:
                        continue  # given back meanwhile
                    if renewed is None:  # lost: the batch goes on, and its conditional commit decides
                        held.renew_at = float("inf")
                    elif renewed is handle:  # the call failed: try again soon
                        held.renew_at = self.now() + RETRY_RENEW
                    else:
                        held.handle, held.renew_at = renewed, self._renewal(renewed)

    def _due(self, held: _Held) -> float:
        if held.busy:
            return held.renew_at
        due = held.since + self.linger
        return min(due, held.polled + self.poll) if self.wanted is not None else due

    def _wanted_of(self, kept: list[tuple[LockHandle, float]]) -> list[LockHandle]:
        """Those of the ``kept`` locks (each with the moment it went idle) that a worker marked wanted since,
        taken out of the keeper to be released."""
        wanted = [h for h, since in kept if self._is_wanted(h, since, urgent_only=False)]
        taken = []
        with self._changed:
            for handle in wanted:
                held = self._held.get(handle.database)
                if held is not None and not held.busy and held.handle is handle:
                    del self._held[handle.database]
                    taken.append(handle)
        return taken

    def _renew(self, handle: LockHandle) -> LockHandle | None:
        """The renewed handle; None when the lock is no longer ours; the same one when the call failed
        (it is tried again on the next turn, and the lock is still ours until its expiry)."""
        try:
            renewed = self.lock.renew(handle)
        except InfrastructureError as exc:
            log.warning("database %s: renewing the write lock failed: %s", handle.database, exc)
            return handle if handle.expires_at > self.now() else None
        if renewed is None:
            log.warning("database %s: the write lock was freed while held (it had expired)", handle.database)
        return renewed

    def _release(self, handle: LockHandle) -> None:
        try:
            self.lock.release(handle)
        except Exception as exc:
            log.warning("database %s: lock release failed (the reaper will free it): %s", handle.database, exc)
