"""The synchronous client (boto3): submit jobs, read their state, wait, fetch results, cancel."""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from producer import core
from producer.bulk import (
    Bulk,
    CsvStyle,
    LoadReport,
    export_format,
    export_lines,
    load_job,
    load_spec,
    parquet_blocks,
    report,
    write_export,
)
from producer.protocol import Submission, prepare
from producer.transaction import Transaction
from producer.waiter import Waiter
from shared.clients import Clients
from shared.errors import JobNotFound, QueueError, SerializationFailure, SrdbError, WaitTimeout
from shared.grants import Grants, GrantStore
from shared.job.model import AsOf, Job, JsonParams
from shared.job.result import JobResult, JobState
from shared.job.status import StatusStore
from shared.job.values import SqlValue, decode_row
from shared.names import new_job_id
from shared.s3 import Bucket
from shared.settings import Settings
from shared.snapshot.catalog import Catalog, DatabaseInfo
from shared.snapshot.history import History
from shared.snapshot.manifest import Manifest
from shared.sqs_batches import tens

T = TypeVar("T")
# With a wait queue, a wait reads the job's document when the worker says it is done, and at the
# latest this often (a callback that was not sent costs latency, never the result).
CHECK_EVERY = 5.0


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
        self.store = StatusStore(Bucket(s3, self.settings.jobs_bucket))
        self.versions = History(bucket)
        self.catalog = Catalog(bucket)
        self.grant_store = GrantStore(bucket)
        self.waiter = Waiter(sqs, self.settings.wait_queue_url) if self.settings.wait_queue_url else None
        self.check_every = CHECK_EVERY

    # -- submit ----------------------------------------------------------------------------

    def submit(self, database: str, sql: str, params: JsonParams | None = None, *, job_id: str | None = None,
               reply_to: str | None = None, read_only: bool = False, timeout: float | None = None,
               as_of: AsOf | datetime | None = None, create: bool = True, label: str | None = None) -> str:
        """Queue one statement; return the job id. A given ``job_id`` is an idempotency token.
        ``as_of`` (a version number or a time) reads an old snapshot; such a job may only read.
        ``create=False``: a write to a database that does not exist fails (DatabaseNotFound).
        ``label``: what the job is, shown in history, jobs and status (default: the SQL's first line)."""
        return self.submit_job(Job.create(database, sql, params, job_id=job_id, reply_to=reply_to,
                                          read_only=read_only, timeout=timeout, as_of=as_of, create=create,
                                          label=label))

    def submit_statements(self, database: str, statements: list[tuple[str, JsonParams | None]], *,
                          job_id: str | None = None, reply_to: str | None = None,
                          timeout: float | None = None, create: bool = True, label: str | None = None) -> str:
        """Queue several statements that run as one atomic transaction."""
        return self.submit_job(Job.create(database, statements=statements, job_id=job_id, reply_to=reply_to,
                                          timeout=timeout, create=create, label=label))

    def submit_many(self, database: str, sql: str, param_sets: list[JsonParams], *, job_id: str | None = None,
                    reply_to: str | None = None, timeout: float | None = None, create: bool = True,
                    label: str | None = None) -> str:
        """Queue one statement with many parameter sets (executemany): the batch load path."""
        return self.submit_job(Job.create(database, sql, param_sets=param_sets, job_id=job_id,
                                          reply_to=reply_to, timeout=timeout, create=create, label=label))

    def submit_job(self, job: Job) -> str:
        return self.submit_prepared(prepare(self._replying(job), self.settings.queue_url))

    def _replying(self, job: Job) -> Job:
        """With a wait queue, a job without its own ``reply_to`` reports there, and its wait listens."""
        if self.waiter is None or job.reply_to is not None:
            return job
        self.waiter.expect(job.job_id)
        return dataclasses.replace(job, reply_to=self.settings.wait_queue_url)

    def submit_prepared(self, submission: Submission) -> str:
        """Submit a job already encoded by ``producer.protocol.prepare`` (the batch load sizes its
        next job from how well the last one compressed)."""
        return self._run(core.submit(submission, self.settings))

    def submit_jobs(self, jobs: Iterable[Job], *, concurrency: int = 8) -> list[str]:
        """Submit many jobs: their QUEUED documents in parallel, then their messages ten to a
        SendMessageBatch (one SQS request for ten jobs); the ids come back in order."""
        submissions = [prepare(self._replying(job), self.settings.queue_url) for job in jobs]
        with ThreadPoolExecutor(concurrency) as pool:
            etags = list(pool.map(lambda s: self._run(core.queue(s, self.settings)), submissions))
            sending = [(s, etag) for s, etag in zip(submissions, etags, strict=True) if etag is not None]
            list(pool.map(lambda batch: self._run(core.submit_batch(batch)),
                          tens(sending)))
        return [s.job.job_id for s in submissions]

    # -- poll ------------------------------------------------------------------------------

    def status(self, job_id: str) -> JobResult:
        """The job's status document now; state NOT_FOUND for an id never submitted."""
        return self._run(core.status(job_id))

    def wait(self, job_id: str, timeout: float | None = 60.0, *,
             on_slow: Callable[[JobResult], None] | None = None, slow_after: float = 1.0) -> JobResult:
        """Wait until the job ends. JobNotFound for an unknown id, WaitTimeout after ``timeout`` seconds.
        ``on_slow`` is called with the job's status on every poll once the wait passes ``slow_after`` seconds.
        A job this client sent with its wait queue is waited for there; any other is polled in S3."""
        if self.waiter is None or not self.waiter.expects(job_id):
            return self._run(core.wait(job_id, timeout, on_slow, slow_after))
        waiter, started = self.waiter, self.clock()
        while True:
            left = self.check_every if timeout is None else min(self.check_every, started + timeout - self.clock())
            waiter.wait(job_id, max(0.0, left))
            result = self.status(job_id)
            if result.state is JobState.NOT_FOUND:
                raise JobNotFound(f"job {job_id} was never submitted")
            if result.state.final:
                waiter.forget(job_id)
                return result
            now = self.clock()
            if on_slow is not None and now - started > slow_after:
                on_slow(result)
            if timeout is not None and now >= started + timeout:
                raise WaitTimeout(f"job {job_id} still {result.state.value} after {timeout:g}s")

    def query(self, database: str, sql: str, params: JsonParams | None = None, *,
              timeout: float | None = 60.0, as_of: AsOf | datetime | None = None,
              label: str | None = None) -> JobResult:
        """Submit, wait, and raise JobFailed unless the job succeeded."""
        return core.succeeded(self.wait(self.submit(database, sql, params, as_of=as_of, label=label), timeout))

    def results(self, job_id: str, timeout: float | None = 60.0) -> Iterator[list[SqlValue]]:
        """Every row of a finished job, paging through its result parts; JobFailed if it failed."""
        result = core.succeeded(self.wait(job_id, timeout))
        for row in self.store.iter_rows(result):
            yield decode_row(row)

    def jobs(self, since: float | None = None, limit: int = 20) -> list[JobResult]:
        """The newest ``limit`` jobs submitted since ``since`` (epoch seconds; default the last hour),
        newest first, each as its status document (state, database, times, error)."""
        return self.store.recent(time.time() - 3600 if since is None else since, limit)

    def cancel(self, job_id: str) -> JobState:
        """Cancel a job that no worker has finished; returns the state it is in afterwards."""
        return self._run(core.cancel(job_id))

    # -- bulk in and out -------------------------------------------------------------------

    def load(self, database: str, table: str, source: str, *, timeout: float | None = 3600.0,
             job_timeout: float | None = None, create: bool = True, input_format: str | None = None,
             progress: Callable[[int], None] | None = None, stdin: IO[bytes] | None = None,
             on_wait: Callable[[JobResult], None] | None = None, job_id: str | None = None,
             label: str | None = None, **options: Any) -> LoadReport:
        """COPY ``source`` (a local path, ``-`` for ``stdin``, ``s3://bucket/key`` or ``s3://bucket/prefix/``)
        into ``table``: all rows or none, in one job that runs once. ``options``: the fields of
        ``shared.load.spec.LoadSpec`` (delimiter, quote, encoding, header, null_string, schema, types,
        if_exists, max_errors, columns). JobFailed naming the file, line and column when it fails."""
        started = time.monotonic()
        job_id = job_id or new_job_id()
        bulk = Bulk(self.s3, self.settings.bucket)
        sources = bulk.sources(source, job_id, progress=progress, stdin=stdin)
        spec = load_spec(table, sources, input_format=input_format, **options)
        self.submit_job(load_job(database, spec, job_id=job_id, timeout=job_timeout or self.settings.max_job_timeout,
                                 create=create, label=label))
        result = self.wait(job_id, timeout, on_slow=on_wait)
        bulk.unstage(sources)
        return report(core.succeeded(result), time.monotonic() - started)

    def load_frame(self, database: str, table: str, frame: Any, **options: Any) -> LoadReport:
        """A pandas DataFrame into ``table`` through the same COPY path (JSON Lines: numbers stay numbers,
        text stays text, NaN is NULL, times are ISO 8601)."""
        text = frame.to_json(orient="records", lines=True, date_format="iso", force_ascii=False)
        return self.load(database, table, "-", stdin=io.BytesIO(text.encode()), input_format="jsonl", **options)

    def export(self, database: str, sql: str, dest: str, params: JsonParams | None = None, *,
               fmt: str | None = None, timeout: float | None = 600.0, as_of: AsOf | datetime | None = None,
               csv: CsvStyle | None = None) -> int:
        """Run a query and write its whole result as one file (CSV with a header, JSON Lines, or Parquet with
        pyarrow; CSV and JSON Lines gzipped when ``dest`` ends in .gz) at a local path or an ``s3://`` URL,
        streamed part by part. ``csv``: its delimiter, quote, header and null string. The bytes written."""
        result = self.query(database, sql, params, timeout=timeout, as_of=as_of)
        kind = export_format(dest, fmt)
        rows = self.store.iter_rows(result)
        blocks = (parquet_blocks(result.columns, result.types, rows) if kind == "parquet"
                  else export_lines(result.columns, rows, kind, csv))
        return write_export(self.s3, dest, blocks, compress=dest.endswith(".gz") and kind != "parquet")

    # -- databases -------------------------------------------------------------------------

    def databases(self) -> list[DatabaseInfo]:
        """Every database: name, size, current version and the time of its last write."""
        return self.catalog.databases()

    def transaction(self, database: str, *, timeout: float | None = 60.0, job_timeout: float | None = None,
                    create: bool = True, on_slow: Callable[[JobResult], None] | None = None) -> Transaction:
        """An optimistic transaction (``producer/transaction.py``): ``with client.transaction(db) as tx:``
        runs ``tx.execute(...)`` inside it and commits when the block ends (rolls back if it raises);
        the commit raises SerializationFailure when another commit got there first."""
        return Transaction(self, database, timeout=timeout, job_timeout=job_timeout, create=create, on_slow=on_slow)

    def run_transaction(self, database: str, work: Callable[[Transaction], T], *, attempts: int = 5,
                        timeout: float | None = 60.0) -> T:
        """Run ``work(tx)`` in a transaction and commit it, again from the start on SerializationFailure
        (up to ``attempts`` times, with a short random pause between)."""
        for attempt, pause in core.transaction_attempts(attempts):
            self.sleep(pause)
            tx = self.transaction(database, timeout=timeout)
            try:
                outcome = work(tx)
                tx.commit()
                return outcome
            except SerializationFailure:
                tx.rollback()
                if attempt == attempts:
                    raise
            except BaseException:
                tx.rollback()
                raise
        raise AssertionError("unreachable")

    def grants(self) -> Grants:
        """The access groups and what each may read or write (``shared/grants.py``)."""
        return self.grant_store.read()

    def grant(self, group: str, *, database: str | None = None, access: str = "read",
              queue: str | None = None, sender: str | None = None) -> Grants:
        """Give ``group`` ``access`` (read or write) to the databases ``database`` matches (a glob), and/or
        make ``queue`` (a URL or ARN) one of its queues and ``sender`` (a SenderId glob) one of its senders."""
        queues = [self._queue_arn(queue)] if queue else []
        return self.grant_store.edit(lambda g: g.grant(group, database=database, access=access, queues=queues,
                                                       senders=[sender] if sender else []))

    def revoke(self, group: str, database: str | None = None) -> Grants:
        """Take ``group``'s grant on ``database`` away, or the whole group when ``database`` is None."""
        return self.grant_store.edit(lambda g: g.revoke(group, database))

    def _queue_arn(self, queue: str) -> str:
        if queue.startswith("arn:"):
            return queue
        try:
            attributes = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
        except (BotoClientError, BotoCoreError) as exc:
            raise QueueError(f"no queue at {queue}: {exc}") from exc
        return str(attributes["QueueArn"])

    def drop(self, database: str) -> int:
        """Delete a database and its whole history (DatabaseNotFound if there is none); objects deleted."""
        return self.catalog.drop(database)

    # -- time travel -----------------------------------------------------------------------

    def history(self, database: str, limit: int = 20) -> list[Manifest]:
        """The newest ``limit`` retained snapshots of ``database``, newest first."""
        return self.versions.list(database, limit)

    def restore(self, database: str, version: int) -> Manifest:
        """Make an old version current again as a new version (nothing is overwritten)."""
        return self.versions.restore(database, version)

    def pull(self, database: str, dest: str | Path, *, as_of: AsOf | datetime | None = None) -> Manifest:
        """Write the database (the current version, or the one ``as_of`` a version or a time) to ``dest`` as
        a plain SQLite file; the manifest of the version written."""
        from shared.snapshot.transfer import pull_version

        return pull_version(self.versions, database, Path(dest), as_of=as_of,
                            concurrency=self.settings.transfer_concurrency)

    def fork(self, source: str, new: str, *, as_of: AsOf | datetime | None = None) -> Manifest:
        """A new database ``new`` whose first version is ``source``'s current one (or the one ``as_of``),
        made without copying: it names the source's chunks. Writes to either never show in the other."""
        from shared.snapshot.fork import fork

        return fork(self.versions.bucket, source, new, as_of=as_of)

    def push(self, source: str | Path, database: str, *, label: str | None = None) -> Manifest:
        """Make the SQLite file ``source`` the next version of ``database`` (or version 1 of a new one): a
        commit like any other, conditional on the version it read. CommitConflict if a write got there first."""
        from shared.snapshot.transfer import push_file

        return push_file(self.versions.bucket, database, Path(source), chunk_size=self.settings.chunk_size,
                         label=label, concurrency=self.settings.transfer_concurrency)

    def oldest(self, database: str) -> Manifest:
        """The oldest snapshot still retained: how far back time travel and restore reach."""
        return self.versions.oldest(database)

    # -- I/O ---------------------------------------------------------------------------------

    def _send(self, submission: Submission) -> None:
        if submission.payload is not None:
            self.store.put_payload(submission.job.job_id, submission.payload)
        try:
            self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=submission.body,
                                  **submission.routing)
        except (BotoClientError, BotoCoreError) as exc:
            raise QueueError(f"sending job {submission.job.job_id}: {exc}") from exc

    def _send_batch(self, submissions: list[Submission]) -> list[str]:
        for submission in submissions:
            if submission.payload is not None:
                self.store.put_payload(submission.job.job_id, submission.payload)
        try:
            response = self.sqs.send_message_batch(QueueUrl=self.settings.queue_url,
                                                     Entries=core.batch_entries(submissions))
        except (BotoClientError, BotoCoreError) as exc:
            raise QueueError(f"sending {len(submissions)} jobs: {exc}") from exc
        return core.refused_ids(submissions, response)

    def _run(self, flow: core.Flow[T]) -> T:
        """Drive a core flow with boto3: answer each I/O it yields until it returns; an I/O that fails
        raises its error inside the flow, which may act on it."""
        answer: Any = None
        error: SrdbError | None = None
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(answer)
            except StopIteration as done:
                return cast(T, done.value)
            answer, error = None, None
            try:
                answer = self._do(op)
            except SrdbError as exc:
                error = exc

    def _do(self, op: core.Op) -> Any:
        if isinstance(op, core.GetStatus):
            return self.store.get(op.job_id)
        if isinstance(op, core.PutStatus):
            return self.store.put(op.result, if_match=op.if_match, if_none_match=op.if_none_match)
        if isinstance(op, core.Send):
            return self._send(op.submission)
        if isinstance(op, core.SendBatch):
            return self._send_batch(op.submissions)
        if isinstance(op, core.Sleep):
            return self.sleep(op.seconds)
        return self.clock()
