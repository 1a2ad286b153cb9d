"""AsyncClient: hundreds of jobs submitted and awaited together over one pool of connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producer.aio import AsyncClient
from shared.clients import client_config
from shared.job.result import JobState
from shared.settings import Settings

JOBS = 240  # two and a half times what the two pools hold together: a connection a job would show


def open_connections(port: int) -> int:
    """This machine's established IPv4 connections to ``port`` now, from /proc/net/tcp."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        remote, state = line.split()[2:4]
        count += state == "01" and int(remote.split(":")[1], 16) == port
    return count


@pytest.mark.slow
async def test_hundreds_of_jobs_share_one_pool(settings: Settings, aws: Any, drain: Callable[..., int]) -> None:
    port = int(settings.endpoint_url.rsplit(":", 1)[1])
    # moto's server closes every connection after one response, so connections cannot be counted
    # as they are reused; what shows a shared pool is that no more are ever open at once than it holds.
    peak = 0
    done, draining = asyncio.Event(), asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            if not draining.is_set():
                peak = max(peak, open_connections(port))
            await asyncio.sleep(0.005)

    async with AsyncClient(settings) as client:
        create = await client.submit("many", "CREATE TABLE t (n INTEGER)")
        await asyncio.to_thread(drain)
        assert (await client.wait(create, 5)).state is JobState.SUCCEEDED
        # Connections open before the jobs are not theirs (the worker's own pool may keep one).
        before = open_connections(port)
        watcher = asyncio.create_task(watch())
        ids = await asyncio.gather(*(client.submit("many", "SELECT ? * 2", [n]) for n in range(JOBS)))
        submitted_peak = peak
        draining.set()
        await asyncio.to_thread(drain, max_batches=10_000)
        draining.clear()
        peak = 0  # the worker's own connections are not the client's
        results = await asyncio.gather(*(client.wait(j, 60) for j in ids))
    done.set()
    await watcher
    assert [r.rows for r in results] == [[[2 * n]] for n in range(JOBS)]
    pool = client_config(settings).max_pool_connections
    # One S3 and one SQS client, each with its pool: never a connection per job.
    assert 0 < max(submitted_peak, peak) - before <= 2 * pool, \
        f"{submitted_peak}, {peak} connections at once ({before} before) for {JOBS} jobs"
