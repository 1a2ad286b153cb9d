"""The client side of srdb: submit SQL jobs, poll their state, fetch their results.

The clients and the job model are imported when first named (``from producer import Client``), so a
command that needs none of them — ``srdb --help``, ``srdb local`` — does not pay for boto3, aioboto3 or
the job model at start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.errors import JobFailed, JobNotFound, SrdbError, WaitTimeout

if TYPE_CHECKING:
    from producer.aio import AsyncClient
    from producer.client import Client
    from shared.job.model import Job
    from shared.job.result import JobResult, JobState

__all__ = ["AsyncClient", "Client", "Job", "JobFailed", "JobNotFound", "JobResult", "JobState", "SrdbError",
           "WaitTimeout"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from producer.client import Client

        return Client
    if name == "AsyncClient":
        from producer.aio import AsyncClient

        return AsyncClient
    if name == "Job":
        from shared.job.model import Job

        return Job
    if name in ("JobResult", "JobState"):
        from shared.job import result

        return getattr(result, name)
    raise AttributeError(f"module 'producer' has no attribute {name!r}")
