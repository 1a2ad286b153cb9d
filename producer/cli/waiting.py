"""Waiting on many jobs at once: their statuses are polled together, with a progress bar."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from producer.client import Client
from producer.protocol import poll_delays
from shared.job.result import JobResult, JobState


def wait_all(client: Client, job_ids: list[str], *, timeout: float | None = 600.0, progress: bool = True,
             concurrency: int = 16) -> list[JobResult]:
    """Each job's result, in the order given. A job still running at the deadline comes back in its
    current state (not final); an unknown id comes back NOT_FOUND."""
    latest: dict[str, JobResult] = {}
    pending = list(dict.fromkeys(job_ids))
    deadline = None if timeout is None else client.clock() + timeout
    bar = tqdm(total=len(pending), unit="jobs", desc="wait", disable=not progress, leave=False)
    with ThreadPoolExecutor(max(1, min(concurrency, len(pending)))) as pool:
        for delay in poll_delays(cap=2.0):
            for result in pool.map(client.status, pending):
                latest[result.job_id] = result
            still = [j for j in pending if not latest[j].state.final and latest[j].state is not JobState.NOT_FOUND]
            bar.update(len(pending) - len(still))
            pending = still
            if not pending or (deadline is not None and client.clock() + delay > deadline):
                break
            client.sleep(delay)
    bar.close()
    return [latest[j] for j in job_ids]
