"""The srdb command against a real ``srdb local``, as a user in two terminals would run it."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import boto3
import pytest

from shared.clients import client_kwargs
from shared.settings import Settings, read_env_file
from tests.e2e.conftest import SRDB, srdb, srdb_env

pytestmark = pytest.mark.e2e


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
    assert (status.returncode, status.stdout.strip()) == (0, "SUCCEEDED\ncli2: CREATE TABLE t (a)")
    labelled = srdb(stack, "query", "--db", "cli2", "INSERT INTO t VALUES (1)", "--label", "first row").returncode
    history = srdb(stack, "history", "--db", "cli2")
    assert labelled == 0 and "first row" in history.stdout and "CREATE TABLE t (a)" in history.stdout
    listed = json.loads(srdb(stack, "jobs", "--db", "cli2", "--format", "json").stdout)
    assert [j["sql"] for j in listed][:2] == ["first row", "CREATE TABLE t (a)"]


def test_exit_codes(stack: Path) -> None:
    failed = srdb(stack, "query", "--db", "cli3", "SELECT * FROM nowhere")
    assert failed.returncode == 1
    assert "no such table: nowhere (database cli3 has no version yet: no write has created it)" in failed.stderr
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
    loaded = srdb(stack, "load", "--db", "etl", "--table", "people", str(path))
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 12,000 rows into etl.people" in loaded.stdout and "snapshot v1" in loaded.stdout
    doc = json.loads(srdb(stack, "query", "--db", "etl", "SELECT count(*), sum(id), typeof(score) FROM people",
                          "--format", "json").stdout)
    assert doc["rows"] == [[12000, sum(range(12000)), "real"]]
    dry = srdb(stack, "load", "--db", "etl", "--table", "p2", str(path), "--dry-run")
    assert 'CREATE TABLE "p2" ("id" INTEGER, "name" TEXT, "score" REAL);' in dry.stdout
    assert "nothing was loaded" in dry.stdout
    assert "a new table: the load creates it" in dry.stdout
    appended = srdb(stack, "load", "--db", "etl", "--table", "people", str(path), "--dry-run")
    assert "the table exists: the rows are appended" in appended.stdout and 'CREATE TABLE "people"' in appended.stdout
    piped = subprocess.run([*SRDB, "load", "--db", "etl", "--table", "p3", "-", "--input-format", "csv", "--format",
                            "json"], input=gzip.compress(path.read_bytes()), cwd=stack, env=srdb_env(),
                           capture_output=True, timeout=120)
    report = json.loads(piped.stdout)
    assert (report["rows_loaded"], report["rows_rejected"], report["version"]) == (12000, 0, 2)
    device = subprocess.run([*SRDB, "load", "--db", "etl", "--table", "p4", "/dev/stdin", "--input-format", "csv"],
                            input=b"a,b\n1,x\n", cwd=stack, env=srdb_env(), capture_output=True, timeout=120)
    assert device.returncode == 0 and b"loaded 1 rows" in device.stdout, device.stderr


def test_the_dead_letter_queue_can_be_listed(stack: Path) -> None:
    listed = srdb(stack, "dlq", "list")
    assert (listed.returncode, listed.stdout.strip()) == (0, "the dead-letter queue is empty")
    assert json.loads(srdb(stack, "dlq", "redrive", "--format", "json").stdout) == {"redriven": []}


def test_no_settings_is_explained(tmp_path: Path) -> None:
    result = srdb(tmp_path, "query", "--db", "x", "SELECT 1")
    assert result.returncode == 5
    assert "srdb local" in result.stderr


def test_history_as_of_and_restore(stack: Path) -> None:
    for sql in ("CREATE TABLE t (n INTEGER)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"):
        assert srdb(stack, "query", "--db", "tt", sql).returncode == 0
    history = json.loads(srdb(stack, "history", "--db", "tt", "--format", "json").stdout)
    assert [h["version"] for h in history] == [3, 2, 1]
    assert all(len(h["job_ids"]) == 1 and h["size"] > 0 for h in history)
    table = srdb(stack, "history", "--db", "tt")
    assert "│ version │ time" in table.stdout.splitlines()[1]
    assert "retained from version 1 (" in table.stderr  # where the retention window begins
    old = srdb(stack, "query", "--db", "tt", "SELECT n FROM t", "--as-of", "2", "--format", "csv")
    assert old.stdout.splitlines() == ["n", "1"]
    at_time = srdb(stack, "query", "--db", "tt", "SELECT count(*) AS c FROM t", "--as-of", history[0]["time"],
                   "--format", "csv")
    assert at_time.stdout.splitlines() == ["c", "2"]
    refused = srdb(stack, "query", "--db", "tt", "DELETE FROM t", "--as-of", "2")
    assert refused.returncode == 1 and "ReadOnlyViolation" in refused.stderr
    restored = srdb(stack, "restore", "--db", "tt", "--to", "2", "--format", "json")
    assert json.loads(restored.stdout) == {"database": "tt", "version": 4, "restored_from": 2}
    now = srdb(stack, "query", "--db", "tt", "SELECT n FROM t", "--format", "csv")
    assert now.stdout.splitlines() == ["n", "1"]
    missing = srdb(stack, "restore", "--db", "tt", "--to", "99")
    assert missing.returncode == 2 and "VersionNotFound" in missing.stderr


def test_reaper_once_runs_a_whole_pass_with_garbage_collection(stack: Path) -> None:
    assert srdb(stack, "query", "--db", "reaped", "CREATE TABLE t (n INTEGER)").returncode == 0
    run = srdb(stack, "reaper", "--once")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["freed"] == [] and report["gc"]["versions_deleted"] == 0  # everything is inside 7 days
    assert report["gc"]["databases"] + report["gc"]["idle"] >= 1 and report["gc"]["missing"] == []


def test_grant_revoke_and_grants(stack: Path) -> None:
    queue = read_env_file(stack / ".srdb" / "local.env")["SRDB_QUEUE_URL"]
    try:
        granted = srdb(stack, "grant", "--group", "everyone", "--queue", queue, "--db", "*", "--access", "read",
                       "--format", "json")
        assert granted.returncode == 0, granted.stderr
        [group] = json.loads(granted.stdout)
        assert group["group"] == "everyone" and group["access"] == "read" and group["queues"].startswith("arn:")
        refused = srdb(stack, "query", "--db", "granted", "CREATE TABLE t (a)")
        assert refused.returncode == 1
        assert "Forbidden: access group everyone may only read database granted; this job writes" in refused.stderr
        read = srdb(stack, "query", "--db", "granted", "SELECT 42 AS answer", "--format", "csv")
        assert read.stdout.splitlines() == ["answer", "42"], read.stderr
    finally:
        assert srdb(stack, "revoke", "--group", "everyone").returncode == 0
    assert srdb(stack, "grants").stdout.strip() == "no access groups: every queue may read and write every database"
    assert srdb(stack, "query", "--db", "granted", "CREATE TABLE t (a)").returncode == 0


def test_wait_on_many_jobs_and_formats_for_scripts(stack: Path) -> None:
    assert srdb(stack, "query", "--db", "many", "CREATE TABLE t (n INTEGER UNIQUE)").returncode == 0
    ids = [json.loads(srdb(stack, "submit", "--db", "many", "INSERT INTO t VALUES (?)", "--param", str(n % 3),
                           "--format", "json").stdout)["job_id"] for n in range(4)]
    waited = subprocess.run([*SRDB, "wait", "-", "--format", "csv"], input="\n".join(ids), cwd=stack,
                            env=srdb_env(), capture_output=True, text=True, timeout=120)
    assert waited.returncode == 1  # one of them broke the UNIQUE constraint
    lines = waited.stdout.splitlines()
    assert lines[0] == "job_id,state,rowcount,error" and len(lines) == 5
    assert sorted(line.split(",")[1] for line in lines[1:]) == ["FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    cancelled = json.loads(srdb(stack, "cancel", ids[0], "--format", "json").stdout)
    assert cancelled["state"] in ("SUCCEEDED", "FAILED")


def test_undecodable_sql_and_corrupt_documents_are_one_line_errors(stack: Path) -> None:
    # Bytes that are not UTF-8 reach Python as lone surrogates: refused before anything is sent.
    bad = subprocess.run([*SRDB, "query", "--db", "cli5", b"SELECT '\xff'"], cwd=stack, env=srdb_env(),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "InvalidJob" in bad.stderr and "not valid Unicode" in bad.stderr
    assert "Traceback" not in bad.stderr
    job_id = srdb(stack, "submit", "--db", "cli5", "SELECT 1").stdout.strip()
    settings = Settings.load(cwd=stack)
    s3 = boto3.client("s3", **client_kwargs(settings))
    s3.put_object(Bucket=settings.bucket, Key=f"results/{job_id}.json", Body=b"<html>not json")
    status = srdb(stack, "status", job_id)
    assert status.returncode != 0 and "corrupt" in status.stderr and "Traceback" not in status.stderr


def test_local_refuses_numbers_out_of_range(tmp_path: Path) -> None:
    for args in (["--workers", "-1"], ["--port", "70000"], ["--lock-ttl", "-5"], ["--visibility-timeout", "0"]):
        refused = srdb(tmp_path, "local", *args)
        assert refused.returncode == 2 and "out of range" in refused.stderr, (args, refused.stderr)


def test_local_refuses_a_lock_ttl_longer_than_the_visibility_timeout(tmp_path: Path) -> None:
    refused = srdb(tmp_path, "local", "--visibility-timeout", "8", "--lock-ttl", "60")
    assert refused.returncode != 0 and "longer than --visibility-timeout" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
