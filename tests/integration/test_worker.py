"""The worker end to end on real boto3 clients and a moto server: SQS batches in, status documents out."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producer.client import Client
from producer.local.processes import spawn_worker, stop_all
from producer.protocol import prepare
from shared.errors import InvalidJob
from shared.job.envelope import MAX_JOB_TEXT, compressed
from shared.job.model import Job
from shared.job.result import JobResult, JobState
from shared.lock.security_group import SecurityGroupLock
from shared.s3 import Bucket
from shared.settings import Settings
from shared.snapshot.history import History
from worker.batch import Record, Worker
from worker.handler import run_batch

from ..conftest import queued, sqs_event


def send_raw(aws: Any, settings: Settings, body: str) -> None:
    aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=body)


def queue_depth(aws: Any, url: str) -> int:
    attrs = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_writes_and_reads_round_trip(client: Client, drain: Callable[..., int]) -> None:
    create = client.submit("shop", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, img BLOB)")
    insert = client.submit_many("shop", "INSERT INTO items (name, price, img) VALUES (?, ?, ?)",
                                [["apple", 1.5, {"$blob": "AAE="}], ["pear", None, None], ["fig ✓", 3, None]])
    drain()
    assert client.wait(create, 5).state is JobState.SUCCEEDED
    loaded = client.wait(insert, 5)
    assert (loaded.state, loaded.rowcount, loaded.lastrowid) == (JobState.SUCCEEDED, 3, 3)
    read = client.submit("shop", "SELECT id, name, price, img FROM items WHERE id >= ? ORDER BY id", [1])
    drain()
    result = client.wait(read, 5)
    assert result.state is JobState.SUCCEEDED
    assert result.columns == ["id", "name", "price", "img"]
    assert result.values() == [[1, "apple", 1.5, b"\x00\x01"], [2, "pear", None, None], [3, "fig ✓", 3.0, None]]
    assert result.rowcount == 3
    assert result.version == loaded.version
    assert set(result.timings) == {"run_ms", "queued_ms", "total_ms"}


def test_bad_input_fails_alone_and_is_never_retried(client: Client, settings: Settings, aws: Any,
                                                    drain: Callable[..., int]) -> None:
    setup = client.submit("db", "CREATE TABLE t (a INTEGER)")
    drain()
    assert client.wait(setup, 5).state is JobState.SUCCEEDED

    def job(job_id: str, **fields: Any) -> str:
        doc = {"v": 1, "job_id": job_id, "database": "db", "sql": "SELECT 1", **fields}
        body = json.dumps({k: v for k, v in doc.items() if v is not None})
        # A valid job is submitted as a client does; one that is not reaches the queue only as a raw message.
        with contextlib.suppress(InvalidJob):
            queued(aws.s3, settings.bucket, Job.from_text(body))
        return body

    cases = {
        "missing": (json.dumps({"v": 1, "job_id": "missing", "database": "db"}), "InvalidJob"),
        "version": (job("version", v=99), "InvalidJob"),
        "dbname": (job("dbname", database="../../etc"), "InvalidJob"),
        "unknown-field": (job("unknown-field", color="red"), "InvalidJob"),
        "parse": (job("parse", sql="SELEC FROM"), "SqlError"),
        "fails": (job("fails", sql="INSERT INTO nowhere VALUES (1)"), "SqlError"),
        "ro-write": (job("ro-write", sql="DELETE FROM t", read_only=True), "ReadOnlyViolation"),
        "attach": (job("attach", sql="ATTACH DATABASE '/tmp/x.db' AS x"), "Forbidden"),
        "ext": (job("ext", sql="SELECT load_extension('/tmp/evil')"), "Forbidden"),
        "vacuum": (job("vacuum", sql="VACUUM INTO '/tmp/stolen.db'"), "Forbidden"),
        "params": (job("params", sql="INSERT INTO t VALUES (?)", params=[1, 2]), "SqlError"),
        "multi": (job("multi", sql="SELECT 1; DROP TABLE t"), "InvalidJob"),
        "schema": (job("schema", sql="PRAGMA writable_schema = ON"), "Forbidden"),
        "types": (job("types", sql=["SELECT 1"]), "InvalidJob"),
        "param-type": (job("param-type", params="abc"), "InvalidJob"),
        "huge-id-db": (job("huge-id-db", database="d" * 5000), "InvalidJob"),
        "huge-sql": (job("huge-sql", sql="SELECT '" + "x" * 200_000 + "'", read_only=True), None),
        "nested": (job("nested", params=[{"$blob": "AAE=", "x": 1}]), "InvalidJob"),
        "begin": (job("begin", sql="COMMIT"), "Forbidden"),
        "temp-file": (job("temp-file", sql="PRAGMA temp_store_directory = '/tmp'"), "Forbidden"),
    }
    good_write = queued(aws.s3, settings.bucket, Job.create("db", "INSERT INTO t VALUES (?)", [7], job_id="good-write"))
    good_read = queued(aws.s3, settings.bucket, Job.create("db", "SELECT count(*) FROM t", job_id="good-read"))
    for body, _ in cases.values():
        send_raw(aws, settings, body)
    send_raw(aws, settings, good_write)
    send_raw(aws, settings, "{this is not json")
    drain()
    send_raw(aws, settings, job("../../../etc/passwd"))
    for job_id, (_, kind) in cases.items():
        if kind is None:
            assert client.status(job_id).state is JobState.SUCCEEDED, job_id
            continue
        result = client.status(job_id)
        assert result.state is JobState.FAILED, job_id
        assert result.error and result.error["type"] == kind, (job_id, result.error)
        assert result.error["retryable"] is False
    assert client.wait("good-write", 5).state is JobState.SUCCEEDED
    send_raw(aws, settings, good_read)
    drain()
    assert client.wait("good-read", 5).values() == [[1]]
    assert queue_depth(aws, settings.queue_url) == 0
    assert queue_depth(aws, settings.dlq_url) == 0


def test_runaway_and_oversized_jobs_fail_alone(settings: Settings, aws: Any, drain: Callable[..., int]) -> None:
    tight = settings.replace(max_result_bytes=50_000, job_timeout=0.5)
    worker = Worker(tight, aws.s3, aws.sqs, aws.ec2)
    client = Client(tight, s3=aws.s3, sqs=aws.sqs)
    client.submit("rw", "CREATE TABLE t (a)")
    drain(worker)
    runaway = client.submit("rw", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                                  "SELECT count(*) FROM c")
    huge = client.submit("rw", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
                               "SELECT x, 'padding padding' FROM c")
    slow_write = client.submit("rw", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                                     "INSERT INTO t SELECT x FROM c")
    fine = client.submit("rw", "SELECT 42")
    fine_write = client.submit("rw", "INSERT INTO t VALUES (1)")
    drain(worker)
    assert client.wait(runaway, 5).error["type"] == "Timeout"
    assert client.wait(huge, 5).error["type"] == "ResultTooLarge"
    assert client.wait(slow_write, 5).error["type"] == "Timeout"
    assert client.wait(fine, 5).values() == [[42]]
    assert client.wait(fine_write, 5).state is JobState.SUCCEEDED


def test_a_job_past_sqlites_memory_cap_fails_alone_and_the_worker_lives_on(settings: Settings, aws: Any,
                                                                          tmp_path: Path) -> None:
    """The cap is SQLite's, for the whole process (it can only ever be lowered), so this runs in a worker
    process of its own: 60 MB built in SQLite's heap against a 32 MiB cap."""
    client = Client(settings, s3=aws.s3, sqs=aws.sqs)
    hog = ("SELECT length(group_concat(randomblob(1000))) FROM "
           "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60000) SELECT x FROM c)")
    jobs = {"read": client.submit("mem", hog), "write": client.submit("mem", f"CREATE TABLE big AS {hog}"),
            "fine": client.submit("mem", "SELECT 42"), "fine_write": client.submit("mem", "CREATE TABLE ok (a)")}
    worker = spawn_worker(settings, tmp_path / "cache", output=subprocess.DEVNULL,
                          SRDB_SQLITE_HEAP_LIMIT=str(32 * 1024 * 1024))
    try:
        results = {name: client.wait(job, 60) for name, job in jobs.items()}
        for name in ("read", "write"):
            assert results[name].error is not None and results[name].error["type"] == "MemoryLimit", results[name]
            assert "SRDB_SQLITE_HEAP_LIMIT" in results[name].error["message"]
        assert results["fine"].values() == [[42]] and results["fine_write"].state is JobState.SUCCEEDED
        after = client.wait(client.submit("mem", "SELECT count(*) FROM sqlite_master WHERE name = 'big'"), 60)
        assert after.values() == [[0]] and worker.poll() is None  # nothing of the write; the worker lives on
    finally:
        stop_all([worker])


def test_a_message_without_a_job_id_fails_under_its_message_id(worker: Worker, client: Client) -> None:
    response = run_batch(worker, sqs_event("{nope", "[]"))
    assert response == {"batchItemFailures": []}
    for message_id in ("m0", "m1"):
        result = client.status(message_id)
        assert result.state is JobState.FAILED
        assert result.error and result.error["type"] == "InvalidJob"


def test_hostile_envelopes_fail_alone_naming_the_cause(worker: Worker, client: Client) -> None:
    good = queued(client.s3, client.settings.bucket, Job.create("env", "CREATE TABLE t (a)", job_id="good"))
    other = Job.create("env", "SELECT 1", job_id="inner").to_text()
    bomb = base64.b64encode(zlib.compress(b" " * (MAX_JOB_TEXT + 1), 9)).decode()
    bodies = {
        "not-base64": json.dumps({"job_id": "not-base64", "deflate": "%%%"}),
        "not-deflate": json.dumps({"job_id": "not-deflate", "deflate": base64.b64encode(b"plain").decode()}),
        "bomb": json.dumps({"job_id": "bomb", "deflate": bomb}),
        "extra": json.dumps({"job_id": "extra", "deflate": "", "sql": "DROP TABLE t"}),
        "swapped": compressed("swapped", other),
        "bad-claim": json.dumps({"job_id": "bad-claim", "claim_check": "jobs/elsewhere/payload.json"}),
    }
    assert run_batch(worker, sqs_event(good, *bodies.values())) == {"batchItemFailures": []}
    assert client.status("good").state is JobState.SUCCEEDED
    reasons = {"not-base64": "not base64 deflate data", "not-deflate": "not base64 deflate data",
               "bomb": "expands beyond", "extra": "must be exactly", "swapped": "carries job inner",
               "bad-claim": "claim check must be exactly"}
    for job_id, reason in reasons.items():
        error = client.status(job_id).error or {}
        assert error.get("type") == "InvalidJob" and reason in error.get("message", ""), (job_id, error)
    assert client.status("inner").state is JobState.NOT_FOUND


def test_a_redelivered_write_is_applied_once(client: Client, settings: Settings, aws: Any,
                                             drain: Callable[..., int], worker: Worker) -> None:
    setup = client.submit("c", "CREATE TABLE n (v INTEGER)")
    drain()
    client.wait(setup, 5)
    job = Job.create("c", "INSERT INTO n VALUES (1)", job_id="dup")
    body = queued(aws.s3, settings.bucket, job)
    # SQS is at-least-once: the same message arrives in two batches, the second after a crash
    # that left the QUEUED document as it was.
    assert run_batch(worker, sqs_event(body)) == {"batchItemFailures": []}
    queued(aws.s3, settings.bucket, job)
    assert run_batch(worker, sqs_event(body, body)) == {"batchItemFailures": []}
    count = client.submit("c", "SELECT count(*) FROM n")
    drain()
    assert client.wait(count, 5).values() == [[1]]
    assert client.status("dup").state is JobState.SUCCEEDED


def test_a_job_over_the_message_limit_travels_by_claim_check(client: Client, drain: Callable[..., int],
                                                             settings: Settings, aws: Any) -> None:
    setup = client.submit("big", "CREATE TABLE t (a INTEGER, b TEXT)")
    # About 440 KB of JSON that does not compress: random bytes as base64.
    rows = [[i, base64.b64encode(os.urandom(150)).decode()] for i in range(2000)]
    load = client.submit_many("big", "INSERT INTO t VALUES (?, ?)", rows)
    stored = aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"jobs/{load}/")["KeyCount"]
    drain()
    assert client.wait(setup, 5).state is JobState.SUCCEEDED
    assert stored == 1
    assert client.wait(load, 5).rowcount == 2000


def test_a_large_job_travels_compressed(client: Client, drain: Callable[..., int], settings: Settings,
                                        aws: Any) -> None:
    setup = client.submit("zip", "CREATE TABLE t (a INTEGER, b TEXT)")
    rows = [[i, f"row {i} of a table whose text repeats"] for i in range(20_000)]  # about 900 KB of JSON
    submission = prepare(Job.create("zip", "INSERT INTO t VALUES (?, ?)", param_sets=list(rows)))
    assert submission.compressed and set(json.loads(submission.body)) == {"job_id", "deflate"}
    assert len(submission.body) < 240 * 1024 < submission.text_bytes
    load = client.submit_prepared(submission)
    drain()
    assert client.wait(setup, 5).state is JobState.SUCCEEDED
    assert client.wait(load, 5).rowcount == 20_000
    assert aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"jobs/{load}/")["KeyCount"] == 0
    count = client.submit("zip", "SELECT count(*), max(b) FROM t")
    drain()
    assert client.wait(count, 5).values() == [[20_000, "row 9999 of a table whose text repeats"]]


def test_large_results_are_paged(settings: Settings, aws: Any, drain: Callable[..., int]) -> None:
    small = settings.replace(inline_result_bytes=2_000)
    worker = Worker(small, aws.s3, aws.sqs, aws.ec2)
    client = Client(small, s3=aws.s3, sqs=aws.sqs)
    client.submit_statements("r", [
            ("CREATE TABLE t (a INTEGER)", None),
            ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000) "
             "INSERT INTO t SELECT x FROM c", None)])
    drain(worker)
    read = client.submit("r", "SELECT a FROM t ORDER BY a")
    drain(worker)
    result = client.wait(read, 5)
    assert result.rows == [] and result.parts
    assert result.total_rows == 30000
    assert [row[0] for row in client.results(read)] == list(range(1, 30001))


def test_results_reach_the_callback_queue(client: Client, settings: Settings, aws: Any,
                                          drain: Callable[..., int]) -> None:
    ok = client.submit("cb", "CREATE TABLE t (a)", reply_to=settings.callback_queue_url)
    refused = client.submit("cb", "SELECT 1", reply_to="https://sqs.us-east-1.amazonaws.com/1/someone-else")
    drain()
    messages = aws.sqs.receive_message(QueueUrl=settings.callback_queue_url, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"])["job_id"] for m in messages] == [ok]
    assert json.loads(messages[0]["Body"])["state"] == "SUCCEEDED"
    error = client.status(refused).error
    assert error and error["type"] == "InvalidJob" and "not allowed" in error["message"]


def test_a_lock_not_acquired_in_time_is_retried_not_failed(client: Client, settings: Settings, aws: Any) -> None:
    worker = Worker(settings.replace(lock_wait=0.3), aws.s3, aws.sqs, aws.ec2)
    other = SecurityGroupLock(aws.ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=30)
    handle = other.acquire("busy", wait=1)
    job = Job.create("busy", "CREATE TABLE t (a)")
    client.submit_job(job)
    read = Job.create("free", "SELECT 1")
    record = Record("m-write", job.to_text())
    assert worker.process([record, Record("m-read", queued(aws.s3, settings.bucket, read))]) == ["m-write"]
    assert client.status(job.job_id).state is JobState.QUEUED
    other.release(handle)
    assert worker.process([record]) == []
    assert client.status(job.job_id).state is JobState.SUCCEEDED


def test_a_cancelled_job_never_runs(client: Client, drain: Callable[..., int]) -> None:
    job_id = client.submit("x", "CREATE TABLE t (a)")
    assert client.cancel(job_id) is JobState.CANCELLED
    assert client.cancel(job_id) is JobState.CANCELLED
    drain()
    assert client.status(job_id).state is JobState.CANCELLED
    probe = client.submit("x", "SELECT 1")
    drain()
    empty = client.wait(probe, 5)
    assert (empty.state, empty.version, empty.values()) == (JobState.SUCCEEDED, 0, [[1]])  # no version yet
    assert client.cancel("never-submitted") is JobState.NOT_FOUND


def test_the_committed_database_passes_integrity_check(client: Client, settings: Settings, aws: Any,
                                                       drain: Callable[..., int], tmp_path: Any) -> None:
    client.submit("ic", "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    for i in range(20):
        client.submit_many("ic", "INSERT INTO t (b) VALUES (?)", [[f"row {i} {j}" * 10] for j in range(50)])
    drain()
    check = client.submit("ic", "PRAGMA integrity_check")
    count = client.submit("ic", "SELECT count(*) FROM t")
    drain()
    assert client.wait(check, 5).values() == [["ok"]]
    assert client.wait(count, 5).values() == [[1000]]


@pytest.mark.parametrize("chunk_size", [4096, 65536])
def test_any_chunk_size_round_trips(settings: Settings, aws: Any, drain: Callable[..., int], chunk_size: int) -> None:
    tuned = settings.replace(chunk_size=chunk_size)
    worker = Worker(tuned, aws.s3, aws.sqs, aws.ec2)
    client = Client(tuned, s3=aws.s3, sqs=aws.sqs)
    client.submit_statements("cs", [("CREATE TABLE t (b BLOB)", None),
                                    ("INSERT INTO t VALUES (randomblob(300000))", None)])
    drain(worker)
    read = client.submit("cs", "SELECT length(b) FROM t")
    drain(worker)
    assert client.wait(read, 5).values() == [[300000]]
    path = worker.store.sync("cs").path  # the committed version, whole, as S3 holds it
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_each_batch_emits_its_metrics(client: Client, worker: Worker, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.handler import emit

    good = queued(client.s3, client.settings.bucket, Job.create("m", "CREATE TABLE t (a)"))
    assert run_batch(worker, sqs_event(good, "{bad json")) == {"batchItemFailures": []}
    capsys.readouterr()
    emit(worker.last_stats)
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"JobsSucceeded", "JobsFailed", "JobsRetried", "MessagesDropped", "LockWait", "CommitBytes",
                     "BatchDuration"}
    assert (doc["JobsSucceeded"], doc["JobsFailed"], doc["JobsRetried"]) == ([1.0], [1.0], [0.0])
    assert doc["CommitBytes"][0] > 0


def test_vacuum_and_incremental_vacuum_shrink_the_database(settings: Settings, aws: Any,
                                                           drain: Callable[..., int]) -> None:
    client = Client(settings, s3=aws.s3, sqs=aws.sqs)
    history = History(Bucket(aws.s3, settings.bucket))

    def run(sql: str) -> JobResult:
        job_id = client.submit("vac", sql)
        drain()
        return client.wait(job_id, 5)

    run("CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB)")
    rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {}) "
    assert run(rows.format(500) + "INSERT INTO t (pad) SELECT randomblob(4000) FROM n").rowcount == 500
    run("DELETE FROM t WHERE id > 10")
    before = history.current("vac")[0].file_size
    done = run("VACUUM")
    assert done.state is JobState.SUCCEEDED, done.error
    after = history.current("vac")[0]
    assert after.file_size < before / 10 and after.version == done.version
    assert run("SELECT count(*) FROM t").values() == [[10]]
    mixed = client.submit_statements("vac", [("DELETE FROM t WHERE id = 1", None), ("VACUUM", None)])
    drain()
    failed = client.wait(mixed, 5)
    assert failed.state is JobState.FAILED and "a job of its own" in (failed.error or {})["message"]
    switched = client.submit_statements("vac", [("PRAGMA auto_vacuum = INCREMENTAL", None), ("VACUUM", None)])
    drain()  # auto_vacuum takes effect with a VACUUM on the same connection: one job
    assert client.wait(switched, 5).state is JobState.SUCCEEDED
    assert run("PRAGMA auto_vacuum").values() == [[2]]
    assert run(rows.format(200) + "INSERT INTO t (pad) SELECT randomblob(4000) FROM n").rowcount == 200
    run("DELETE FROM t WHERE id > 10")
    grown = history.current("vac")[0].file_size
    assert run("PRAGMA incremental_vacuum").state is JobState.SUCCEEDED
    assert history.current("vac")[0].file_size < grown / 5
    refused = client.submit("vac", "PRAGMA incremental_vacuum", read_only=True)
    drain()
    assert (client.wait(refused, 5).error or {}).get("type") == "ReadOnlyViolation"
    assert run("ATTACH DATABASE '' AS sneaky").state is JobState.FAILED  # VACUUM's way in is VACUUM's alone
