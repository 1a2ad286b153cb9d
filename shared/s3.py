"""The one S3 boundary: typed calls on one bucket, and the only place S3's botocore errors become
srdb's (``StorageError`` with the botocore error as its cause).

The engine and the status store see a :class:`Bucket`, never a client: what they may ask of S3
is the list below — get, get-if-changed, put, put-if-match / put-if-none-match, list, copy, delete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.awserrors import error_code
from shared.errors import StorageError

# 412 is a failed If-Match / If-None-Match; 409 ConditionalRequestConflict is a concurrent
# conditional write to the same key. Both mean "someone else wrote first".
PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
NOT_MODIFIED_CODES = {"304", "NotModified"}


@dataclass(frozen=True)
class Blob:
    """An object's bytes and the ETag they had."""

    body: bytes
    etag: str


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object: its key, size and when it was last written (epoch seconds, S3's clock)."""

    key: str
    size: int
    modified: float


class Unchanged:
    """What :meth:`Bucket.get_if_changed` returns when the object still has the ETag the caller holds."""


UNCHANGED = Unchanged()


def is_missing(exc: ClientError) -> bool:
    return error_code(exc) in MISSING_CODES


def is_precondition_failed(exc: ClientError) -> bool:
    return error_code(exc) in PRECONDITION_CODES


def storage_error(doing: str, exc: Exception) -> StorageError:
    """A botocore error as srdb's, with the botocore error as its cause (for the async client too)."""
    error = StorageError(f"{doing}: {exc}")
    error.__cause__ = exc
    return error


class Bucket:
    """One bucket, through one boto3 S3 client."""

    def __init__(self, s3: Any, name: str) -> None:
        self.s3, self.name = s3, name
        self.directory = name.endswith("--x-s3")  # an S3 Express One Zone directory bucket
        self.requests = 0

    def get(self, key: str) -> Blob | None:
        """The object, or None when there is no such key."""
        found = self._get(key, {})
        return None if isinstance(found, Unchanged) else found

    def get_if_changed(self, key: str, etag: str | None) -> Blob | Unchanged | None:
        """The object unless it still has ``etag`` (UNCHANGED), or None when there is no such key."""
        return self._get(key, {"IfNoneMatch": etag} if etag else {})

    def put(self, key: str, body: bytes, *, content_type: str | None = None) -> str:
        """Write the object whatever is there; returns its new ETag."""
        etag = self._put(key, body, content_type, {})
        assert etag is not None
        return etag

    def put_if_match(self, key: str, body: bytes, etag: str, *, content_type: str | None = None) -> str | None:
        """Write only over the version ``etag`` names; None when the object changed or vanished meanwhile."""
        return self._put(key, body, content_type, {"IfMatch": etag})

    def put_if_none_match(self, key: str, body: bytes, *, content_type: str | None = None) -> str | None:
        """Write only where there is no object; None when there is one."""
        return self._put(key, body, content_type, {"IfNoneMatch": "*"})

    def list(self, prefix: str, *, limit: int | None = None, start_after: str | None = None) -> Iterator[str]:
        """The keys under ``prefix`` (after ``start_after``), in S3's (lexicographic) order; at most ``limit``."""
        return (item.key for item in self.objects(prefix, limit=limit, start_after=start_after))

    def objects(self, prefix: str, *, limit: int | None = None,
                start_after: str | None = None) -> Iterator[ObjectInfo]:
        """The objects under ``prefix`` with their size and time, as :meth:`list` gives their keys."""
        if self.directory and (start_after or limit is not None):
            # A directory bucket (S3 Express One Zone) lists in no order and has no StartAfter: read the
            # whole prefix and order it here.
            found = sorted((o for o in self.objects(prefix) if not start_after or o.key > start_after),
                           key=lambda o: o.key)
            yield from found[:limit]
            return
        request: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
        if start_after:
            request["StartAfter"] = start_after
        if limit is not None:
            request["PaginationConfig"] = {"MaxItems": limit, "PageSize": min(limit, 1000)}
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(**request):
                self.requests += 1
                for item in page.get("Contents", []):
                    yield ObjectInfo(str(item["Key"]), int(item.get("Size", 0)), item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"listing s3://{self.name}/{prefix}: {exc}") from exc

    def copy(self, source: str, target: str) -> bool:
        """Copy an object of this bucket to another key (a server-side copy); False when ``source`` is gone."""
        self.requests += 1
        try:
            self.s3.copy_object(Bucket=self.name, Key=target, CopySource={"Bucket": self.name, "Key": source})
            return True
        except ClientError as exc:
            if is_missing(exc):
                return False
            raise StorageError(f"copying s3://{self.name}/{source} to {target}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"copying s3://{self.name}/{source} to {target}: {exc}") from exc

    def folders(self, prefix: str) -> Iterator[str]:
        """The names one level below ``prefix`` (S3's common prefixes for the delimiter ``/``)."""
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix,
                                                                           Delimiter="/"):
                self.requests += 1
                for item in page.get("CommonPrefixes", []):
                    yield str(item["Prefix"])[len(prefix):].rstrip("/")
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"listing s3://{self.name}/{prefix}: {exc}") from exc

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete up to 1,000 objects in one request; StorageError naming any S3 kept."""
        if not keys:
            return
        try:
            response = self.s3.delete_objects(Bucket=self.name, Delete={"Objects": [{"Key": k} for k in keys],
                                                                          "Quiet": True})
            self.requests += 1
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"deleting {len(keys)} objects from s3://{self.name}: {exc}") from exc
        errors = response.get("Errors", [])
        if errors:
            raise StorageError(f"S3 did not delete {len(errors)} object(s), e.g. {errors[0].get('Key')}: "
                               f"{errors[0].get('Message')}")

    def delete(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.name, Key=key)
            self.requests += 1
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"deleting s3://{self.name}/{key}: {exc}") from exc

    def _get(self, key: str, condition: dict[str, str]) -> Blob | Unchanged | None:
        self.requests += 1
        try:
            response = self.s3.get_object(Bucket=self.name, Key=key, **condition)
            return Blob(response["Body"].read(), str(response["ETag"]))
        except ClientError as exc:
            code = error_code(exc)
            if code in MISSING_CODES:
                return None
            if condition and code in NOT_MODIFIED_CODES:
                return UNCHANGED
            raise StorageError(f"reading s3://{self.name}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading s3://{self.name}/{key}: {exc}") from exc

    def _put(self, key: str, body: bytes, content_type: str | None, condition: dict[str, str]) -> str | None:
        extra = {"ContentType": content_type} if content_type else {}
        self.requests += 1
        try:
            response = self.s3.put_object(Bucket=self.name, Key=key, Body=body, **extra, **condition)
            return str(response["ETag"])
        except ClientError as exc:
            if condition and error_code(exc) in PRECONDITION_CODES:
                return None
            raise StorageError(f"writing s3://{self.name}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"writing s3://{self.name}/{key}: {exc}") from exc
