"""The bytes of result rows a worker holds in Python at once, all its jobs together.

SQLite's own memory is capped per process (``guard.cap_sqlite_heap``); a row leaves that cap when
Python copies it, and encoding it for JSON (base64 for a blob, then the JSON line) holds it about
twice over again. Reads run concurrently, so without a shared bound eight jobs that each select one
60 MiB blob held 2.4 GiB in a worker of 1 GiB. Every fetched row is measured (its lengths only) and
reserved here before it is encoded; a job that would pass the bound waits for the others to finish
encoding theirs, holding nothing else; a row the bound can never hold fails its job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.errors import MemoryLimit, Timeout

# What encoding a row holds besides the row itself, as a multiple of its JSON size: the row's values
# (at most its JSON size), then the JSON line and its UTF-8 bytes, one at a time (worker/results.py).
ENCODING_FACTOR = 2


class RowMemory:
    """A byte budget shared by the threads of one worker process."""

    def __init__(self, capacity: int, *, now: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.now = now
        self._used = 0
        self.peak = 0  # the most ever reserved at once
        self._freed = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def try_take(self, size: int) -> bool:
        """Reserve ``size`` bytes if they are free now."""
        self._check(size)
        with self._freed:
            if self._used + size > self.capacity:
                return False
            self._reserve(size)
            return True

    def take(self, size: int, deadline: float) -> None:
        """Reserve ``size`` bytes, waiting for other jobs to give theirs back until ``deadline``
        (``now``'s clock). The caller must hold no reservation while it waits, or two jobs could wait
        for each other."""
        self._check(size)
        with self._freed:
            while self._used + size > self.capacity:
                left = deadline - self.now()
                if left <= 0:
                    raise Timeout("job ran past its time budget waiting for other jobs' results to leave the "
                                  "worker's memory")
                self._freed.wait(min(left, 1.0))
            self._reserve(size)

    def give(self, size: int) -> None:
        if size <= 0:
            return
        with self._freed:
            self._used = max(0, self._used - size)
            self._freed.notify_all()

    def _reserve(self, size: int) -> None:
        self._used += size
        self.peak = max(self.peak, self._used)

    def _check(self, size: int) -> None:
        if size > self.capacity:
            most = self.capacity // ENCODING_FACTOR
            raise MemoryLimit(f"a result row of about {size // ENCODING_FACTOR:,} bytes is more than a worker can "
                              f"hold while it encodes it ({most:,} bytes: SRDB_ROW_MEMORY, by default a quarter "
                              "of its memory): select less per row, e.g. substr() of a long value")
