"""The client side of srdb: submit SQL jobs, poll their state, fetch their results."""

from producer.aio import AsyncClient
from producer.client import Client
from shared.errors import JobFailed, JobNotFound, SrdbError, WaitTimeout
from shared.job.model import Job
from shared.job.result import JobResult, JobState

__all__ = ["AsyncClient", "Client", "Job", "JobFailed", "JobNotFound", "JobResult", "JobState", "SrdbError",
           "WaitTimeout"]
