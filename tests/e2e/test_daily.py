"""The CLI and the shell as daily tools: sqlite3's script habits, SQL from files and stdin, databases as
objects, the AWS CLI's options, JSON that jq can always read, and a local stack that keeps its data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import until
from tests.e2e.conftest import SRDB, srdb, srdb_env

pytestmark = pytest.mark.e2e


def shell(stack: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``srdb shell`` with ``script`` on stdin, as ``srdb shell --db d < script.sql`` runs it."""
    return subprocess.run([*SRDB, "shell", *args], input=script, cwd=stack, env=srdb_env(), capture_output=True,
                          text=True, timeout=120)


def test_a_piped_script_runs_without_prompts_and_stops_at_the_first_error(stack: Path) -> None:
    done = shell(stack, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT);\n"
                        "INSERT INTO t (name) VALUES ('a'), (NULL);\n"
                        ".mode json\nSELECT * FROM t ORDER BY id;\n"
                        ".mode line\n.nullvalue -\nSELECT * FROM t WHERE id = 2;\n"
                        "SELECT * FROM missing;\nSELECT 'never';\n", "--db", "script")
    assert done.returncode == 1
    assert "srdb:" not in done.stdout and "srdb shell" not in done.stdout  # no banner, no prompt
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == [{"id": 1, "name": "a"}, {"id": 2, "name": None}]
    assert lines[1:] == ["  id = 2", "name = -"]
    assert "near line 8" in done.stderr and "no such table: missing" in done.stderr
    assert "never" not in done.stdout
    relaxed = shell(stack, ".bail off\nSELECT * FROM missing;\nSELECT 'reached';\n", "--db", "script")
    assert relaxed.returncode == 1 and "reached" in relaxed.stdout


def test_shell_c_and_f_and_the_sqlite3_dot_commands(stack: Path, tmp_path: Path) -> None:
    ok = srdb(stack, "shell", "--db", "dots", "-c", "CREATE TABLE t (a, b); CREATE INDEX t_a ON t (a);")
    assert ok.returncode == 0, ok.stderr
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b\n1,x\n2,it's\n")
    script = tmp_path / "s.sql"
    out = tmp_path / "out.txt"
    script.write_text(f".import --csv {csv} t\n.headers off\n.mode csv\n.once {out}\nSELECT a, b FROM t ORDER BY a;\n"
                      ".indexes t\n.databases\n.dump t\n")
    done = srdb(stack, "shell", "--db", "dots", "-f", str(script))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "1,x\n2,it's\n"  # .once: that result only
    assert "t_a" in done.stdout and "* dots" in done.stdout
    # An existing table's declared types win: untyped columns keep the text, as sqlite3's .import does.
    assert "INSERT INTO \"t\" VALUES('2','it''s');" in done.stdout and "CREATE INDEX t_a ON t (a);" in done.stdout
    dump = tmp_path / "dump.sql"
    dump.write_text(srdb(stack, "shell", "--db", "dots", "-c", ".dump").stdout)
    assert srdb(stack, "query", "--db", "dots2", "-f", str(dump)).returncode == 0  # a dump runs as one job
    copied = srdb(stack, "query", "--db", "dots2", "SELECT a, b FROM t ORDER BY a", "--format", "json")
    assert json.loads(copied.stdout)["rows"] == [["1", "x"], ["2", "it's"]]
    bogus = srdb(stack, "shell", "--db", "dots", "-c", ".as_of bogus")
    assert bogus.returncode == 1 and "not a version number" in bogus.stderr


def test_sql_from_a_file_or_stdin_runs_as_one_transaction(stack: Path, tmp_path: Path) -> None:
    setup = tmp_path / "setup.sql"
    setup.write_text("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER);\n"
                     "INSERT INTO acct VALUES (1, 100), (2, 50);\n")
    assert srdb(stack, "query", "--db", "files", "-f", str(setup)).returncode == 0
    broken = "UPDATE acct SET balance = balance - 10 WHERE id = 1;\nINSERT INTO acct VALUES (1, 0);\n"
    failed = subprocess.run([*SRDB, "query", "--db", "files", "-"], input=broken, cwd=stack, env=srdb_env(),
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "UNIQUE" in failed.stderr
    total = srdb(stack, "query", "--db", "files", "SELECT sum(balance) FROM acct", "--format", "json")
    assert json.loads(total.stdout)["rows"] == [[150]]  # the UPDATE before the failure was not applied
    many = subprocess.run([*SRDB, "submit", "--db", "files", "--file", "-", "--per", "line", "--format", "json"],
                          input="SELECT 1\nSELECT 2\n\nSELECT 3\n", cwd=stack, env=srdb_env(), capture_output=True,
                          text=True, timeout=60)
    ids = [r["job_id"] for r in json.loads(many.stdout)]
    assert len(ids) == 3
    script = tmp_path / "many.sql"
    script.write_text("SELECT 1;\nSELECT 2; SELECT 3;\n-- a comment alone is no job\n")
    per_statement = srdb(stack, "submit", "--db", "files", "--file", str(script)).stdout.split()
    assert len(per_statement) == 3  # an id a line
    piped = subprocess.run([*SRDB, "wait", "-", "--no-progress", "--format", "json"], input="\n".join(per_statement),
                           cwd=stack, env=srdb_env(), capture_output=True, text=True, timeout=60)
    assert [r["state"] for r in json.loads(piped.stdout)] == ["SUCCEEDED"] * 3
    waited = srdb(stack, "wait", *ids, "--format", "json", "--no-progress")
    assert {r["state"] for r in json.loads(waited.stdout)} == {"SUCCEEDED"}


def test_databases_are_listed_created_on_purpose_and_dropped(stack: Path) -> None:
    refused = srdb(stack, "query", "--db", "typo", "--no-create", "CREATE TABLE t (a)")
    assert refused.returncode == 1 and "DatabaseNotFound" in refused.stderr
    made = srdb(stack, "query", "--db", "shop2", "CREATE TABLE t (a)")
    assert "created database shop2" in made.stderr
    again = srdb(stack, "query", "--db", "shop2", "INSERT INTO t VALUES (1)")
    assert "created database" not in again.stderr
    listed = {d["database"]: d for d in json.loads(srdb(stack, "databases", "--format", "json").stdout)}
    assert listed["shop2"]["version"] == 2 and listed["shop2"]["size"] > 0 and "typo" not in listed
    unsure = srdb(stack, "drop", "--db", "shop2")  # no terminal to ask, and no --yes
    assert unsure.returncode == 2 and "--yes" in unsure.stderr
    dropped = srdb(stack, "drop", "--db", "shop2", "--yes", "--format", "json")
    assert json.loads(dropped.stdout)["dropped"] is True
    assert "shop2" not in srdb(stack, "databases").stdout
    gone = srdb(stack, "query", "--db", "shop2", "SELECT * FROM t")
    assert gone.returncode == 1 and "no such table: t" in gone.stderr
    never = srdb(stack, "drop", "--db", "never-made", "--yes")
    assert never.returncode == 3 and "DatabaseNotFound" in never.stderr  # not found, as the exit codes say


def test_config_jobs_and_json_errors(stack: Path) -> None:
    config = {r["setting"]: r for r in json.loads(srdb(stack, "config", "--format", "json").stdout)}
    assert config["bucket"]["source"].startswith(".srdb/local.env")
    assert config["job_timeout"]["source"] in ("default",) or "SRDB_JOB_TIMEOUT" in config["job_timeout"]["source"]
    assert config["aws_secret_access_key"]["value"] == "****"
    given = {r["setting"]: r for r in json.loads(srdb(stack, "config", "--region", "eu-west-1",
                                                       "--format", "json").stdout)}
    assert given["region"] == {**given["region"], "value": "eu-west-1", "source": "argument"}
    job = srdb(stack, "submit", "--db", "jobs", "SELECT 1").stdout.strip()
    until(lambda: json.loads(srdb(stack, "status", job, "--format", "json").stdout)["state"] == "SUCCEEDED")
    recent = json.loads(srdb(stack, "jobs", "--db", "jobs", "--format", "json").stdout)
    assert recent[0]["job_id"] == job and recent[0]["state"] == "SUCCEEDED" and recent[0]["run_ms"] is not None
    srdb(stack, "query", "--db", "jobs", "SELECT 2")
    one = srdb(stack, "jobs", "--db", "jobs", "--limit", "1", "--format", "json")
    assert len(json.loads(one.stdout)) == 1 and "more jobs in that time" in one.stderr
    assert "more jobs" not in srdb(stack, "jobs", "--db", "jobs", "--limit", "50").stderr
    missing = srdb(stack, "result", "no-such-job", "--format", "json")
    assert missing.returncode == 3 and json.loads(missing.stdout)["error"]["type"] == "JobNotFound"
    unreachable = srdb(stack, "status", "x", "--endpoint-url", "http://127.0.0.1:9", "--format", "json")
    assert unreachable.returncode == 5 and "127.0.0.1:9" in json.loads(unreachable.stdout)["error"]["message"]


def test_srdb_local_keeps_its_data_refuses_a_second_one_and_a_busy_port(tmp_path: Path) -> None:
    first = _start_local(tmp_path)
    second = srdb(tmp_path, "local", "--workers", "0")
    assert second.returncode == 2 and "already runs" in second.stderr
    assert srdb(tmp_path, "query", "--db", "kept", "CREATE TABLE t (a); INSERT INTO t VALUES (7);").returncode == 0
    _stop_local(first)
    assert "kept" in next((tmp_path / ".srdb" / "data" / "s3" / "db").iterdir()).name
    log = "".join(p.read_text() for p in (tmp_path / ".srdb").glob("worker-*.log"))
    assert '"state":"SUCCEEDED"' in log.replace(" ", "") and '"database":"kept"' in log.replace(" ", "")
    again = _start_local(tmp_path)
    try:
        endpoint = first.ready.split()[4]  # type: ignore[attr-defined]
        assert again.ready.split()[4] == endpoint  # type: ignore[attr-defined]  # the port it had: nothing stale
        read = srdb(tmp_path, "query", "--db", "kept", "SELECT a FROM t", "--format", "json")
        assert json.loads(read.stdout)["rows"] == [[7]]
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            taken = srdb(tmp_path / ".srdb", "local", "--workers", "0", "--port", str(port))
            assert taken.returncode == 2 and f"port {port}" in taken.stderr
    finally:
        _stop_local(again)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    gone = _start_local(fresh, "--ephemeral")
    _stop_local(gone)
    assert not (fresh / ".srdb" / "data").exists()


def _start_local(folder: Path, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([*SRDB, "local", "--workers", "1", *args], cwd=folder, env=srdb_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    ready = process.stdout.readline()
    assert "ready" in ready
    process.ready = ready  # type: ignore[attr-defined]
    return process


def _stop_local(process: subprocess.Popen[str]) -> None:
    process.terminate()
    assert process.wait(timeout=30) == 0


def test_migrations_from_the_command_line(stack: Path) -> None:
    made = srdb(stack, "migrate", "create", "create users")
    assert made.returncode == 0 and "migrations/0001_create_users.sql" in made.stdout
    path = stack / "migrations" / "0001_create_users.sql"
    path.write_text(path.read_text() + "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);\n")
    pending = json.loads(srdb(stack, "migrate", "list", "--db", "mig", "--format", "json").stdout)
    assert pending == [{"migration": "0001_create_users", "state": "pending", "applied_at": None}]
    applied = srdb(stack, "migrate", "apply", "--db", "mig")
    assert applied.returncode == 0 and "applied 0001_create_users" in applied.stdout
    assert "up to date" in srdb(stack, "migrate", "apply", "--db", "mig").stdout
    listed = json.loads(srdb(stack, "migrate", "list", "--db", "mig", "--format", "json").stdout)
    assert [m["state"] for m in listed] == ["applied"] and listed[0]["applied_at"]


def test_the_settings_are_found_from_any_folder_below_the_stack(stack: Path) -> None:
    deeper = stack / "src" / "reports"
    deeper.mkdir(parents=True)
    ran = srdb(deeper, "query", "--db", "found", "SELECT 40 + 2 AS n", "--format", "csv")
    assert ran.returncode == 0 and ran.stdout.splitlines() == ["n", "42"], ran.stderr
    config = {r["setting"]: r for r in json.loads(srdb(deeper, "config", "--format", "json").stdout)}
    assert config["bucket"]["source"].startswith(str(stack / ".srdb" / "local.env"))


def test_a_script_prints_as_sqlite3_does(stack: Path) -> None:
    """sqlite3's defaults in a pipe: list mode, | between values, no headers, NULL as nothing, a value's own
    newlines; every -c in order; .headers off in a boxed mode; .show."""
    piped = shell(stack, "SELECT 1, 2;\nSELECT NULL, 'a\nb';\n", "--db", "likesqlite")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "1|2\n|a\nb\n"
    several = srdb(stack, "shell", "--db", "likesqlite", "-c", "SELECT 'first';", "-c", "SELECT 'second';")
    assert several.stdout == "first\nsecond\n"
    boxed = shell(stack, ".mode box\n.headers off\nSELECT 4 AS y;\n.show\n", "--db", "likesqlite")
    assert boxed.stdout.startswith("┌───┐\n│ 4 │\n└───┘\n"), boxed.stdout
    assert "     headers: off" in boxed.stdout and "        mode: box" in boxed.stdout


def test_srdb_env_points_any_aws_sdk_at_the_stack(stack: Path) -> None:
    assert srdb(stack, "query", "--db", "envdb", "CREATE TABLE t (a)").returncode == 0
    exports = srdb(stack, "env").stdout.splitlines()
    env = dict(line.removeprefix("export ").split("=", 1) for line in exports)
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:") and env["SRDB_BUCKET"]
    # A plain boto3 with nothing but those variables lists the stack's bucket (so does `aws s3 ls`).
    listing = subprocess.run([sys.executable, "-c", "import boto3, os; print([o['Key'] for o in boto3.client('s3')"
                              ".list_objects_v2(Bucket=os.environ['SRDB_BUCKET'], Prefix='db/envdb/')['Contents']])"],
                             env={"PATH": os.environ["PATH"], "HOME": str(stack), **env}, capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0 and "db/envdb/" in listing.stdout, listing.stderr


def test_srdb_database_names_the_database_a_command_leaves_out(stack: Path) -> None:
    env = {**srdb_env(), "SRDB_DATABASE": "defaulted"}  # a preference: .srdb/local.env still names the stack
    ran = subprocess.run([*SRDB, "query", "SELECT 6 * 7 AS n", "--format", "csv"], cwd=stack, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout.splitlines() == ["n", "42"], ran.stderr
    missing = srdb(stack, "query", "SELECT 1")
    assert missing.returncode == 2 and "--db NAME, or set SRDB_DATABASE" in missing.stderr
    refused = subprocess.run([*SRDB, "drop", "--yes"], cwd=stack, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "--db" in refused.stderr  # drop never takes a default


def test_a_saved_profile_follows_the_user_into_any_folder(stack: Path, tmp_path: Path) -> None:
    env = {**srdb_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)

    def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SRDB, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)

    lost = run(elsewhere, "query", "--db", "prof", "SELECT 1")
    assert lost.returncode == 5 and "NotConfigured" in lost.stderr
    saved = run(stack, "config", "save", "dev")
    assert saved.returncode == 0 and "saved profile dev" in saved.stdout, saved.stderr
    assert run(elsewhere, "--profile", "dev", "query", "--db", "prof", "SELECT 1").returncode == 0
    assert run(elsewhere, "config", "use", "dev").returncode == 0
    assert run(elsewhere, "config", "set", "database", "prof").returncode == 0
    made = run(elsewhere, "query", "CREATE TABLE t (a)")  # no --db: the profile's database
    assert made.returncode == 0 and "created database prof" in made.stderr, made.stderr
    shown = json.loads(run(elsewhere, "config", "--format", "json").stdout)
    assert {r["setting"]: r["source"] for r in shown}["database"] == "profile dev (SRDB_DATABASE)"
    assert run(elsewhere, "config", "list").stdout.split() == ["*", "dev"]
    assert run(stack, "query", "SELECT count(*) FROM t", "--format", "csv").stdout.split() == ["count(*)", "0"]
    wrong = run(elsewhere, "config", "set", "colour", "blue")
    assert wrong.returncode == 2 and "colour is not a setting" in wrong.stderr
    assert run(elsewhere, "config", "unset", "database").returncode == 0
    assert run(elsewhere, "query", "SELECT 1").returncode == 2  # no database named any more


def test_pull_then_push_moves_a_database_through_a_plain_sqlite_file(stack: Path, tmp_path: Path) -> None:
    assert srdb(stack, "query", "--db", "moved", "CREATE TABLE t (a INTEGER)").returncode == 0
    assert srdb(stack, "query", "--db", "moved", "INSERT INTO t VALUES (1), (2)").returncode == 0
    pulled = srdb(stack, "pull", "moved", str(tmp_path / "moved.sqlite"))
    assert pulled.returncode == 0 and "wrote version 2 of moved" in pulled.stdout, pulled.stderr
    local = subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                            "c.execute('INSERT INTO t VALUES (3)'); c.commit()", str(tmp_path / "moved.sqlite")])
    assert local.returncode == 0
    pushed = srdb(stack, "push", str(tmp_path / "moved.sqlite"), "copied", "--format", "json")
    assert pushed.returncode == 0 and json.loads(pushed.stdout)["version"] == 1, pushed.stderr
    summed = srdb(stack, "query", "--db", "copied", "SELECT sum(a) FROM t", "--format", "csv")
    assert summed.stdout.split() == ["sum(a)", "6"]
    missing = srdb(stack, "pull", "nowhere", str(tmp_path / "x.sqlite"))
    assert missing.returncode == 3 and "DatabaseNotFound" in missing.stderr
    refused = srdb(stack, "push", str(stack / ".srdb" / "local.env"), "copied")
    assert refused.returncode == 2 and "is not a SQLite database" in refused.stderr


def test_fork_makes_a_database_to_experiment_on(stack: Path) -> None:
    assert srdb(stack, "query", "--db", "prod", "CREATE TABLE t (a INTEGER)").returncode == 0
    assert srdb(stack, "query", "--db", "prod", "INSERT INTO t VALUES (1)").returncode == 0
    forked = srdb(stack, "fork", "prod", "prod-try", "--as-of", "1")
    assert forked.returncode == 0 and "a fork of prod at version 1" in forked.stdout, forked.stderr
    assert srdb(stack, "query", "--db", "prod-try", "INSERT INTO t VALUES (10)").returncode == 0
    count = srdb(stack, "query", "--db", "prod", "SELECT count(*) FROM t", "--format", "csv").stdout.split()
    assert count == ["count(*)", "1"]  # the source never sees the fork's writes
    listed = {d["database"]: d for d in json.loads(srdb(stack, "databases", "--format", "json").stdout)}
    assert listed["prod-try"]["forked_from"] == "prod@1" and listed["prod"]["forked_from"] is None
    again = srdb(stack, "fork", "prod", "prod-try")
    assert again.returncode == 2 and "exists already" in again.stderr
