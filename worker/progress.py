"""RUNNING and cancel for jobs that run long.

A job that has run for ``running_after`` seconds is shown RUNNING (its status document is written over
the QUEUED one it ran as, with its start time); from then on the document is read every
``check_every`` seconds (a conditional GET: 304 while nothing changed), and a client's CANCELLED
interrupts the job through its guard. Short jobs pay nothing: no request is made for a job that ends
within ``running_after``. One thread watches every job of a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from shared.job.model import Job
from shared.job.result import JobResult, JobState, iso
from shared.job.status import StatusStore

log = logging.getLogger("srdb.worker")
RUNNING_AFTER = 1.0
CHECK_EVERY = 1.0
TICK = 0.1


@dataclass
class Watch:
    """One running job: the ETag of its status document as far as this worker knows, and the event its
    guard's progress handler reads."""

    job: Job
    digest: str
    etag: str | None
    started: float  # the watcher's clock
    started_at: float  # epoch seconds
    due: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Watcher:
    def __init__(self, status: StatusStore, *, now: Callable[[], float], running_after: float = RUNNING_AFTER,
                 check_every: float = CHECK_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.status, self.now, self.clock = status, now, clock
        self.running_after, self.check_every = running_after, check_every
        self._watches: dict[str, Watch] = {}
        self._etags: dict[str, str | None] = {}
        self._guard = threading.Lock()

    @contextmanager
    def active(self) -> Iterator[None]:
        """Watch while a batch runs; the ETags learnt are kept until the next batch (for publishing)."""
        self._etags.clear()
        stop = threading.Event()
        thread = threading.Thread(target=self._loop, args=(stop,), name="srdb-watcher", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @contextmanager
    def watch(self, job: Job, digest: str, etag: str | None) -> Iterator[threading.Event]:
        """Watch ``job`` while it runs; the event is set when it is cancelled. On exit, no request for it
        is in flight, and :meth:`etag` knows its document's ETag."""
        start = self.clock()
        watch = Watch(job, digest, self._etags.get(job.job_id, etag), start, self.now(), start + self.running_after)
        with self._guard:
            self._watches[job.job_id] = watch
        try:
            yield watch.cancelled
        finally:
            with self._guard:
                self._watches.pop(job.job_id, None)
            with watch.lock:
                watch.done = True
                self._etags[job.job_id] = watch.etag

    def etag(self, job_id: str, default: str | None) -> str | None:
        """The ETag of the job's status document as the worker last wrote or read it."""
        return self._etags.get(job_id, default)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(TICK):
            with self._guard:
                watches = list(self._watches.values())
            for watch in watches:
                if self.clock() >= watch.due:
                    self._visit(watch)

    def _visit(self, watch: Watch) -> None:
        with watch.lock:
            if watch.done:
                return
            try:
                if watch.running:
                    self._check(watch)
                else:
                    self._mark_running(watch)
            except Exception as exc:  # the watcher goes on for the other jobs, and tries this one again
                log.warning("job %s: status document not watched this time: %s", watch.job.job_id, exc)
            watch.due = self.clock() + self.check_every

    def _mark_running(self, watch: Watch) -> None:
        job = watch.job
        running = JobResult(job.job_id, JobState.RUNNING, database=job.database, submitted_at=job.submitted_at,
                            started_at=iso(watch.started_at), job_digest=watch.digest, label=job.summary)
        watch.running = True
        etag = self.status.put(running, if_match=watch.etag) if watch.etag else None
        if etag is not None:
            watch.etag = etag
        else:
            self._check(watch)  # someone wrote first: a cancel, most likely

    def _check(self, watch: Watch) -> None:
        found = self.status.get_if_changed(watch.job.job_id, watch.etag)
        if found is None:
            return
        current, etag = found
        watch.etag = etag
        if current is not None and current.state is JobState.CANCELLED:
            log.info("job %s: cancelled while it ran; interrupting it", watch.job.job_id,
                     extra={"job_id": watch.job.job_id})
            watch.cancelled.set()
