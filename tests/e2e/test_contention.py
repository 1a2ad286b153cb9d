"""Several ``srdb worker`` processes and several clients at once: N increments leave exactly N."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from producer.client import Client
from producer.local.stack import LocalStack
from shared.job.result import JobState

pytestmark = pytest.mark.e2e
INCREMENTS = 500
CLIENTS = 5


def test_concurrent_increments_are_neither_lost_nor_doubled(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, workers=3, visibility_timeout=30, lock_ttl=60, prefix="contention")
    settings = stack.start()
    try:
        setup = Client(settings)
        setup.query("counter", "CREATE TABLE n (v INTEGER)", timeout=60)
        setup.query("counter", "INSERT INTO n VALUES (0)", timeout=60)

        def one_client(index: int) -> list[str]:
            client = Client(settings)
            return [client.submit("counter", "UPDATE n SET v = v + 1") for _ in range(INCREMENTS // CLIENTS)]

        with ThreadPoolExecutor(CLIENTS) as pool:
            job_ids = [j for batch in pool.map(one_client, range(CLIENTS)) for j in batch]
            results = list(pool.map(lambda j: setup.wait(j, 300), job_ids))
        assert len(job_ids) == INCREMENTS
        assert {r.state for r in results} == {JobState.SUCCEEDED}
        assert setup.query("counter", "SELECT v FROM n").values() == [[INCREMENTS]]
        versions = {r.version for r in results}
        assert len(versions) < INCREMENTS  # writes were batched: one commit carried several jobs
        assert setup.query("counter", "PRAGMA integrity_check").values() == [["ok"]]
        assert all(p.poll() is None for p in stack.processes)  # no worker died
    finally:
        stack.stop()
