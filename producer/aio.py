"""The asyncio client (aioboto3): the same calls as ``Client``, awaitable, sharing one connection pool.

``async with AsyncClient() as client:`` opens one S3 and one SQS client; thousands of jobs can
then be submitted and awaited with ``asyncio.gather`` over that one pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import aioboto3
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from producer.protocol import Submission, check_deployable, poll_delays, prepare, resend_needed
from shared.awserrors import MISSING_CODES, PRECONDITION_CODES, error_code
from shared.clients import client_config, client_kwargs
from shared.errors import JobFailed, JobNotFound, StorageError, WaitTimeout
from shared.job.keys import payload_key, status_key
from shared.job.model import AsOf, Job, JsonParams
from shared.job.result import JobResult, JobState
from shared.job.status import parse_part
from shared.job.values import SqlValue, decode_row
from shared.settings import Settings


class AsyncClient:
    def __init__(self, settings: Settings | None = None, *, session: Any = None, **overrides: Any) -> None:
        self.settings = settings or Settings.load(**overrides)
        self.settings.require("bucket", "queue_url")
        self.session = session or aioboto3.Session()
        self._stack = AsyncExitStack()
        self.s3: Any = None
        self.sqs: Any = None

    async def __aenter__(self) -> AsyncClient:
        kwargs, config = client_kwargs(self.settings), client_config(self.settings)
        self.s3 = await self._stack.enter_async_context(self.session.client("s3", config=config, **kwargs))
        self.sqs = await self._stack.enter_async_context(self.session.client("sqs", config=config, **kwargs))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._stack.aclose()

    async def submit(self, database: str, sql: str, params: JsonParams | None = None, *,
                     job_id: str | None = None, reply_to: str | None = None, read_only: bool = False,
                     timeout: float | None = None, as_of: AsOf | datetime | None = None) -> str:
        return await self.submit_job(Job.create(database, sql, params, job_id=job_id, reply_to=reply_to,
                                                read_only=read_only, timeout=timeout, as_of=as_of))

    async def submit_statements(self, database: str, statements: list[tuple[str, JsonParams | None]], *,
                                job_id: str | None = None, reply_to: str | None = None) -> str:
        return await self.submit_job(Job.create(database, statements=statements, job_id=job_id,
                                                reply_to=reply_to))

    async def submit_many(self, database: str, sql: str, param_sets: list[JsonParams], *,
                          job_id: str | None = None, reply_to: str | None = None) -> str:
        return await self.submit_job(Job.create(database, sql, param_sets=param_sets, job_id=job_id,
                                                reply_to=reply_to))

    async def submit_job(self, job: Job) -> str:
        submission = prepare(job)
        check_deployable(job, self.settings)
        if not await self._put(submission.queued, if_none_match=True):
            existing, _ = await self._get(job.job_id)
            if not resend_needed(submission, existing):
                return job.job_id
        await self._send(submission)
        return job.job_id

    async def status(self, job_id: str) -> JobResult:
        result, _ = await self._get(job_id)
        return result or JobResult.not_found(job_id)

    async def wait(self, job_id: str, timeout: float | None = 60.0) -> JobResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        for delay in poll_delays():
            result = await self.status(job_id)
            if result.state is JobState.NOT_FOUND:
                raise JobNotFound(f"job {job_id} was never submitted")
            if result.state.final:
                return result
            if deadline is not None and time.monotonic() + delay > deadline:
                raise WaitTimeout(f"job {job_id} still {result.state.value} after {timeout:g}s")
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def query(self, database: str, sql: str, params: JsonParams | None = None, *,
                    timeout: float | None = 60.0, as_of: AsOf | datetime | None = None) -> JobResult:
        result = await self.wait(await self.submit(database, sql, params, as_of=as_of), timeout)
        if result.state is JobState.FAILED:
            raise JobFailed(result.job_id, result.error or {})
        return result

    async def results(self, job_id: str, timeout: float | None = 60.0) -> AsyncIterator[list[SqlValue]]:
        result = await self.wait(job_id, timeout)
        if result.state is not JobState.SUCCEEDED:
            raise JobFailed(job_id, result.error or {"type": result.state.value, "message": "job did not succeed"})
        for row in result.rows:
            yield decode_row(row)
        for part in result.parts:
            response = await self.s3.get_object(Bucket=self.settings.bucket, Key=part.key)
            for row in parse_part(await response["Body"].read()):
                yield decode_row(row)

    async def cancel(self, job_id: str) -> JobState:
        current, etag = await self._get(job_id)
        if current is None:
            return JobState.NOT_FOUND
        if current.state is not JobState.QUEUED:
            return current.state
        current.state = JobState.CANCELLED
        if await self._put(current, if_match=etag):
            return JobState.CANCELLED
        return (await self.status(job_id)).state

    async def _get(self, job_id: str) -> tuple[JobResult | None, str | None]:
        try:
            response = await self.s3.get_object(Bucket=self.settings.bucket, Key=status_key(job_id))
            return JobResult.from_bytes(await response["Body"].read()), str(response["ETag"])
        except BotoClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return None, None
            raise StorageError(f"reading status of {job_id}: {exc}") from exc

    async def _put(self, result: JobResult, *, if_match: str | None = None, if_none_match: bool = False) -> bool:
        condition = {"IfMatch": if_match} if if_match else ({"IfNoneMatch": "*"} if if_none_match else {})
        try:
            await self.s3.put_object(Bucket=self.settings.bucket, Key=status_key(result.job_id),
                                     Body=result.to_bytes(), ContentType="application/json", **condition)
            return True
        except BotoClientError as exc:
            if condition and error_code(exc) in PRECONDITION_CODES:
                return False
            raise StorageError(f"writing status of {result.job_id}: {exc}") from exc

    async def _send(self, submission: Submission) -> None:
        try:
            if submission.payload is not None:
                await self.s3.put_object(Bucket=self.settings.bucket, Key=payload_key(submission.job.job_id),
                                         Body=submission.payload.encode())
            await self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=submission.body)
        except (BotoClientError, BotoCoreError) as exc:
            raise StorageError(f"sending job {submission.job.job_id}: {exc}") from exc
