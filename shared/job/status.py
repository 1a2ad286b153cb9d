"""Status documents under ``results/``: the one place a job's state lives, read by clients, written by workers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, overload

from shared.errors import InternalError, StorageError
from shared.job.keys import RESULTS_PREFIX, job_id_of_status_key, payload_key, status_key
from shared.job.result import JobResult
from shared.names import job_id_floor
from shared.s3 import Bucket, Unchanged

JSON = "application/json"


class StatusStore:
    """Reads and writes status documents, result parts and claim-checked payloads in one bucket."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def get(self, job_id: str) -> tuple[JobResult | None, str | None]:
        """The job's status document and its ETag, or (None, None) when there is none."""
        found = self.bucket.get(status_key(job_id))
        if found is None:
            return None, None
        return parse_status(job_id, found.body), found.etag

    def get_if_changed(self, job_id: str, etag: str | None) -> tuple[JobResult | None, str | None] | None:
        """The document when its ETag is no longer ``etag`` (a 304 costs no body); None when unchanged."""
        found = self.bucket.get_if_changed(status_key(job_id), etag)
        if isinstance(found, Unchanged):
            return None
        if found is None:
            return None, None
        return parse_status(job_id, found.body), found.etag

    def put(self, result: JobResult, *, if_match: str | None = None, if_none_match: bool = False) -> str | None:
        """Write a status document; its new ETag, or None when its condition failed (someone else wrote first)."""
        key, body = status_key(result.job_id), result.to_bytes()
        if if_match:
            return self.bucket.put_if_match(key, body, if_match, content_type=JSON)
        if if_none_match:
            return self.bucket.put_if_none_match(key, body, content_type=JSON)
        return self.bucket.put(key, body, content_type=JSON)

    def recent(self, since: float, limit: int, *, concurrency: int = 16) -> list[JobResult]:
        """The status documents of jobs submitted since ``since`` (epoch seconds), newest first, at most
        ``limit``. Job ids are ULIDs that sort by time, so the listing starts at ``since``; an id of the
        client's own choosing is listed when it sorts after that point."""
        start = RESULTS_PREFIX + job_id_floor(since)
        ids = [j for j in map(job_id_of_status_key, self.bucket.list(RESULTS_PREFIX, start_after=start)) if j]
        with ThreadPoolExecutor(max(1, min(concurrency, len(ids)))) as pool:
            found = [r for r, _ in pool.map(self.get, ids) if r is not None]
        found.sort(key=lambda r: r.submitted_at or "", reverse=True)
        return found[:limit]

    def put_bytes(self, key: str, body: bytes) -> None:
        self.bucket.put(key, body)

    @overload
    def get_bytes(self, key: str) -> bytes: ...

    @overload
    def get_bytes(self, key: str, *, missing_ok: bool) -> bytes | None: ...

    def get_bytes(self, key: str, *, missing_ok: bool = False) -> bytes | None:
        """An object's bytes; None when ``missing_ok`` and there is no such object."""
        found = self.bucket.get(key)
        if found is None and not missing_ok:
            raise StorageError(f"s3://{self.bucket.name}/{key} does not exist")
        return found.body if found is not None else None

    def put_payload(self, job_id: str, body: str) -> str:
        key = payload_key(job_id)
        self.put_bytes(key, body.encode())
        return key

    def iter_rows(self, result: JobResult) -> Iterator[list[Any]]:
        """Every row of a result (encoded), the inline ones then each part in turn."""
        yield from result.rows
        for part in result.parts:
            yield from parse_part(self.get_bytes(part.key))


def parse_status(job_id: str, body: bytes) -> JobResult:
    """A status document; InternalError naming it when it is not one (a corrupt document is never run)."""
    try:
        return JobResult.from_bytes(body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InternalError(f"the status document {status_key(job_id)} is corrupt "
                            f"({type(exc).__name__}: {exc}); the job is not run") from exc


def parse_part(data: bytes) -> Iterator[list[Any]]:
    for line in gzip.decompress(data).decode().splitlines():
        if line:
            yield json.loads(line)
