"""The soak, bounded: mixed load while workers are killed with SIGKILL; nothing lost, nothing doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.e2e


def test_random_worker_kills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    report = run_soak(12, workers=3, clients=2, kill_every=2.5, folder=tmp_path,
                      prefix="soaktest")
    assert report.kills >= 3
    assert report.submitted > 50
    assert (report.lost, report.duplicated, report.unfinished, report.failed) == (0, 0, 0, 0)
    writes = report.submitted // 2
    assert report.counter == writes  # every write's increment, exactly once
