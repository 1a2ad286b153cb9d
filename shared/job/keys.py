"""The job half of the S3 layout: status documents, result parts and claim-checked payloads."""

from __future__ import annotations

from shared.names import check_job_id


def status_key(job_id: str) -> str:
    return f"results/{check_job_id(job_id)}.json"


def result_part_key(job_id: str, index: int) -> str:
    return f"results/{check_job_id(job_id)}/part-{index:05d}.jsonl.gz"


def payload_key(job_id: str) -> str:
    return f"jobs/{check_job_id(job_id)}/payload.json"
