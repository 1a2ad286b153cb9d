"""Names that reach S3 keys and security-group names: database names and job ids, validated here before any use."""

from __future__ import annotations

import os
import re
import time

from shared.errors import InvalidJob

DATABASE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# The job queue's kinds, the default first (srdb local --queue; the deployed stack's is FIFO): see
# shared/job/routing.py.
QUEUE_KINDS = ("fifo", "standard")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def check_database(name: object) -> str:
    if not isinstance(name, str) or not DATABASE_RE.fullmatch(name):
        raise InvalidJob(f"database name {name!r:.80} must match {DATABASE_RE.pattern}")
    return name


def check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise InvalidJob(f"job id {job_id!r:.80} must match {JOB_ID_RE.pattern}")
    return job_id


def sql_identifier(name: str) -> str:
    """A table or column name as SQL quotes it: in double quotes, each double quote doubled."""
    return '"' + name.replace('"', '""') + '"'


def new_job_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, so ids sort by submission time."""
    return job_id_floor(time.time() if now is None else now) + _crockford(int.from_bytes(os.urandom(10), "big"), 16)


def job_id_floor(when: float) -> str:
    """The first ten characters of every ULID made at or after ``when`` (epoch seconds) sort at or after this."""
    return _crockford(int(when * 1000), 10)


def _crockford(value: int, length: int) -> str:
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(length - 1, -1, -1))


def queue_name(url_or_arn: str) -> str:
    """An SQS queue's name from its URL (``…/<account>/<name>``) or its ARN (``arn:aws:sqs:…:<name>``):
    what a message's ``eventSourceARN`` and a client's queue URL have in common."""
    text = url_or_arn.rstrip("/")
    return text.rsplit(":", 1)[-1] if text.startswith("arn:") else text.rsplit("/", 1)[-1]
