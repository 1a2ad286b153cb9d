"""One SQS batch, as a pipeline of stages that return values:

    parse (worker.parse) → writes, per database, under its lock (worker.writes)
    → reads, per database, concurrently (worker.reads) → publish (worker.publish) → BatchReport

Each stage runs each message, or each database's group, through :func:`_each`, which turns
anything it raises into that item's own verdict: no job can take the rest of a batch down. The
report decides, in one place, which messages SQS delivers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import StorageError
from shared.grants import GrantStore
from shared.guard import cap_sqlite_heap
from shared.job.model import Job
from shared.job.routing import is_fifo
from shared.job.status import StatusStore
from shared.lock.factory import make_lock
from shared.s3 import Bucket
from shared.settings import Settings
from shared.snapshot.history import History
from shared.snapshot.store import CHUNK_CACHE, SnapshotStore
from shared.wanted import WantedMarks
from worker.handback import HandBacks
from worker.keeper import LockKeeper
from worker.load import Loader, open_source
from worker.memory import RowMemory
from worker.parse import Parser, parse_failed
from worker.progress import Watcher
from worker.publish import Publisher
from worker.reads import ReadStage
from worker.report import BatchReport, BatchStats, Fate
from worker.results import ResultSink
from worker.sources import SourcePolicy
from worker.verdicts import Deferred, GroupResult, Ignored, Record, Refusal, Task, Verdict, deferred
from worker.writes import WriteStage

if TYPE_CHECKING:
    from worker.page_writes import PageWrites
    from worker.pages import Pages

__all__ = ["CRASH_POINTS", "BatchStats", "Record", "Worker"]

log = logging.getLogger("srdb.worker")
T = TypeVar("T")
R = TypeVar("R")
CRASH_POINTS = ("after_lock", "before_commit", "after_commit", "after_status")
# Kept back from the invocation's time for the commit and the status documents: no job starts later.
PUBLISH_RESERVE_SECONDS = 5.0
MIN_JOB_SECONDS = 0.05


class Worker:
    """Runs batches. Clients, clock and settings come in; a warm worker keeps its local snapshots."""

    def __init__(
        self,
        settings: Settings,
        s3: Any,
        sqs: Any,
        ec2: Any,
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        crash: Callable[[str], None] = lambda point: None,
        own_sender: Callable[[], str] = lambda: "",
    ) -> None:
        self.settings, self.now, self.crash = settings, now, crash
        cap_sqlite_heap(settings.heap_limit_bytes())
        self.memory = RowMemory(settings.row_memory_bytes())
        bucket = Bucket(s3, settings.bucket)
        self.store = SnapshotStore(bucket, settings.cache_dir, chunk_size=settings.chunk_size,
                                   concurrency=settings.transfer_concurrency, now=now)
        # A commit's history entry is written beside the results it publishes; settled before the batch
        # ends, and before a kept lock is given back (worker/writes.py), so no later commit precedes it.
        self.store.defer_history()
        self.status = StatusStore(Bucket(s3, settings.jobs_bucket))
        self.locks = LockKeeper(make_lock(settings, ec2=ec2, bucket=bucket, now=now, sleep=sleep),
                                linger=settings.lock_linger, now=now, wanted=WantedMarks(bucket, now=now))
        self.parser = Parser(self.status, settings, GrantStore(bucket), own_sender, ahead=self._ahead)
        self.watcher = Watcher(self.status, now=now)
        self.pages: Pages | None = None
        page_writes: PageWrites | None = None
        if settings.read_pages:  # APSW only where it is used
            from worker.page_writes import PageWrites
            from worker.pages import Pages, cap_page_heap

            cap_page_heap(settings.heap_limit_bytes())
            self.pages = Pages(bucket, self.store.cache_dir / CHUNK_CACHE, settings.cache_bytes, self.store.stats,
                               settings.transfer_concurrency)
            page_writes = PageWrites(self.store, self.pages)
        self.writes = WriteStage(self.store, self.locks, lock_wait=settings.lock_wait,
                                 lock_handoff=settings.lock_handoff, sink=self._sink,
                                 budget=self._budget, now=now, crash=crash, watch=self._watch,
                                 loader=Loader(partial(open_source, s3), self.status.put_bytes, SourcePolicy(
                                     settings.bucket, settings.status_bucket, settings.load_sources)),
                                 pages=page_writes)
        self.reads = ReadStage(self.store, History(bucket, now=now), concurrency=settings.read_concurrency,
                               sink=self._sink, budget=self._budget, now=now, watch=self._watch, pages=page_writes)
        self.publisher = Publisher(self.status, sqs, max_receive_count=settings.max_receive_count, now=now,
                                   handbacks=HandBacks(sqs))
        self.last_stats = BatchStats()
        self._deadline = float("inf")

    def process(self, records: list[Record], *, remaining: float | None = None) -> list[str]:
        """Run a batch; return the message ids that must be retried (``batchItemFailures``)."""
        return self.run(records, remaining=remaining).retry()

    def run(self, records: list[Record], *, remaining: float | None = None) -> BatchReport:
        """Run a batch. ``remaining``: the seconds the invocation has left (Lambda's context); no job
        starts so late that the batch could not publish it, and each job's budget is cut to fit."""
        started = time.monotonic()
        seconds = remaining if remaining is not None else self.settings.worker_timeout
        self._deadline = self.now() + seconds - min(PUBLISH_RESERVE_SECONDS, seconds / 4)
        # Status reads and writes are I/O: one thread each, up to io_concurrency at once, and one for the grants.
        with ThreadPoolExecutor(max(1, min(self.settings.io_concurrency, len(records))) + 1) as pool, \
                self.watcher.active(), self._batch_ends():
            self.parser.begin_batch(pool)
            parsed = _each(pool, self.parser.parse, records, parse_failed)
            tasks = [p for p in parsed if isinstance(p, Task)]
            by_database: dict[str, list[Task]] = defaultdict(list)
            for task in tasks:
                by_database[task.job.database].append(task)
            groups = _each(pool, self._run_database, list(by_database.values()), _group_failed)
            # Every task has a verdict, whatever a stage returned: one no stage decided runs again.
            verdicts: dict[str, Verdict] = dict.fromkeys(
                (t.record.message_id for t in tasks), Deferred(StorageError("no stage decided this job")))
            verdicts.update((m, v) for group in groups for m, v in group.verdicts.items())
            published = dict(zip((t.record.message_id for t in tasks), _each(
                pool, lambda t: self.publisher.publish(t, verdicts[t.record.message_id],
                                                       self.watcher.etag(t.job.job_id, t.etag)), tasks,
                lambda t, exc: False), strict=True))
            refused = [p for p in parsed if isinstance(p, Refusal)]
            written = dict(zip((r.record.message_id for r in refused),
                               _each(pool, self.publisher.refuse, refused, lambda r, exc: False), strict=True))
            self.publisher.send_callbacks()
            # A job handed back for want of time is done here: its copy is on the queue (worker/handback.py).
            for message_id in self.publisher.handbacks.send():
                published[message_id] = True
        self.crash("after_status")
        fates = []
        for item in parsed:
            message_id = item.record.message_id
            if isinstance(item, Task):
                fates.append(Fate(item, verdicts[message_id], published[message_id]))
            elif isinstance(item, Refusal):
                fates.append(Fate(item, None, written[message_id]))
            elif isinstance(item, Ignored):
                log.info("message %s: %s", message_id, item.reason)
                fates.append(Fate(item, None, True))
            else:
                log.warning("message %s: %s", message_id, item.reason)
                fates.append(Fate(item))
        report = BatchReport(fates, sum(g.lock_wait_ms for g in groups), sum(g.commit_bytes for g in groups),
                             (time.monotonic() - started) * 1000)
        self.last_stats = report.stats
        return report

    @contextmanager
    def _batch_ends(self) -> Iterator[None]:
        """What a batch leaves behind it: its history entries written, and none of its manifest reads."""
        try:
            yield
        finally:
            self.store.settle_history()
            if self.pages is not None:
                self.pages.manifests.forget_ahead()

    def _ahead(self, job: Job, record: Record) -> None:
        """A job from a FIFO queue: its database's manifest is read beside its status document. A write's group
        is its database, which no other worker writes meanwhile, so what is read stays current to the commit."""
        if self.pages is not None and job.as_of is None and is_fifo(record.source):
            self.pages.manifests.ahead(job.database)

    def park(self) -> None:
        """The invocation ends and the process may be frozen: kept locks expire after the linger."""
        self.locks.park()

    def close(self) -> None:
        """Release the write locks kept for later batches (a worker that stops)."""
        self.locks.close()
        self.store.close()
        if self.pages is not None:
            self.pages.close()

    def _run_database(self, tasks: list[Task]) -> GroupResult:
        database = tasks[0].job.database
        writes = [t for t in tasks if not t.read]
        reads = [t for t in tasks if t.read]
        done = self.writes.run(database, writes) if writes else GroupResult({})
        if not reads:
            return done
        read = self.reads.run(database, reads)
        return GroupResult({**done.verdicts, **read.verdicts}, done.lock_wait_ms, done.commit_bytes)

    def _watch(self, task: Task) -> AbstractContextManager[threading.Event]:
        return self.watcher.watch(task.job, task.digest, task.etag)

    def _sink(self, job: Job) -> ResultSink:
        return ResultSink(job.job_id, self.status.put_bytes, inline_limit=self.settings.inline_result_bytes,
                          max_bytes=self.settings.max_result_bytes, memory=self.memory)

    def _budget(self, job: Job) -> float | None:
        """The job's own budget, cut to the time the batch has left; None when too little is left to start."""
        left = self._deadline - self.now()
        if left < MIN_JOB_SECONDS:
            return None
        return min(job.timeout or self.settings.job_timeout, left)


def _each(pool: Executor, work: Callable[[T], R], items: list[T], failed: Callable[[T, Exception], R]) -> list[R]:
    """``work`` on every item on ``pool``; whatever one item raises becomes ``failed(item, error)``,
    that item's own verdict, so one item can never take the others down."""

    def confined(item: T) -> R:
        try:
            return work(item)
        except Exception as exc:
            log.exception("unexpected error, confined to its own item")
            return failed(item, exc)

    return list(pool.map(confined, items))


def _group_failed(tasks: list[Task], exc: Exception) -> GroupResult:
    return GroupResult(deferred(tasks, StorageError(f"{type(exc).__name__}: {exc}")))
