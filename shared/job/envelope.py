"""The SQS message that carries a job: the job itself, compressed when it is large, or a claim
check when even that does not fit.

A job over ``COMPRESS_ABOVE`` bytes travels as ``{"job_id": ..., "deflate": "<base64>"}``, its
text deflated (zlib): a batch load's rows shrink two to three times even as base64, so a message
carries that many more rows and SQS bills fewer 64 KiB chunks per row. Smaller jobs stay plain
JSON, readable as they are in the queue.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass

from shared.errors import InvalidJob
from shared.job.keys import payload_key
from shared.names import check_job_id

# SQS takes 256 KiB per message (message attributes included); keep a margin.
MAX_INLINE_MESSAGE = 240 * 1024
COMPRESS_ABOVE = 16 * 1024
# What a compressed message may expand to: a 240 KiB deflate stream could otherwise become ~250 MB.
MAX_JOB_TEXT = 64 * 1024 * 1024
CLAIM_CHECK = "claim_check"
DIGEST = "digest"
DEFLATE = "deflate"


def compressed(job_id: str, text: str) -> str:
    """The message body that carries ``text`` deflated (fast level: the client's CPU is the load's)."""
    packed = base64.b64encode(zlib.compress(text.encode(), 1)).decode("ascii")
    return json.dumps({"job_id": job_id, DEFLATE: packed}, separators=(",", ":"))


def claim_check(job_id: str, digest: str) -> str:
    """The message body that points at a job stored under ``jobs/<job_id>/payload.json``. It carries the
    job's digest: the message proves which job it is even when the payload is gone or was replaced."""
    return json.dumps({CLAIM_CHECK: payload_key(job_id), "job_id": job_id, DIGEST: digest}, separators=(",", ":"))


@dataclass(frozen=True)
class Envelope:
    """A received message body: either the job text, or the key of the stored payload."""

    job_text: str | None
    payload_key: str | None
    job_id: str | None
    digest: str | None = None  # a claim check's: the digest of the job it stands for


def open_envelope(body: str) -> Envelope:
    """Recognise a claim check or a compressed job; anything else is taken to be the job itself."""
    if CLAIM_CHECK not in body and DEFLATE not in body:
        return Envelope(body, None, None)
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return Envelope(body, None, None)
    if not isinstance(doc, dict) or not ({CLAIM_CHECK, DEFLATE} & set(doc)):
        return Envelope(body, None, None)
    job_id = check_job_id(doc.get("job_id"))
    if DEFLATE in doc:
        if set(doc) != {DEFLATE, "job_id"} or not isinstance(doc[DEFLATE], str):
            raise InvalidJob(f"a compressed job must be exactly {{'job_id': ..., {DEFLATE!r}: '<base64>'}}")
        return Envelope(_inflate(doc[DEFLATE], job_id), None, job_id)
    digest = doc.get(DIGEST)
    if (doc[CLAIM_CHECK] != payload_key(job_id) or not set(doc) <= {CLAIM_CHECK, "job_id", DIGEST}
            or not isinstance(digest, str | None)):
        raise InvalidJob(f"claim check must be exactly {{{CLAIM_CHECK!r}: {payload_key(job_id)!r}, 'job_id': ..., "
                         f"{DIGEST!r}: ...}}")
    return Envelope(None, payload_key(job_id), job_id, digest)


def _inflate(packed: str, job_id: str) -> str:
    try:
        stream = zlib.decompressobj()
        text = stream.decompress(base64.b64decode(packed, validate=True), MAX_JOB_TEXT)
        if stream.unconsumed_tail or not stream.eof:
            raise InvalidJob(f"compressed job {job_id} is truncated, or expands beyond {MAX_JOB_TEXT} bytes")
        return text.decode()
    except (binascii.Error, zlib.error) as exc:
        raise InvalidJob(f"compressed job {job_id} is not base64 deflate data: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidJob(f"compressed job {job_id} is not UTF-8 text: {exc}") from None


def guess_job_id(body: str) -> str | None:
    """The job id of a message that failed validation, when one can be read safely."""
    try:
        doc = json.loads(body)
        return check_job_id(doc.get("job_id")) if isinstance(doc, dict) else None
    except (ValueError, RecursionError, InvalidJob):
        return None
