"""Stage two: one database's write jobs, under its lock, applied to its current version and committed.

The version is a write target (worker/targets.py): pages on demand (worker/page_writes.py) where the worker
reads pages, else the whole local copy.

The lock only avoids wasted work; the commit is a conditional write of the manifest, so a writer
whose lock was broken while it stalled gets 412 (CommitConflict) and runs its jobs again at once on
the snapshot that won. Infrastructure failures leave the jobs to SQS redelivery (Deferred).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from shared.errors import (
    CommitConflict,
    DatabaseNotFound,
    InfrastructureError,
    LockBusy,
    StorageError,
    WorkerFault,
)
from shared.job.model import Job
from shared.job.routing import is_fifo
from shared.snapshot.store import SnapshotStore
from worker.execute import Outcome
from worker.keeper import LockKeeper
from worker.load import Loader
from worker.results import ResultSink
from worker.targets import LocalCopy, WriteTarget
from worker.transaction import apply_writes
from worker.verdicts import Done, GroupResult, HandBack, Task, Verdict, deferred

if TYPE_CHECKING:  # APSW is imported only by a worker that takes pages on demand (SRDB_READ_PAGES)
    from worker.page_writes import PageWrites

log = logging.getLogger("srdb.worker")
COMMIT_ATTEMPTS = 2
# Seconds a batch's jobs for a database another worker holds stay away from the queue: long enough for the
# holder, told it is wanted, to finish its batch and let go.
LOCK_BUSY_DELAY = 1
# Hand-backs after which a job's wait for a lock is urgent (worker/keeper.py).
URGENT_AFTER = 2
OUT_OF_TIME = InfrastructureError("the batch ran out of time before this job started; it was handed back to the "
                                  "queue and runs again")


class WriteStage:
    def __init__(
        self,
        store: SnapshotStore,
        locks: LockKeeper,
        *,
        lock_wait: float,
        lock_handoff: float | None = None,
        sink: Callable[[Job], ResultSink],
        budget: Callable[[Job], float | None],
        now: Callable[[], float],
        crash: Callable[[str], None],
        watch: Callable[[Task], AbstractContextManager[threading.Event]],
        loader: Loader,
        pages: PageWrites | None = None,
    ) -> None:
        self.store, self.locks, self.lock_wait, self.loader, self.pages = store, locks, lock_wait, loader, pages
        self.lock_handoff = lock_handoff
        self.sink, self.budget, self.now, self.crash, self.watch = sink, budget, now, crash, watch

    def run(self, database: str, tasks: list[Task]) -> GroupResult:
        if all(is_fifo(t.record.source) for t in tasks):
            # A FIFO queue's message group is the database: no other worker runs its writes now, so there is
            # no lock to take; the conditional commit fences the rare copy that meets another.
            return self._write(database, tasks, waited=0.0, locked=False)
        asked = self.now()
        try:
            # Jobs handed back again and again ask even a busy holder to let go: no writer waits for ever.
            urgent = any(t.record.handbacks >= URGENT_AFTER for t in tasks)
            handle = self.locks.take(database, self.lock_wait, self.lock_handoff, urgent=urgent)
        except LockBusy as exc:
            # Another worker holds it and was told we want it: the jobs go back to the queue for a moment
            # (without using a delivery) while the rest of the batch runs.
            log.info("database %s: %s; its %d write job(s) are handed back", database, exc, len(tasks))
            return GroupResult({t.record.message_id: HandBack(exc, delay=LOCK_BUSY_DELAY) for t in tasks},
                               (self.now() - asked) * 1000)
        except InfrastructureError as exc:
            return GroupResult(deferred(tasks, exc))
        return self._write(database, tasks, waited=handle.waited, locked=True)

    def _write(self, database: str, tasks: list[Task], *, waited: float, locked: bool) -> GroupResult:
        bytes_before = self.store.stats.bytes_up
        keep = True  # for the next batch, unless the lock was broken or the batch failed
        try:
            self.crash("after_lock")
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                try:
                    verdicts = self._apply_and_commit(database, tasks)
                    break
                except CommitConflict as exc:
                    # Our lock was broken while we stalled and someone committed: run again on their snapshot.
                    keep = False
                    if attempt == COMMIT_ATTEMPTS:
                        raise
                    log.warning("database %s: %s; applying again on the new snapshot", database, exc)
        except Exception as exc:
            reason = _reason(exc)
            log.warning("%d write job(s) of %s will be retried: %s", len(tasks), database, reason,
                        exc_info=isinstance(reason, WorkerFault))
            verdicts = deferred(tasks, reason)
            keep = False
        finally:
            if locked:  # the next holder's commit comes after this one's history entry (SnapshotStore.defer_history)
                self.store.settle_history(database)
                self.locks.give_back(database, keep=keep)
        return GroupResult(verdicts, waited * 1000, self.store.stats.bytes_up - bytes_before)

    def _apply_and_commit(self, database: str, tasks: list[Task]) -> dict[str, Verdict]:
        verdicts: dict[str, Verdict] = {}
        with self._target(database) as target:
            started = self.now()
            new = target.version == 0
            if new:  # a job that may not create the database fails; the others create it
                for task in [t for t in tasks if not t.job.may_create]:
                    verdicts[task.record.message_id] = Done(Outcome.failed(task.job.job_id, DatabaseNotFound(
                        f"database {database} does not exist, and the job may not create it (create: false)")),
                        None, started)
                tasks = [t for t in tasks if t.job.may_create]
            by_id = {t.job.job_id: t for t in tasks}
            applied = apply_writes(target, [t.job for t in tasks], self.sink, self.budget, self.now,
                                   lambda job: self.watch(by_id[job.job_id]), self.loader.run)
            self.crash("before_commit")
            version = target.version
            committed: list[str] = []
            if applied.changed:
                committed = [j for j, o in applied.outcomes.items() if o.ok and not o.replayed and not o.read_only]
                version = target.commit(committed, [by_id[j].job.summary for j in committed])
        self.crash("after_commit")
        for task in tasks:
            outcome = applied.outcomes.get(task.job.job_id)
            created = new and task.job.job_id in committed
            verdicts[task.record.message_id] = (Done(outcome, version, started, created) if outcome is not None
                                                else HandBack(OUT_OF_TIME))
        return verdicts


    @contextmanager
    def _target(self, database: str) -> Iterator[WriteTarget]:
        if self.pages is not None:
            with self.pages.target(database) as target:
                yield target
        else:
            with self.store.writer(database) as writer:
                yield LocalCopy(writer.path, writer)


def _reason(exc: Exception) -> InfrastructureError:
    """Why a database's group goes back to SQS, named for what failed: S3 or a lock as they said, the local
    copy (a file or SQLite error), or the worker itself (anything else: a bug, logged with its traceback)."""
    if isinstance(exc, InfrastructureError):
        return exc
    if isinstance(exc, OSError | sqlite3.Error):
        return StorageError(f"local copy: {type(exc).__name__}: {exc}")
    return WorkerFault(f"the worker failed unexpectedly ({type(exc).__name__}: {exc}); its log has the traceback")
