"""Status documents under ``results/``: the one place a job's state lives, read by clients, written by workers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any, overload

from botocore.exceptions import BotoCoreError, ClientError

from shared.awserrors import MISSING_CODES, PRECONDITION_CODES, error_code
from shared.errors import InternalError, StorageError
from shared.keys import payload_key, status_key
from shared.results import JobResult, JobState


class StatusStore:
    """Reads and writes status documents, result parts and claim-checked payloads in one bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def get(self, job_id: str) -> tuple[JobResult | None, str | None]:
        """The job's status document and its ETag, or (None, None) when there is none."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=status_key(job_id))
        except ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return None, None
            raise StorageError(f"reading status of {job_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading status of {job_id}: {exc}") from exc
        body = response["Body"].read()
        try:
            return JobResult.from_bytes(body), str(response["ETag"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InternalError(f"the status document {status_key(job_id)} is corrupt "
                                f"({type(exc).__name__}: {exc}); the job is not run") from exc

    def put(self, result: JobResult, *, if_match: str | None = None, if_none_match: bool = False) -> bool:
        """Write a status document; False when its condition failed (someone else wrote first)."""
        condition: dict[str, str] = {}
        if if_match:
            condition["IfMatch"] = if_match
        elif if_none_match:
            condition["IfNoneMatch"] = "*"
        try:
            self.s3.put_object(Bucket=self.bucket, Key=status_key(result.job_id), Body=result.to_bytes(),
                               ContentType="application/json", **condition)
        except ClientError as exc:
            if condition and error_code(exc) in PRECONDITION_CODES:
                return False
            raise StorageError(f"writing status of {result.job_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"writing status of {result.job_id}: {exc}") from exc
        return True

    def cancel(self, job_id: str) -> JobState:
        """Mark a QUEUED job CANCELLED (a conditional write on the QUEUED document); return the state now."""
        current, etag = self.get(job_id)
        if current is None:
            return JobState.NOT_FOUND
        if current.state is not JobState.QUEUED:
            return current.state
        current.state = JobState.CANCELLED
        if self.put(current, if_match=etag):
            return JobState.CANCELLED
        latest, _ = self.get(job_id)
        return latest.state if latest else JobState.NOT_FOUND

    def put_bytes(self, key: str, body: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"writing s3://{self.bucket}/{key}: {exc}") from exc

    @overload
    def get_bytes(self, key: str) -> bytes: ...

    @overload
    def get_bytes(self, key: str, *, missing_ok: bool) -> bytes | None: ...

    def get_bytes(self, key: str, *, missing_ok: bool = False) -> bytes | None:
        """An object's bytes; None when ``missing_ok`` and there is no such object."""
        try:
            data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return data
        except ClientError as exc:
            if missing_ok and error_code(exc) in MISSING_CODES:
                return None
            raise StorageError(f"reading s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading s3://{self.bucket}/{key}: {exc}") from exc

    def put_payload(self, job_id: str, body: str) -> str:
        key = payload_key(job_id)
        self.put_bytes(key, body.encode())
        return key

    def iter_rows(self, result: JobResult) -> Iterator[list[Any]]:
        """Every row of a result (encoded), the inline ones then each part in turn."""
        yield from result.rows
        for part in result.parts:
            yield from parse_part(self.get_bytes(part.key))


def parse_part(data: bytes) -> Iterator[list[Any]]:
    for line in gzip.decompress(data).decode().splitlines():
        if line:
            yield json.loads(line)
