"""A worker killed at each crash point leaves a correct end state once the reaper and SQS
redelivery have done their work: every job ends exactly once in effect, the lock is freed,
and the database passes ``PRAGMA integrity_check``."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from producer.client import Client
from producer.local.poller import Poller
from producer.local.processes import WORKER_COMMAND, worker_env
from producer.local.stack import create_resources
from reaper.reaper import Reaper
from shared.clients import client_kwargs
from shared.job.result import JobState
from shared.lock.security_group import lock_groups
from shared.settings import Settings
from worker.batch import CRASH_POINTS, Worker
from worker.handler import run_batch

_names = itertools.count(1)
CRASHED = 70


def run_until_settled(settings: Settings, clients: Any, worker: Worker, client: Client, job_ids: list[str],
                      deadline: float = 60.0) -> None:
    """Feed the queue to a healthy worker until every job is final; redeliveries come back after the
    visibility timeout, so this polls rather than sleeping a fixed time."""
    poller = Poller(clients.sqs, settings.queue_url, lambda e, c: run_batch(worker, e), region=settings.region,
                    wait_seconds=1)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if all(client.status(j).state.final for j in job_ids):
            return
        poller.poll_once()
    raise AssertionError(f"jobs not final after {deadline}s: {[client.status(j).state for j in job_ids]}")


@pytest.fixture
def stack(moto_endpoint: str, tmp_path: Path) -> Any:
    n = next(_names)
    settings = create_resources(moto_endpoint, visibility_timeout=1, lock_ttl=30, prefix=f"crash{n}",
                                bucket=f"srdb-crash-{n}", max_receive_count=20)
    settings = settings.replace(cache_dir=str(tmp_path / "healthy"), lock_wait=5)
    kwargs = client_kwargs(settings)

    class Stack:
        s3, sqs, ec2 = (boto3.client(name, **kwargs) for name in ("s3", "sqs", "ec2"))

    Stack.settings = settings  # type: ignore[attr-defined]
    return Stack


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.slow
def test_a_worker_killed_at_each_crash_point(stack: Any, point: str, tmp_path: Path) -> None:
    settings: Settings = stack.settings
    client = Client(settings, s3=stack.s3, sqs=stack.sqs)
    healthy = Worker(settings, stack.s3, stack.sqs, stack.ec2)
    setup = client.submit_statements("crash", [("CREATE TABLE n (v INTEGER)", None),
                                               ("INSERT INTO n VALUES (0)", None)])
    run_until_settled(settings, stack, healthy, client, [setup])

    jobs = [client.submit("crash", "UPDATE n SET v = v + 1") for _ in range(3)]
    read = client.submit("crash", "SELECT v FROM n")
    doomed = subprocess.run(WORKER_COMMAND, env=worker_env(settings, tmp_path / "doomed", SRDB_CRASH_AT=point),
                            timeout=120, capture_output=True, text=True)
    assert doomed.returncode == CRASHED, doomed.stdout + doomed.stderr

    # The reaper frees the dead worker's lock once its TTL has passed (the reaper's clock says so).
    Reaper.for_settings(settings, ec2=stack.ec2, s3=stack.s3, now=lambda: time.time() + 31).reap_locks()
    run_until_settled(settings, stack, healthy, client, [*jobs, read])

    assert {client.status(j).state for j in jobs} == {JobState.SUCCEEDED}
    assert client.status(read).state is JobState.SUCCEEDED
    check = client.submit("crash", "SELECT v FROM n")
    integrity = client.submit("crash", "PRAGMA integrity_check")
    run_until_settled(settings, stack, healthy, client, [check, integrity])
    assert client.status(check).values() == [[3]]  # three increments, each once
    assert client.status(integrity).values() == [["ok"]]
    healthy.close()  # it kept the lock for a next batch
    assert lock_groups(stack.ec2, settings.vpc_id) == []
    # srdb's own table is out of every job's reach: read the committed snapshot itself.
    local = healthy.store.sync("crash").path
    conn = sqlite3.connect(local)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM _srdb_jobs").fetchone() == (4,)  # four write jobs recorded
