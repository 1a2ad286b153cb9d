"""The write lock's interface — a handle, a held lock, the backend protocol — and the backoff both
backends wait with. Nothing here knows a backend or the settings (the import contract in pyproject.toml)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.errors import LockTimeout


@dataclass(frozen=True)
class LockHandle:
    """A lock held: ``token`` is what release and renew act on (the group id, or the lease's ETag),
    never the name, so a holder can only ever release its own lock."""

    database: str
    token: str
    owner: str
    acquired_at: float
    waited: float
    expires_at: float = 0.0
    contended: bool = False  # another writer held it when we asked: keeping it would keep them waiting


@dataclass(frozen=True)
class HeldLock:
    """A lock as the reaper sees it: its name, the token freeing it acts on, and whether it expired."""

    name: str
    token: str
    expired: bool


class WriteLock(Protocol):
    ttl: float

    def acquire(self, database: str, wait: float, *, held_wait: float | None = None,
                on_held: Callable[[], None] | None = None) -> LockHandle:
        """Take the lock, waiting at most ``wait`` seconds; LockTimeout after that. Once another writer is
        seen holding it, ``on_held`` is called (once) and the wait is cut to ``held_wait`` from the start
        (LockTimeout with ``held`` set)."""

    def release(self, handle: LockHandle) -> bool:
        """Give it back; False when it was no longer ours (freed as expired meanwhile)."""

    def renew(self, handle: LockHandle, ttl: float | None = None) -> LockHandle | None:
        """Set its expiry ``ttl`` (default: the lock's TTL) from now; None when it is no longer ours."""

    def held(self) -> list[HeldLock]:
        """Every lock of this backend, for the reaper."""

    def free(self, lock: HeldLock) -> bool:
        """Free an expired lock by its token; False when someone else already had."""


class Backoff:
    """Jittered exponential backoff until a deadline, on an injected clock. A backend calls
    :meth:`saw_holder` when another writer holds the lock: the wait is cut to ``held_wait`` and
    ``on_held`` called, once, and the LockTimeout that ends the wait says the lock was ``held``."""

    def __init__(self, wait: float, now: Callable[[], float], sleep: Callable[[float], None],
                 rng: Callable[[], float] = random.random, first: float = 0.05, cap: float = 2.0, *,
                 held_wait: float | None = None, on_held: Callable[[], None] | None = None) -> None:
        self.started = now()
        self.deadline, self.now, self.sleep, self.rng = self.started + wait, now, sleep, rng
        self.wait, self.delay, self.cap = wait, first, cap
        self.held_wait, self.on_held, self.held = held_wait, on_held, False

    def saw_holder(self) -> None:
        """Another writer holds the lock (said once)."""
        if self.held:
            return
        self.held = True
        if self.held_wait is not None and self.deadline > self.started + self.held_wait:
            self.deadline, self.wait = self.started + self.held_wait, self.held_wait
        if self.on_held is not None:
            self.on_held()

    def pause(self, database: str) -> None:
        """Sleep before the next try; LockTimeout once the deadline has passed."""
        remaining = self.deadline - self.now()
        if remaining <= 0:
            timeout = LockTimeout(f"write lock of database {database} not acquired within {self.wait:g}s")
            timeout.held = self.held
            raise timeout
        self.sleep(min(remaining, self.delay * (0.5 + self.rng())))
        self.delay = min(self.delay * 2, self.cap)
