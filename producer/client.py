"""The synchronous client (boto3): submit jobs, read their state, wait, fetch results, cancel."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from producer.protocol import Submission, check_deployable, poll_delays, prepare, resend_needed
from shared.clients import Clients
from shared.errors import JobFailed, JobNotFound, StorageError, WaitTimeout
from shared.job.model import AsOf, Job, JsonParams
from shared.job.result import JobResult, JobState
from shared.job.status import StatusStore
from shared.job.values import SqlValue, decode_row
from shared.s3 import Bucket
from shared.settings import Settings
from shared.snapshot.history import History
from shared.snapshot.manifest import Manifest


class Client:
    """``Client()`` reads its settings from ``SRDB_*`` variables, or from ``.srdb/local.env``.

    Clients and the clock may be passed in; a test passes its own boto3 clients.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        s3: Any = None,
        sqs: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        **overrides: Any,
    ) -> None:
        self.settings = settings or Settings.load(**overrides)
        self.settings.require("bucket", "queue_url")
        if s3 is None or sqs is None:
            clients = Clients.build(self.settings)
            s3, sqs = s3 or clients.s3, sqs or clients.sqs
        self.s3, self.sqs, self.sleep, self.clock = s3, sqs, sleep, clock
        bucket = Bucket(s3, self.settings.bucket)
        self.store = StatusStore(bucket)
        self.versions = History(bucket)

    # -- submit ----------------------------------------------------------------------------

    def submit(self, database: str, sql: str, params: JsonParams | None = None, *, job_id: str | None = None,
               reply_to: str | None = None, read_only: bool = False, timeout: float | None = None,
               as_of: AsOf | datetime | None = None) -> str:
        """Queue one statement; return the job id. A given ``job_id`` is an idempotency token.
        ``as_of`` (a version number or a time) reads an old snapshot; such a job may only read."""
        return self.submit_job(Job.create(database, sql, params, job_id=job_id, reply_to=reply_to,
                                          read_only=read_only, timeout=timeout, as_of=as_of))

    def submit_statements(self, database: str, statements: list[tuple[str, JsonParams | None]], *,
                          job_id: str | None = None, reply_to: str | None = None,
                          timeout: float | None = None) -> str:
        """Queue several statements that run as one atomic transaction."""
        return self.submit_job(Job.create(database, statements=statements, job_id=job_id, reply_to=reply_to,
                                          timeout=timeout))

    def submit_many(self, database: str, sql: str, param_sets: list[JsonParams], *, job_id: str | None = None,
                    reply_to: str | None = None, timeout: float | None = None) -> str:
        """Queue one statement with many parameter sets (executemany): the batch load path."""
        return self.submit_job(Job.create(database, sql, param_sets=param_sets, job_id=job_id,
                                          reply_to=reply_to, timeout=timeout))

    def submit_job(self, job: Job) -> str:
        return self.submit_prepared(prepare(job))

    def submit_prepared(self, submission: Submission) -> str:
        """Submit a job already encoded by ``producer.protocol.prepare`` (the batch load sizes its
        next job from how well the last one compressed)."""
        job = submission.job
        check_deployable(job, self.settings)
        if not self.store.put(submission.queued, if_none_match=True):
            existing, _ = self.store.get(job.job_id)
            if not resend_needed(submission, existing):
                return job.job_id
        self._send(submission)
        return job.job_id

    def submit_jobs(self, jobs: Iterable[Job], *, concurrency: int = 8) -> list[str]:
        """Submit many jobs in parallel; the ids come back in order."""
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(self.submit_job, jobs))

    def _send(self, submission: Submission) -> None:
        try:
            if submission.payload is not None:
                self.store.put_payload(submission.job.job_id, submission.payload)
            self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=submission.body)
        except (BotoClientError, BotoCoreError) as exc:
            raise StorageError(f"sending job {submission.job.job_id}: {exc}") from exc

    # -- poll ------------------------------------------------------------------------------

    def status(self, job_id: str) -> JobResult:
        """The job's status document now; state NOT_FOUND for an id never submitted."""
        result, _ = self.store.get(job_id)
        return result or JobResult.not_found(job_id)

    def wait(self, job_id: str, timeout: float | None = 60.0, *,
             on_slow: Callable[[JobResult], None] | None = None, slow_after: float = 1.0) -> JobResult:
        """Poll until the job ends. JobNotFound for an unknown id, WaitTimeout after ``timeout`` seconds.
        ``on_slow`` is called once with the job's status when the wait passes ``slow_after`` seconds."""
        started = self.clock()
        deadline = None if timeout is None else started + timeout
        for delay in poll_delays():
            result = self.status(job_id)
            if result.state is JobState.NOT_FOUND:
                raise JobNotFound(f"job {job_id} was never submitted")
            if result.state.final:
                return result
            if deadline is not None and self.clock() + delay > deadline:
                raise WaitTimeout(f"job {job_id} still {result.state.value} after {timeout:g}s")
            if on_slow is not None and self.clock() - started > slow_after:
                on_slow(result)
                on_slow = None
            self.sleep(delay)
        raise AssertionError("unreachable")

    def query(self, database: str, sql: str, params: JsonParams | None = None, *,
              timeout: float | None = 60.0, as_of: AsOf | datetime | None = None) -> JobResult:
        """Submit, wait, and raise JobFailed if the job failed."""
        result = self.wait(self.submit(database, sql, params, as_of=as_of), timeout)
        if result.state is JobState.FAILED:
            raise JobFailed(result.job_id, result.error or {})
        return result

    def results(self, job_id: str, timeout: float | None = 60.0) -> Iterator[list[SqlValue]]:
        """Every row of a finished job, paging through its result parts; JobFailed if it failed."""
        result = self.wait(job_id, timeout)
        if result.state is not JobState.SUCCEEDED:
            raise JobFailed(job_id, result.error or {"type": result.state.value, "message": "job did not succeed"})
        for row in self.store.iter_rows(result):
            yield decode_row(row)

    # -- time travel -----------------------------------------------------------------------

    def history(self, database: str, limit: int = 20) -> list[Manifest]:
        """The newest ``limit`` retained snapshots of ``database``, newest first."""
        return self.versions.list(database, limit)

    def restore(self, database: str, version: int) -> Manifest:
        """Make an old version current again as a new version (nothing is overwritten)."""
        return self.versions.restore(database, version)

    def cancel(self, job_id: str) -> JobState:
        """Cancel a job that no worker has finished; returns the state it is in afterwards."""
        return self.store.cancel(job_id)
