"""The job half of the S3 layout: status documents, result parts, claim-checked payloads and staged loads."""

from __future__ import annotations

from shared.names import check_job_id

RESULTS_PREFIX = "results/"
PAYLOADS_PREFIX = "jobs/"
STAGING_PREFIX = "staging/"  # files a client staged for a load (producer/bulk.py)


def status_key(job_id: str) -> str:
    return f"results/{check_job_id(job_id)}.json"


def result_part_key(job_id: str, index: int) -> str:
    return f"results/{check_job_id(job_id)}/part-{index:05d}.jsonl.gz"


def payload_key(job_id: str) -> str:
    return f"{PAYLOADS_PREFIX}{check_job_id(job_id)}/payload.json"


def job_id_of_status_key(key: str) -> str | None:
    """The job id a key under ``results/`` is the status document of; None for a result part."""
    name = key.removeprefix(RESULTS_PREFIX)
    if "/" in name or not name.endswith(".json"):
        return None
    return name.removesuffix(".json")
