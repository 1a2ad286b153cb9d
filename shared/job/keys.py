"""The job half of the S3 layout: status documents, result parts, claim-checked payloads and staged loads."""

from __future__ import annotations

from shared.names import check_job_id

RESULTS_PREFIX = "results/"
PAYLOADS_PREFIX = "jobs/"
STAGING_PREFIX = "staging/"  # files a client staged for a load (producer/bulk.py)


def status_key(job_id: str) -> str:
    return f"{RESULTS_PREFIX}{check_job_id(job_id)}.json"


def result_part_key(job_id: str, index: int) -> str:
    return f"{RESULTS_PREFIX}{check_job_id(job_id)}/part-{index:05d}.jsonl.gz"


def rejects_key(job_id: str) -> str:
    """Where a load's rejected rows go when the job names no file of its own (``--max-errors``)."""
    return f"{RESULTS_PREFIX}{check_job_id(job_id)}/rejects.csv"


def staging_prefix(job_id: str) -> str:
    """The folder a client stages a load's files in: that load may read it, no other."""
    return f"{STAGING_PREFIX}{check_job_id(job_id)}/"


def payload_key(job_id: str) -> str:
    return f"{PAYLOADS_PREFIX}{check_job_id(job_id)}/payload.json"


def job_id_of_status_key(key: str) -> str | None:
    """The job id a key under ``results/`` is the status document of; None for a result part."""
    name = key.removeprefix(RESULTS_PREFIX)
    if "/" in name or not name.endswith(".json"):
        return None
    return name.removesuffix(".json")
