"""The client side of srdb: submit SQL jobs, poll their state, fetch their results.

The clients are imported when first named (``from producer import Client``), so a command that needs
neither — ``srdb --help``, ``srdb local`` — does not pay for boto3 and aioboto3 at start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.errors import JobFailed, JobNotFound, SrdbError, WaitTimeout
from shared.job.model import Job
from shared.job.result import JobResult, JobState

if TYPE_CHECKING:
    from producer.aio import AsyncClient
    from producer.client import Client

__all__ = ["AsyncClient", "Client", "Job", "JobFailed", "JobNotFound", "JobResult", "JobState", "SrdbError",
           "WaitTimeout"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from producer.client import Client

        return Client
    if name == "AsyncClient":
        from producer.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'producer' has no attribute {name!r}")
