"""The srdb command against a real ``srdb local``, as a user in two terminals would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
SRDB = [sys.executable, "-m", "producer.cli"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("local")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDB_")}
    process = subprocess.Popen([*SRDB, "local", "--workers", "2", "--visibility-timeout", "20"], cwd=folder,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    ready = process.stdout.readline()
    assert "srdb local ready at http://127.0.0.1:" in ready, ready
    assert (folder / ".srdb" / "local.env").is_file()
    yield folder
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "srdb local stopped" in process.stdout.read()
    assert not (folder / ".srdb" / "local.env").exists()


def srdb(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDB_")}
    return subprocess.run([*SRDB, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_query_prints_a_table_and_json_keeps_types(stack: Path) -> None:
    made = srdb(stack, "query", "--db", "cli", "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, b BLOB)")
    assert made.returncode == 0, made.stderr
    insert = srdb(stack, "query", "--db", "cli", "INSERT INTO t (id, name, b) VALUES (?, ?, ?)",
                  "--param", "9007199254740993", "--param", "héllo", "--param", '{"$blob": "AAE="}')
    assert insert.returncode == 0, insert.stderr
    table = srdb(stack, "query", "--db", "cli", "SELECT id, name FROM t")
    assert table.returncode == 0
    assert "│ 9007199254740993 │ héllo │" in table.stdout
    assert "SUCCEEDED: 1 row" in table.stdout
    doc = json.loads(srdb(stack, "query", "--db", "cli", "SELECT * FROM t", "--format", "json").stdout)
    assert doc["state"] == "SUCCEEDED" and doc["error"] is None
    assert doc["columns"] == ["id", "name", "b"]
    assert doc["rows"] == [[9007199254740993, "héllo", {"$blob": "AAE="}]]
    assert doc["rowcount"] == 1
    csv = srdb(stack, "query", "--db", "cli", "SELECT id, name FROM t", "--format", "csv")
    assert csv.stdout.splitlines() == ["id,name", "9007199254740993,héllo"]


def test_submit_status_result(stack: Path) -> None:
    submitted = srdb(stack, "submit", "--db", "cli2", "CREATE TABLE t (a)")
    job_id = submitted.stdout.strip()
    assert submitted.returncode == 0 and len(job_id) == 26
    waited = srdb(stack, "result", job_id, "--wait", "--timeout", "30", "--format", "json")
    assert json.loads(waited.stdout)["state"] == "SUCCEEDED"
    status = srdb(stack, "status", job_id)
    assert (status.returncode, status.stdout.strip()) == (0, "SUCCEEDED")


def test_exit_codes(stack: Path) -> None:
    failed = srdb(stack, "query", "--db", "cli3", "SELECT * FROM nowhere")
    assert failed.returncode == 1
    assert "DatabaseNotFound" in failed.stderr
    bad_sql = srdb(stack, "query", "--db", "cli", "SELEC 1")
    assert bad_sql.returncode == 1 and "SqlError" in bad_sql.stderr and "syntax error" in bad_sql.stderr
    assert srdb(stack, "query").returncode == 2
    assert srdb(stack, "query", "--db", "Bad Name", "SELECT 1").returncode == 2
    missing = srdb(stack, "status", "01NEVERSUBMITTED0000000000")
    assert (missing.returncode, missing.stdout.strip()) == (3, "NOT_FOUND")
    assert srdb(stack, "result", "01NEVERSUBMITTED0000000000").returncode == 3


def test_wait_timeout_exit_code(stack: Path) -> None:
    # A job on a database whose lock someone else holds stays QUEUED past a short wait.
    slow = srdb(stack, "query", "--db", "cli4", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                "SELECT count(*) FROM c", "--timeout", "0.01")
    assert slow.returncode == 4
    assert "still QUEUED" in slow.stderr


def test_load_a_csv(stack: Path, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,name,score\n" + "".join(f"{i},person {i},{i * 0.5}\n" for i in range(12000)))
    loaded = srdb(stack, "load", "--db", "etl", "--table", "people", str(path), "--rows-per-job", "1000")
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 12000 rows into etl.people in 12 jobs" in loaded.stdout
    doc = json.loads(srdb(stack, "query", "--db", "etl", "SELECT count(*), sum(id), typeof(score) FROM people",
                          "--format", "json").stdout)
    assert doc["rows"] == [[12000, sum(range(12000)), "real"]]


def test_the_dead_letter_queue_can_be_listed(stack: Path) -> None:
    listed = srdb(stack, "dlq", "list")
    assert (listed.returncode, listed.stdout.strip()) == (0, "the dead-letter queue is empty")
    assert json.loads(srdb(stack, "dlq", "redrive", "--format", "json").stdout) == {"redriven": []}


def test_no_settings_is_explained(tmp_path: Path) -> None:
    result = srdb(tmp_path, "query", "--db", "x", "SELECT 1")
    assert result.returncode == 5
    assert "srdb local" in result.stderr
