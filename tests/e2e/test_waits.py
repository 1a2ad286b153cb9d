"""Waits that speak and stop: RUNNING and the job's own budget from the command line, Ctrl-C that
cancels, an unreachable stack that fails fast and says why, and no worker left behind by a killed
``srdb local``."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from producer.local.stack import free_port
from tests.conftest import until
from tests.e2e.conftest import SRDB, srdb, srdb_env

pytestmark = pytest.mark.e2e
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def test_job_timeout_is_the_jobs_own_budget(stack: Path) -> None:
    result = srdb(stack, "query", "--db", "waits", "--job-timeout", "1", ENDLESS)
    assert result.returncode == 1
    assert "Timeout" in result.stderr and "budget of 1s" in result.stderr
    over = srdb(stack, "query", "--db", "waits", "--job-timeout", "500", "SELECT 1")
    assert over.returncode == 2 and "SRDB_MAX_JOB_TIMEOUT" in over.stderr  # refused before it is sent


def test_status_shows_running_and_ctrl_c_cancels_the_query(stack: Path) -> None:
    process = subprocess.Popen([*SRDB, "query", "--db", "waits", "--job-timeout", "15", ENDLESS], cwd=stack,
                               env=srdb_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = until(lambda: _running_job(stack))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"job {job_id}: cancelled" in err
    status = json.loads(srdb(stack, "status", job_id, "--format", "json").stdout)
    assert status["state"] == "CANCELLED"


def _running_job(stack: Path) -> str | None:
    """The id of a RUNNING job, found through the status documents in the local bucket."""
    import boto3

    from shared.clients import client_kwargs
    from shared.settings import Settings

    settings = Settings.load(environ=srdb_env(), cwd=stack)
    s3 = boto3.client("s3", **client_kwargs(settings))
    for item in s3.list_objects_v2(Bucket=settings.bucket, Prefix="results/").get("Contents", []):
        job_id = item["Key"].removeprefix("results/").removesuffix(".json")
        if "/" in job_id:
            continue
        shown = srdb(stack, "status", job_id, "--format", "json")
        if shown.returncode == 0 and json.loads(shown.stdout)["state"] == "RUNNING":
            assert json.loads(shown.stdout)["started_at"]
            return job_id
    return None


def test_an_unreachable_stack_fails_fast_and_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / ".srdb").mkdir()
    port = free_port()  # nothing listens there
    (tmp_path / ".srdb" / "local.env").write_text(
        f"SRDB_ENDPOINT_URL=http://127.0.0.1:{port}\nSRDB_BUCKET=b\nSRDB_QUEUE_URL=http://127.0.0.1:{port}/1/q\n"
        "SRDB_AWS_ACCESS_KEY_ID=testing\nSRDB_AWS_SECRET_ACCESS_KEY=testing\n")
    (tmp_path / ".srdb" / "local.pid").write_text("999999999\n")  # no such process
    result = srdb(tmp_path, "status", "some-job")
    assert result.returncode == 5
    assert f"127.0.0.1:{port}" in result.stderr  # names the endpoint
    assert "is not running" in result.stderr and "srdb local" in result.stderr


def test_a_killed_srdb_local_leaves_no_worker_behind(tmp_path: Path) -> None:
    env = srdb_env()
    process = subprocess.Popen([*SRDB, "local", "--workers", "2"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    assert "ready" in process.stdout.readline()
    workers = _children(process.pid)
    assert len(workers) == 2
    process.kill()
    process.wait()
    until(lambda: not any(_alive(pid) for pid in workers))


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's reaping is left
