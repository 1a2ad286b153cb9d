"""The SQS message that carries a job: the job itself, or a claim check when it is too large."""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.errors import InvalidJob
from shared.keys import check_job_id, payload_key

# SQS takes 256 KiB per message (message attributes included); keep a margin.
MAX_INLINE_MESSAGE = 240 * 1024
CLAIM_CHECK = "claim_check"


def claim_check(job_id: str) -> str:
    """The message body that points at a job stored under ``jobs/<job_id>/payload.json``."""
    return json.dumps({CLAIM_CHECK: payload_key(job_id), "job_id": job_id}, separators=(",", ":"))


@dataclass(frozen=True)
class Envelope:
    """A received message body: either the job text, or the key of the stored payload."""

    job_text: str | None
    payload_key: str | None
    job_id: str | None


def open_envelope(body: str) -> Envelope:
    """Recognise a claim check; anything else is taken to be the job itself."""
    if CLAIM_CHECK not in body:
        return Envelope(body, None, None)
    try:
        doc = json.loads(body)
    except ValueError:
        return Envelope(body, None, None)
    if not isinstance(doc, dict) or CLAIM_CHECK not in doc:
        return Envelope(body, None, None)
    job_id = check_job_id(doc.get("job_id"))
    if doc[CLAIM_CHECK] != payload_key(job_id) or set(doc) != {CLAIM_CHECK, "job_id"}:
        raise InvalidJob(f"claim check must be exactly {{{CLAIM_CHECK!r}: {payload_key(job_id)!r}, 'job_id': ...}}")
    return Envelope(None, payload_key(job_id), job_id)


def guess_job_id(body: str) -> str | None:
    """The job id of a message that failed validation, when one can be read safely."""
    try:
        doc = json.loads(body)
        return check_job_id(doc.get("job_id")) if isinstance(doc, dict) else None
    except (ValueError, RecursionError, InvalidJob):
        return None
