"""One SQS batch: parse every message, run each database's writes under its lock and its reads
concurrently, publish every result, and name the messages that SQS must deliver again."""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from shared.errors import (
    CommitConflict,
    DatabaseNotFound,
    InfrastructureError,
    InternalError,
    InvalidJob,
    SrdbError,
    StorageError,
    UserError,
)
from shared.jobs import AsOf, Job
from shared.lock import SecurityGroupLock
from shared.messages import guess_job_id, open_envelope
from shared.results import JobResult, JobState
from shared.settings import Settings
from shared.sql import Guard, is_read_job, open_job_connection
from shared.status import StatusStore
from shared.storage import SnapshotStore
from shared.versions import History
from worker.execute import Outcome, run_job
from worker.results import ResultSink
from worker.transaction import apply_writes

log = logging.getLogger("srdb.worker")
T = TypeVar("T")
R = TypeVar("R")
MAX_CALLBACK_BYTES = 240 * 1024
# Kept back from the invocation's time for the commit and the status documents: no job starts later.
PUBLISH_RESERVE_SECONDS = 5.0
MIN_JOB_SECONDS = 0.05
CRASH_POINTS = ("after_lock", "before_commit", "after_commit", "after_status")
COMMIT_ATTEMPTS = 2


@dataclass(frozen=True)
class Record:
    """One SQS message as the event source mapping hands it over."""

    message_id: str
    body: str
    receive_count: int = 1


@dataclass
class BatchStats:
    """What one batch did, for metrics: counts, time waited for locks, bytes committed, duration."""

    messages: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    lock_wait_ms: float = 0.0
    commit_bytes: int = 0
    duration_ms: float = 0.0


@dataclass(frozen=True)
class Refusal:
    """A message that must not run: its FAILED document is written only where it can harm no other
    job (over nothing, or over the document ``etag`` names), then the message is done."""

    record: Record
    job_id: str
    error: SrdbError
    etag: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class Ignored:
    """A message that is done without a word: its job is settled, or the id belongs to another job."""

    reason: str


@dataclass
class Task:
    record: Record
    job: Job
    read: bool
    etag: str | None = None
    digest: str | None = None
    outcome: Outcome | None = None
    version: int | None = None
    started: float = 0.0
    deferred: SrdbError | None = None


class Worker:
    """Runs batches. Clients, clock and settings come in; a warm worker keeps its local snapshots.

    Every stage runs each message (or each database's group) through :func:`_each`, which turns
    anything it raises into that item's own failure: no job can take the rest of a batch down.
    """

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
    ) -> None:
        self.settings, self.sqs, self.now, self.crash = settings, sqs, now, crash
        self.store = SnapshotStore(s3, settings.bucket, settings.cache_dir, chunk_size=settings.chunk_size,
                                   concurrency=settings.transfer_concurrency, now=now)
        self.lock = SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=settings.lock_ttl,
                                      now=now, sleep=sleep)
        self.status = StatusStore(s3, settings.bucket)
        self.history = History(s3, settings.bucket, now=now)
        self.allowed_reply_to = settings.allowed_reply_to()
        self._local = defaultdict(threading.Lock)  # type: defaultdict[str, threading.Lock]
        self.last_stats = BatchStats()
        self._deadline = float("inf")

    def process(self, records: list[Record], *, remaining: float | None = None) -> list[str]:
        """Run a batch; return the message ids that must be retried (``batchItemFailures``).

        ``remaining``: the seconds the invocation has left (Lambda's context); no job starts so late
        that the batch could not publish it, and each job's budget is cut to fit."""
        started, uploaded = time.monotonic(), self.store.stats.bytes_up
        seconds = remaining if remaining is not None else self.settings.worker_timeout
        self._deadline = self.now() + seconds - min(PUBLISH_RESERVE_SECONDS, seconds / 4)
        self.last_stats = stats = BatchStats(messages=len(records))
        retry: set[str] = set()
        tasks: list[Task] = []
        finished: list[Task] = []
        # Status reads and writes are I/O: one thread each, up to io_concurrency at once.
        with ThreadPoolExecutor(max(1, min(self.settings.io_concurrency, len(records)))) as pool:
            for record, parsed in zip(records, _each(pool, self._parse, records, _parse_failed), strict=True):
                if isinstance(parsed, InfrastructureError):
                    log.warning("message %s: %s", record.message_id, parsed)
                    retry.add(record.message_id)
                elif isinstance(parsed, Task):
                    tasks.append(parsed)
                elif isinstance(parsed, Refusal):
                    stats.failed += 1
                    if not self._refuse(parsed):
                        retry.add(record.message_id)
                else:
                    log.info("message %s: %s", record.message_id, parsed.reason)
            by_database: dict[str, list[Task]] = defaultdict(list)
            for task in tasks:
                by_database[task.job.database].append(task)
            for done in _each(pool, self._run_database, list(by_database.values()), _group_failed):
                finished.extend(done)
            for task, ok in zip(finished, _each(pool, self._publish, finished, _publish_failed), strict=True):
                if not ok:
                    retry.add(task.record.message_id)
                elif task.outcome is not None:
                    stats.succeeded += task.outcome.ok
                    stats.failed += not task.outcome.ok
        self.crash("after_status")
        stats.retried = len(retry)
        stats.commit_bytes = self.store.stats.bytes_up - uploaded
        stats.duration_ms = (time.monotonic() - started) * 1000
        return sorted(retry)

    # -- parse -----------------------------------------------------------------------------

    def _parse(self, record: Record) -> Task | Refusal | Ignored | InfrastructureError:
        """A task to run, a message to refuse, one to let go, or an infrastructure error to retry."""
        try:
            envelope = open_envelope(record.body)
        except UserError as exc:
            return Refusal(record, guess_job_id(record.body) or record.message_id, exc)
        current, etag = None, None
        try:
            text = envelope.job_text
            if envelope.payload_key is not None:
                assert envelope.job_id is not None
                current, etag = self.status.get(envelope.job_id)
                text = self._payload(envelope.job_id, envelope.payload_key)
            job = Job.from_text(text or "")
            if envelope.job_id is not None and job.job_id != envelope.job_id:
                raise InvalidJob(f"the message names job {envelope.job_id} but carries job {job.job_id}")
        except UserError as exc:
            # Over the QUEUED document only when the message cannot be anyone's job but that one (a claim
            # check's payload key follows from its id, so a missing payload fails every copy alike).
            job_id = envelope.job_id or guess_job_id(record.body) or record.message_id
            over = etag if current is not None and not current.state.final else None
            return Refusal(record, job_id, exc, etag=over)
        except InfrastructureError as exc:
            return exc
        if envelope.payload_key is None:
            current, etag = self.status.get(job.job_id)
        return self._admit(record, job, current, etag)

    def _payload(self, job_id: str, key: str) -> str:
        data = self.status.get_bytes(key, missing_ok=True)
        if data is None:
            raise InvalidJob(f"the claim-checked body of job {job_id} is missing (s3 key {key}): "
                             "it expired or was deleted; submit the job again")
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise InvalidJob(f"claim-checked payload is not UTF-8: {exc}") from None

    def _admit(self, record: Record, job: Job, current: JobResult | None, etag: str | None
               ) -> Task | Refusal | Ignored:
        """Run a message only as the job its QUEUED document names: a message sent under another
        job's id, before or after it, can neither run in its place nor change its document."""
        digest = job.digest()
        if current is None:
            return Refusal(record, job.job_id, InvalidJob(
                f"job {job.job_id} has no status document: jobs are submitted by writing their QUEUED "
                "document first (srdb's clients do), so the worker can tell them from forgeries"), digest=digest)
        if current.job_digest != digest:
            return Ignored(f"job {job.job_id}: the message does not match the job its status document names; "
                           "left alone")
        if current.settled:
            return Ignored(f"job {job.job_id} is {current.state.value} already")  # CANCELLED jobs stop here too
        try:
            self._check(job)
            read = job.read_only or job.as_of is not None or is_read_job(job)
        except UserError as exc:
            return Refusal(record, job.job_id, exc, etag=etag, digest=digest)
        return Task(record, job, read, etag, digest)

    def _check(self, job: Job) -> None:
        """What this deployment allows beyond the job schema."""
        if job.reply_to and job.reply_to not in self.allowed_reply_to:
            raise InvalidJob(f"reply_to queue {job.reply_to} is not allowed; allowed queues are set by "
                             "SRDB_CALLBACK_QUEUE_URL and SRDB_REPLY_TO_ALLOWED")
        if job.timeout is not None and job.timeout > self.settings.max_job_timeout:
            raise InvalidJob(f"timeout {job.timeout:g}s is over this deployment's limit of "
                             f"{self.settings.max_job_timeout:g}s (SRDB_MAX_JOB_TIMEOUT, below the worker's own "
                             "timeout)")

    def _refuse(self, refusal: Refusal) -> bool:
        """Write a refused message's FAILED document; False: S3 failed, retry the message."""
        job_id = refusal.job_id
        log.warning("message %s (job %s) is refused: %s", refusal.record.message_id, job_id, refusal.error,
                    extra={"job_id": job_id, "message_id": refusal.record.message_id})
        result = JobResult(job_id, JobState.FAILED, error=refusal.error.to_json(), finished_at=_iso(self.now()),
                           job_digest=refusal.digest)
        try:
            if refusal.etag is not None:
                self.status.put(result, if_match=refusal.etag)
            else:
                self.status.put(result, if_none_match=True)
        except StorageError:
            return False
        except UserError:
            pass  # the id is not one a key may hold: there is no document to write
        return True

    # -- run -------------------------------------------------------------------------------

    def _run_database(self, tasks: list[Task]) -> list[Task]:
        database = tasks[0].job.database
        writes = [t for t in tasks if not t.read]
        reads = [t for t in tasks if t.read]
        with self._exclusive(database):
            if writes:
                self._run_writes(database, writes)
            if reads:
                self._run_reads(database, reads)
        return tasks

    @contextmanager
    def _exclusive(self, database: str) -> Iterator[None]:
        """One batch at a time touches a local copy: across threads, and across processes on one machine."""
        folder = Path(self.settings.cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with self._local[database], open(folder / f".{database}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run_writes(self, database: str, tasks: list[Task]) -> None:
        try:
            handle = self.lock.acquire(database, self.settings.lock_wait)
        except InfrastructureError as exc:
            _defer(tasks, exc)
            return
        self.last_stats.lock_wait_ms += handle.waited * 1000
        try:
            self.crash("after_lock")
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                try:
                    self._apply_and_commit(database, tasks)
                    break
                except CommitConflict as exc:
                    # Our lock was broken while we stalled and someone committed: run again on their snapshot.
                    if attempt == COMMIT_ATTEMPTS:
                        raise
                    log.warning("database %s: %s; applying again on the new snapshot", database, exc)
        except Exception as exc:
            self.store.discard(database)
            _defer(tasks, exc)
        finally:
            try:
                self.lock.release(handle)
            except Exception as exc:
                log.warning("database %s: lock release failed (the reaper will free it): %s", database, exc)

    def _apply_and_commit(self, database: str, tasks: list[Task]) -> None:
        snapshot = self.store.sync(database, for_write=True)
        self.store.begin_write(snapshot)
        for task in tasks:
            task.started = self.now()
        applied = apply_writes(snapshot.path, [t.job for t in tasks], self._sink, self._budget, self.now)
        self.crash("before_commit")
        if applied.changed:
            jobs = [j for j, o in applied.outcomes.items() if o.ok and not o.replayed and not o.read_only]
            snapshot = self.store.commit(snapshot, jobs, applied.pages)
        else:
            self.store.end_write(snapshot)
        self.crash("after_commit")
        for task in tasks:
            task.outcome, task.version = applied.outcomes.get(task.job.job_id), snapshot.version
        _defer([t for t in tasks if t.outcome is None], _OUT_OF_TIME)

    def _run_reads(self, database: str, tasks: list[Task]) -> None:
        try:
            snapshot = self.store.sync(database)
        except InfrastructureError as exc:
            _defer(tasks, exc)
            return
        if snapshot.manifest is None:
            for task in tasks:
                task.outcome = Outcome.failed(task.job.job_id, DatabaseNotFound(
                    f"database {database} does not exist: no write has created it yet"))
            return
        by_as_of: dict[AsOf | None, list[Task]] = defaultdict(list)
        for task in tasks:
            by_as_of[task.job.as_of].append(task)
        for as_of, group in by_as_of.items():
            if as_of is None:
                self._read_file(snapshot.path, snapshot.version, group)
                continue
            try:
                old = self.history.resolve(database, as_of, snapshot.manifest)
                path = snapshot.path if old.version == snapshot.version else self.store.materialize(database, old)
            except UserError as exc:
                for task in group:
                    task.outcome = Outcome.failed(task.job.job_id, exc)
                continue
            except (InfrastructureError, OSError) as exc:
                _defer(group, exc)
                continue
            self._read_file(path, old.version, group)

    def _read_file(self, path: Path, version: int, tasks: list[Task]) -> None:
        """Run reads concurrently, each on its own read-only connection to ``path``."""

        def read(task: Task) -> None:
            budget = self._budget(task.job)
            if budget is None:
                _defer([task], _OUT_OF_TIME)
                return
            task.started = self.now()
            guard = Guard(read_only=True)
            try:
                # immutable: nothing changes the local copy while this database's reads run (see _exclusive).
                conn = open_job_connection(f"file:{path}?mode=ro&immutable=1", guard, uri=True)
            except sqlite3.Error as exc:
                _defer([task], exc)
                return
            try:
                task.outcome = run_job(conn, guard, task.job, self._sink(task.job), budget=budget)
                task.version = version
            finally:
                conn.close()

        with ThreadPoolExecutor(max(1, min(self.settings.read_concurrency, len(tasks)))) as pool:
            _each(pool, read, tasks, lambda task, exc: _defer([task], exc))

    def _sink(self, job: Job) -> ResultSink:
        return ResultSink(job.job_id, self.status.put_bytes, inline_limit=self.settings.inline_result_bytes,
                          max_bytes=self.settings.max_result_bytes)

    def _budget(self, job: Job) -> float | None:
        """The job's own budget, cut to the time the batch has left; None when too little is left to start."""
        left = self._deadline - self.now()
        if left < MIN_JOB_SECONDS:
            return None
        return min(job.timeout or self.settings.job_timeout, left)

    # -- publish ---------------------------------------------------------------------------

    def _publish(self, task: Task) -> bool:
        """Write the final status document (and the callback). False: retry the message."""
        outcome = task.outcome
        if outcome is None:
            if task.deferred is not None and task.record.receive_count >= self.settings.max_receive_count:
                self._publish_dead_letter(task, task.deferred)
            return False
        finished = self.now()
        submitted = _epoch(task.job.submitted_at)
        timings = {"run_ms": round(outcome.run_ms, 3)}
        if submitted is not None:
            timings["queued_ms"] = round(max(0.0, (task.started or finished) - submitted) * 1000, 3)
            timings["total_ms"] = round(max(0.0, finished - submitted) * 1000, 3)
        result = JobResult(
            task.job.job_id, JobState.SUCCEEDED if outcome.ok else JobState.FAILED,
            database=task.job.database, columns=outcome.columns, types=outcome.types, rows=outcome.rows,
            rowcount=outcome.rowcount,
            lastrowid=outcome.lastrowid, error=outcome.error, parts=outcome.parts, version=task.version,
            submitted_at=task.job.submitted_at, finished_at=_iso(finished), timings=timings,
            job_digest=task.digest or task.job.digest(),
        )
        try:
            # A read is only published over the document it saw, so a cancel that won the race stands.
            # A write's effect is committed whatever a late cancel said, so its result always lands.
            written = self.status.put(result, if_match=task.etag if task.read else None)
        except (StorageError, OSError) as exc:
            log.warning("job %s: result not published: %s; it will be retried", task.job.job_id, exc,
                        extra={"job_id": task.job.job_id})
            return False
        if written and task.job.reply_to:
            try:
                self._callback(task.job.reply_to, result)
            except Exception as exc:  # a callback queue that refuses is reported, not retried forever
                log.warning("job %s: callback to %s failed: %s", task.job.job_id, task.job.reply_to, exc,
                            extra={"job_id": task.job.job_id})
        return True

    def _publish_dead_letter(self, task: Task, reason: SrdbError) -> None:
        """The last delivery failed too: SQS moves the message to the dead-letter queue, and the
        status document says why. ``retryable`` stays true: ``srdb dlq redrive`` runs it again."""
        error = {"type": reason.type, "retryable": True, "message": (
            f"gave up after {task.record.receive_count} deliveries: {reason}; the job is in the dead-letter "
            "queue (srdb dlq redrive sends it back)")}
        result = JobResult(task.job.job_id, JobState.FAILED, database=task.job.database, error=error,
                           submitted_at=task.job.submitted_at, finished_at=_iso(self.now()),
                           job_digest=task.digest or task.job.digest())
        try:
            self.status.put(result, if_match=task.etag)
        except StorageError as exc:
            log.warning("job %s: dead-letter status not written: %s", task.job.job_id, exc)

    def _callback(self, queue_url: str, result: JobResult) -> None:
        body = result.to_bytes()
        if len(body) > MAX_CALLBACK_BYTES:
            body = json.dumps({"job_id": result.job_id, "state": result.state.value,
                               "status_key": f"results/{result.job_id}.json"}).encode()
        self.sqs.send_message(QueueUrl=queue_url, MessageBody=body.decode())


_OUT_OF_TIME = InfrastructureError("the batch ran out of time before this job started; it runs again")


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


def _parse_failed(record: Record, exc: Exception) -> Refusal:
    return Refusal(record, guess_job_id(record.body) or record.message_id, InternalError.wrapping(exc))


def _group_failed(tasks: list[Task], exc: Exception) -> list[Task]:
    _defer([t for t in tasks if t.outcome is None], exc)
    return tasks


def _publish_failed(task: Task, exc: Exception) -> bool:
    return False


def _defer(tasks: list[Task], error: Exception) -> None:
    """Leave these jobs to SQS redelivery, remembering why in case it was the last delivery.
    A SQLite or OS error here is the local copy's, an infrastructure fault like any other."""
    if not tasks:
        return
    reason = error if isinstance(error, SrdbError) else StorageError(f"local copy: {type(error).__name__}: {error}")
    log.warning("%d job(s) of %s will be retried: %s", len(tasks), tasks[0].job.database, reason,
                extra={"job_ids": [t.job.job_id for t in tasks], "database": tasks[0].job.database})
    for task in tasks:
        task.deferred = reason


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
