"""``make demo`` runs ``srdb demo``: the main job, start to finish, on a local stack of its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import SRDB, srdb_env

pytestmark = pytest.mark.e2e


def test_the_demo_runs_the_main_job_and_stops_what_it_started(tmp_path: Path) -> None:
    done = subprocess.run([*SRDB, "demo"], cwd=tmp_path, env=srdb_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "loaded 20,000 rows" in out
    assert out.count("SUCCEEDED:") == 4 + 5 + 2  # the writes, the concurrent reads, the time travel
    # The load's batches, and so the version numbers, depend on timing: find the section by its title.
    before = re.search(r"== read as of v\d+, before the refunds\n(.*?)\n== read now\n(.*?)\n\n", out, re.S)
    assert before is not None, out
    assert "│        0 │" in before.group(1) and "│       20 │" in before.group(2)
    assert "stopped the local stack" in out
    assert not list(tmp_path.iterdir())  # the demo works in a scratch folder of its own
