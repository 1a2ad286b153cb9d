"""The asyncio client (aioboto3): every call of ``Client``, awaitable, sharing one connection pool.

``async with AsyncClient() as client:`` opens one S3 and one SQS client; thousands of jobs can
then be submitted and awaited with ``asyncio.gather`` over that one pool. Every decision is the
client core's (``producer.core``), as in ``Client``: only the I/O is awaited here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import aioboto3
import boto3
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from producer import core
from producer.bulk import LoadReport
from producer.client import Client
from producer.protocol import Submission, prepare
from producer.transaction import AsyncTransaction
from shared.clients import client_config, client_kwargs
from shared.errors import QueueError, SerializationFailure, SrdbError
from shared.grants import Grants
from shared.job.keys import payload_key, status_key
from shared.job.model import AsOf, Job, JsonParams
from shared.job.result import JobResult, JobState
from shared.job.status import StatusStore, parse_part, parse_status
from shared.job.values import SqlValue, decode_row
from shared.s3 import Bucket, is_missing, is_precondition_failed, storage_error
from shared.settings import Settings
from shared.snapshot.catalog import Catalog, DatabaseInfo
from shared.snapshot.history import History
from shared.snapshot.manifest import Manifest
from shared.sqs_batches import tens

T = TypeVar("T")


class AsyncClient:
    def __init__(self, settings: Settings | None = None, *, session: Any = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, **overrides: Any) -> None:
        self.settings = settings or Settings.load(**overrides)
        self.settings.require("bucket", "queue_url")
        self.session = session or aioboto3.Session(profile_name=self.settings.profile or None)
        self.sleep, self.clock = sleep, clock
        self._stack = AsyncExitStack()
        self.s3: Any = None
        self.sqs: Any = None
        self._history: History | None = None
        self._boto_bucket: Bucket | None = None
        self._client: Client | None = None

    async def __aenter__(self) -> AsyncClient:
        kwargs, config = client_kwargs(self.settings), client_config(self.settings)
        self.s3 = await self._stack.enter_async_context(self.session.client("s3", config=config, **kwargs))
        self.sqs = await self._stack.enter_async_context(self.session.client("sqs", config=config, **kwargs))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._stack.aclose()

    # -- submit ----------------------------------------------------------------------------

    async def submit(self, database: str, sql: str, params: JsonParams | None = None, *,
                     job_id: str | None = None, reply_to: str | None = None, read_only: bool = False,
                     timeout: float | None = None, as_of: AsOf | datetime | None = None, create: bool = True) -> str:
        return await self.submit_job(Job.create(database, sql, params, job_id=job_id, reply_to=reply_to,
                                                read_only=read_only, timeout=timeout, as_of=as_of, create=create))

    async def submit_statements(self, database: str, statements: list[tuple[str, JsonParams | None]], *,
                                job_id: str | None = None, reply_to: str | None = None,
                                timeout: float | None = None, create: bool = True) -> str:
        return await self.submit_job(Job.create(database, statements=statements, job_id=job_id,
                                                reply_to=reply_to, timeout=timeout, create=create))

    async def submit_many(self, database: str, sql: str, param_sets: list[JsonParams], *,
                          job_id: str | None = None, reply_to: str | None = None,
                          timeout: float | None = None, create: bool = True) -> str:
        return await self.submit_job(Job.create(database, sql, param_sets=param_sets, job_id=job_id,
                                                reply_to=reply_to, timeout=timeout, create=create))

    async def submit_job(self, job: Job) -> str:
        return await self.submit_prepared(prepare(job, self.settings.queue_url))

    async def submit_prepared(self, submission: Submission) -> str:
        return await self._run(core.submit(submission, self.settings))

    async def submit_jobs(self, jobs: list[Job], *, concurrency: int = 8) -> list[str]:
        """Submit many jobs: their QUEUED documents ``concurrency`` at a time, then their messages ten
        to a SendMessageBatch; the ids come back in order."""
        gate = asyncio.Semaphore(concurrency)
        submissions = [prepare(job, self.settings.queue_url) for job in jobs]

        async def queue(submission: Submission) -> str | None:
            async with gate:
                return await self._run(core.queue(submission, self.settings))

        etags = await asyncio.gather(*(queue(s) for s in submissions))
        sending = [(s, etag) for s, etag in zip(submissions, etags, strict=True) if etag is not None]
        await asyncio.gather(*(self._run(core.submit_batch(batch)) for batch in tens(sending)))
        return [s.job.job_id for s in submissions]

    # -- poll ------------------------------------------------------------------------------

    async def status(self, job_id: str) -> JobResult:
        return await self._run(core.status(job_id))

    async def wait(self, job_id: str, timeout: float | None = 60.0, *,
                   on_slow: Callable[[JobResult], None] | None = None, slow_after: float = 1.0) -> JobResult:
        return await self._run(core.wait(job_id, timeout, on_slow, slow_after))

    async def query(self, database: str, sql: str, params: JsonParams | None = None, *,
                    timeout: float | None = 60.0, as_of: AsOf | datetime | None = None) -> JobResult:
        return core.succeeded(await self.wait(await self.submit(database, sql, params, as_of=as_of), timeout))

    async def results(self, job_id: str, timeout: float | None = 60.0) -> AsyncIterator[list[SqlValue]]:
        result = core.succeeded(await self.wait(job_id, timeout))
        for row in result.rows:
            yield decode_row(row)
        for part in result.parts:
            try:
                response = await self.s3.get_object(Bucket=self.settings.jobs_bucket, Key=part.key)
                body = await response["Body"].read()
            except (BotoClientError, BotoCoreError) as exc:
                raise storage_error(f"reading {part.key}", exc) from exc
            for row in parse_part(body):
                yield decode_row(row)

    async def cancel(self, job_id: str) -> JobState:
        return await self._run(core.cancel(job_id))

    # -- time travel -----------------------------------------------------------------------

    async def history(self, database: str, limit: int = 20) -> list[Manifest]:
        """The newest ``limit`` retained snapshots of ``database``, newest first."""
        return await asyncio.to_thread(self._versions().list, database, limit)

    async def restore(self, database: str, version: int) -> Manifest:
        """Make an old version current again as a new version (nothing is overwritten)."""
        return await asyncio.to_thread(self._versions().restore, database, version)

    async def fork(self, source: str, new: str, *, as_of: AsOf | datetime | None = None) -> Manifest:
        """``Client.fork``, on a thread: a new database that names ``source``'s chunks."""
        from shared.snapshot.fork import fork

        return await asyncio.to_thread(partial(fork, self._bucket(), source, new, as_of=as_of))

    async def pull(self, database: str, dest: str | Path, *, as_of: AsOf | datetime | None = None) -> Manifest:
        """``Client.pull``, on a thread: the database (or an old version) as a plain SQLite file."""
        from shared.snapshot.transfer import pull_version

        return await asyncio.to_thread(partial(pull_version, self._versions(), database, Path(dest), as_of=as_of))

    async def push(self, source: str | Path, database: str, *, label: str | None = None) -> Manifest:
        """``Client.push``, on a thread: a SQLite file as the next version of ``database``."""
        from shared.snapshot.transfer import push_file

        return await asyncio.to_thread(partial(push_file, self._bucket(), database, Path(source),
                                               chunk_size=self.settings.chunk_size, label=label))

    async def oldest(self, database: str) -> Manifest:
        """The oldest snapshot still retained: how far back time travel and restore reach."""
        return await asyncio.to_thread(self._versions().oldest, database)

    async def load(self, database: str, table: str, source: str, **options: Any) -> LoadReport:
        """``Client.load``, on a thread: staging and the wait are boto3's."""
        return await asyncio.to_thread(self._sync().load, database, table, source, **options)

    async def load_frame(self, database: str, table: str, frame: Any, **options: Any) -> LoadReport:
        return await asyncio.to_thread(self._sync().load_frame, database, table, frame, **options)

    async def export(self, database: str, sql: str, dest: str, *args: Any, **options: Any) -> int:
        return await asyncio.to_thread(self._sync().export, database, sql, dest, *args, **options)

    def _sync(self) -> Client:
        if self._client is None:
            self._client = Client(self.settings)
        return self._client

    def transaction(self, database: str, *, timeout: float | None = 60.0, job_timeout: float | None = None,
                    create: bool = True) -> AsyncTransaction:
        """``Client.transaction``: ``async with client.transaction(db) as tx: await tx.execute(...)``."""
        return AsyncTransaction(self, database, timeout=timeout, job_timeout=job_timeout, create=create)

    async def run_transaction(self, database: str, work: Callable[[AsyncTransaction], Awaitable[T]], *,
                              attempts: int = 5, timeout: float | None = 60.0) -> T:
        """``Client.run_transaction``: ``await work(tx)`` and commit, again on SerializationFailure."""
        for attempt, pause in core.transaction_attempts(attempts):
            await self.sleep(pause)
            tx = self.transaction(database, timeout=timeout)
            try:
                outcome = await work(tx)
                await tx.commit()
                return outcome
            except SerializationFailure:
                await tx.rollback()
                if attempt == attempts:
                    raise
            except BaseException:
                await tx.rollback()
                raise
        raise AssertionError("unreachable")

    async def grants(self) -> Grants:
        """``Client.grants``: the access groups and what each may reach."""
        return await asyncio.to_thread(self._sync().grants)

    async def grant(self, group: str, *, database: str | None = None, access: str = "read", queue: str | None = None,
                    sender: str | None = None) -> Grants:
        """``Client.grant``."""
        return await asyncio.to_thread(partial(self._sync().grant, group, database=database, access=access,
                                               queue=queue, sender=sender))

    async def revoke(self, group: str, database: str | None = None) -> Grants:
        """``Client.revoke``."""
        return await asyncio.to_thread(self._sync().revoke, group, database)

    async def databases(self) -> list[DatabaseInfo]:
        """Every database: name, size, current version and the time of its last write."""
        return await asyncio.to_thread(Catalog(self._bucket()).databases)

    async def drop(self, database: str) -> int:
        """Delete a database and its whole history; the number of objects deleted."""
        return await asyncio.to_thread(Catalog(self._bucket()).drop, database)

    async def jobs(self, since: float | None = None, limit: int = 20) -> list[JobResult]:
        """The newest ``limit`` jobs submitted since ``since`` (epoch seconds; default the last hour)."""
        store = StatusStore(self._bucket(self.settings.jobs_bucket))
        return await asyncio.to_thread(store.recent, time.time() - 3600 if since is None else since, limit)

    def _versions(self) -> History:
        if self._history is None:
            self._history = History(self._bucket())
        return self._history

    def _bucket(self, name: str | None = None) -> Bucket:
        # History and listings are the engine's and speak boto3; their calls run on a thread, a few a command.
        if self._boto_bucket is None:
            session = boto3.session.Session(profile_name=self.settings.profile or None)
            s3 = session.client("s3", config=client_config(self.settings), **client_kwargs(self.settings))
            self._boto_bucket = Bucket(s3, self.settings.bucket)
        return self._boto_bucket if name is None else Bucket(self._boto_bucket.s3, name)

    # -- I/O ---------------------------------------------------------------------------------

    async def _run(self, flow: core.Flow[T]) -> T:
        """Drive a core flow with aioboto3: answer each I/O it yields until it returns; an I/O that fails
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
                answer = await self._do(op)
            except SrdbError as exc:
                error = exc

    async def _do(self, op: core.Op) -> Any:
        if isinstance(op, core.GetStatus):
            return await self._get(op.job_id)
        if isinstance(op, core.PutStatus):
            return await self._put(op.result, if_match=op.if_match, if_none_match=op.if_none_match)
        if isinstance(op, core.Send):
            return await self._send(op.submission)
        if isinstance(op, core.SendBatch):
            return await self._send_batch(op.submissions)
        if isinstance(op, core.Sleep):
            return await self.sleep(op.seconds)
        return self.clock()

    async def _get(self, job_id: str) -> tuple[JobResult | None, str | None]:
        try:
            response = await self.s3.get_object(Bucket=self.settings.jobs_bucket, Key=status_key(job_id))
            body = await response["Body"].read()
        except BotoClientError as exc:
            if is_missing(exc):
                return None, None
            raise storage_error(f"reading status of {job_id}", exc) from exc
        except BotoCoreError as exc:
            raise storage_error(f"reading status of {job_id}", exc) from exc
        return parse_status(job_id, body), str(response["ETag"])

    async def _put(self, result: JobResult, *, if_match: str | None = None,
                   if_none_match: bool = False) -> str | None:
        condition = {"IfMatch": if_match} if if_match else ({"IfNoneMatch": "*"} if if_none_match else {})
        try:
            response = await self.s3.put_object(Bucket=self.settings.jobs_bucket, Key=status_key(result.job_id),
                                                Body=result.to_bytes(), ContentType="application/json", **condition)
            return str(response["ETag"])
        except BotoClientError as exc:
            if condition and is_precondition_failed(exc):
                return None
            raise storage_error(f"writing status of {result.job_id}", exc) from exc
        except BotoCoreError as exc:
            raise storage_error(f"writing status of {result.job_id}", exc) from exc

    async def _send_batch(self, submissions: list[Submission]) -> list[str]:
        for submission in submissions:
            if submission.payload is not None:
                await self._put_payload(submission)
        try:
            response = await self.sqs.send_message_batch(QueueUrl=self.settings.queue_url,
                                                     Entries=core.batch_entries(submissions))
        except (BotoClientError, BotoCoreError) as exc:
            raise QueueError(f"sending {len(submissions)} jobs: {exc}") from exc
        return core.refused_ids(submissions, response)

    async def _put_payload(self, submission: Submission) -> None:
        job_id = submission.job.job_id
        assert submission.payload is not None
        try:
            await self.s3.put_object(Bucket=self.settings.jobs_bucket, Key=payload_key(job_id),
                                     Body=submission.payload.encode())
        except (BotoClientError, BotoCoreError) as exc:
            raise storage_error(f"storing the body of job {job_id}", exc) from exc

    async def _send(self, submission: Submission) -> None:
        job_id = submission.job.job_id
        if submission.payload is not None:
            await self._put_payload(submission)
        try:
            await self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=submission.body,
                                        **submission.routing)
        except (BotoClientError, BotoCoreError) as exc:
            raise QueueError(f"sending job {job_id}: {exc}") from exc
