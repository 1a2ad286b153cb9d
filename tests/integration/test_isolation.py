"""No job reaches another: hostile and oversized input arrives the way it does in production, beside
other clients' jobs in the same SQS batch, and each fails alone (or succeeds) with a clear result."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from producer.client import Client
from shared.errors import ClientSideError, SrdbError
from shared.job.classify import is_read_job
from shared.job.model import MAX_SQL_CHARS, Job
from shared.job.result import JobState
from shared.settings import Settings
from shared.snapshot.keys import manifest_key, version_key
from worker.batch import Record, Worker
from worker.handler import run_batch

from ..conftest import queued, sqs_event

_examples = itertools.count(1)


def setup(client: Client, drain: Callable[..., int], database: str, *statements: str) -> None:
    job_id = client.submit_statements(database, [(s, None) for s in statements])
    drain()
    assert client.wait(job_id, 5).state is JobState.SUCCEEDED


def batch(worker: Worker, aws: Any, settings: Settings, *jobs: Job | str) -> list[str]:
    """One SQS batch holding these jobs (each submitted as a client does) and raw bodies."""
    bodies = [j if isinstance(j, str) else queued(aws.s3, settings.bucket, j) for j in jobs]
    return [f["itemIdentifier"] for f in run_batch(worker, sqs_event(*bodies))["batchItemFailures"]]


OVERSIZED = {
    "plus-terms": ("SELECT " + "+".join(["1"] * 102), [[102]]),
    "nested": ("SELECT " + "(" * 101 + "1" + ")" * 101, None),  # SQLite itself: "parser stack overflow"
    "in-list": ("SELECT count(*) FROM t WHERE a IN (" + ",".join(map(str, range(6000))) + ")", [[2]]),
    "string-1mib": ("SELECT length('" + "x" * (1 << 20) + "')", [[1 << 20]]),
    "params-30k": ("SELECT count(*) FROM t WHERE a IN (" + ",".join(["?"] * 30_000) + ")", None),
    "too-deep": ("SELECT " + "(" * 5000 + "1" + ")" * 5000, None),
}


def test_oversized_statements_run_or_fail_alone_beside_other_clients(
        client: Client, worker: Worker, aws: Any, settings: Settings, drain: Callable[..., int]) -> None:
    setup(client, drain, "big", "CREATE TABLE t (a INTEGER)", "INSERT INTO t VALUES (1), (2)")
    setup(client, drain, "other", "CREATE TABLE o (a INTEGER)")
    jobs = {name: Job.create("big", sql, job_id=f"big-{name}") for name, (sql, _) in OVERSIZED.items()}
    jobs["params-30k"] = Job.create("big", OVERSIZED["params-30k"][0], list(range(30_000)), job_id="big-params")
    jobs["multi-values"] = Job.create("big", "INSERT INTO t VALUES " + ",".join(f"({i})" for i in range(10_000)),
                                      job_id="big-multi-values")
    jobs["to-sql-multi"] = Job.create("big", "INSERT INTO t VALUES " + ",".join(["(?)"] * 2000),
                                      list(range(2000)), job_id="big-to-sql")
    innocent_write = Job.create("other", "INSERT INTO o VALUES (7)", job_id="innocent-write")
    innocent_read = Job.create("big", "SELECT 42", job_id="innocent-read")
    too_long = json.dumps({"v": 1, "job_id": "too-long", "database": "big",
                           "sql": "SELECT '" + "x" * MAX_SQL_CHARS + "'"})
    assert batch(worker, aws, settings, innocent_write, *jobs.values(), too_long, innocent_read) == []
    assert "longer than" in (client.status("too-long").error or {}).get("message", "")
    assert client.status("innocent-write").state is JobState.SUCCEEDED
    assert client.status("innocent-read").values() == [[42]]
    for name, (_, rows) in OVERSIZED.items():
        result = client.status(jobs[name].job_id)
        assert result.state.final, name
        if rows is not None:
            assert (result.state, result.values()) == (JobState.SUCCEEDED, rows), (name, result.error)
    assert client.status("big-params").values() == [[2]], client.status("big-params").error
    assert client.status("too-deep").state is JobState.NOT_FOUND
    deep = client.status("big-too-deep")
    assert deep.state is JobState.FAILED and deep.error and deep.error["type"] == "SqlError"
    assert client.status("big-multi-values").rowcount == 10_000
    assert client.status("big-to-sql").rowcount == 2000


def test_undecodable_and_corrupt_input_fails_alone(client: Client, worker: Worker, aws: Any, settings: Settings,
                                                   drain: Callable[..., int]) -> None:
    setup(client, drain, "ok", "CREATE TABLE t (a)")
    setup(client, drain, "broken", "CREATE TABLE t (a)")
    surrogate = '{"v": 1, "job_id": "surrogate", "database": "ok", "sql": "SELECT \'\\ud800\'"}'
    corrupt_status = Job.create("ok", "SELECT 1", job_id="corrupt-status")
    body = queued(aws.s3, settings.bucket, corrupt_status)
    aws.s3.put_object(Bucket=settings.bucket, Key="results/corrupt-status.json", Body=b"{not json")
    aws.s3.put_object(Bucket=settings.bucket, Key=manifest_key("broken"), Body=b"[1, 2")
    broken = Job.create("broken", "INSERT INTO t VALUES (1)", job_id="on-broken")
    innocent = Job.create("ok", "INSERT INTO t VALUES (1)", job_id="innocent")
    failed = batch(worker, aws, settings, surrogate, body, broken, innocent)
    assert failed == ["m2"]  # only the job of the database whose manifest is corrupt goes back to SQS
    assert client.status("innocent").state is JobState.SUCCEEDED
    error = client.status("surrogate").error or {}
    assert error.get("type") == "InvalidJob" and "not valid Unicode" in error.get("message", "")
    assert client.status("on-broken").state is JobState.QUEUED
    with pytest.raises(SrdbError, match="corrupt"):
        client.status("corrupt-status")


def test_a_message_runs_only_as_the_job_its_queued_document_names(
        client: Client, worker: Worker, aws: Any, settings: Settings, drain: Callable[..., int]) -> None:
    setup(client, drain, "acct", "CREATE TABLE t (who TEXT)")
    # A raw message sent first under a victim's future id: refused, and the victim hears of it.
    squat = Job.create("acct", "INSERT INTO t VALUES ('attacker')", job_id="future").to_text()
    assert batch(worker, aws, settings, squat) == []
    with pytest.raises(ClientSideError, match="already used for a different job"):
        client.submit("acct", "INSERT INTO t VALUES ('victim')", job_id="future")
    # A forged message under a queued victim's id: left alone; the victim's own message runs as itself.
    victim = Job.create("acct", "INSERT INTO t VALUES ('victim')", job_id="victim")
    client.submit_job(victim)
    forged = Job.create("acct", "INSERT INTO t VALUES ('forged')", job_id="victim").to_text()
    malformed = json.dumps({"v": 1, "job_id": "victim", "database": "acct"})
    assert run_batch(worker, sqs_event(forged, malformed)) == {"batchItemFailures": []}
    assert client.status("victim").state is JobState.QUEUED
    drain()
    result = client.wait("victim", 5)
    assert result.state is JobState.SUCCEEDED and result.job_digest == victim.digest()
    rows = client.submit("acct", "SELECT who FROM t ORDER BY rowid")
    drain()
    assert client.wait(rows, 5).values() == [["victim"]]


def test_temp_objects_of_one_client_never_reach_another(client: Client, worker: Worker, aws: Any,
                                                        settings: Settings, drain: Callable[..., int]) -> None:
    setup(client, drain, "shop", "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
    shadow = Job.create("shop", "CREATE TEMP TABLE orders (id, note)")
    trigger = Job.create("shop", "CREATE TEMP TRIGGER rewrite AFTER INSERT ON main.orders BEGIN "
                                 "UPDATE orders SET note = 'forged' WHERE id = new.id; END")
    victim = Job.create("shop", "INSERT INTO orders (note) VALUES ('mine')")
    scratch = [Job.create("shop", statements=[("CREATE TEMP TABLE scratch (a)", None),
                                              ("INSERT INTO scratch VALUES (1)", None),
                                              ("SELECT count(*) FROM scratch", None)]) for _ in range(2)]
    assert batch(worker, aws, settings, shadow, trigger, victim, *scratch) == []
    assert client.status(victim.job_id).rowcount == 1
    assert [client.status(j.job_id).values() for j in scratch] == [[[1]], [[1]]]
    read = client.submit("shop", "SELECT note FROM orders")
    drain()
    assert client.wait(read, 5).values() == [["mine"]]


def test_reads_may_search_virtual_tables(client: Client, worker: Worker, aws: Any, settings: Settings,
                                         drain: Callable[..., int]) -> None:
    setup(client, drain, "docs", "CREATE VIRTUAL TABLE docs USING fts5(body)",
          "INSERT INTO docs VALUES ('hello world'), ('goodbye')")
    match = Job.create("docs", "SELECT body FROM docs WHERE docs MATCH 'hello'")
    each = Job.create("docs", "SELECT value FROM json_each('[1, 2]')")
    pragma = Job.create("docs", "SELECT count(*) > 0 FROM pragma_table_list")
    assert batch(worker, aws, settings, match, each, pragma) == []
    assert client.status(match.job_id).values() == [["hello world"]]
    assert client.status(each.job_id).values() == [[1], [2]]
    assert client.status(pragma.job_id).values() == [[1]]


def test_budgets_fit_the_invocation(client: Client, settings: Settings, aws: Any, worker: Worker,
                                    drain: Callable[..., int]) -> None:
    setup(client, drain, "slow", "CREATE TABLE t (a)")
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    greedy = Job.create("slow", "SELECT 1", timeout=900, job_id="greedy")
    first = Job.create("slow", statements=[("INSERT INTO t VALUES (1)", None), (runaway, None)],
                       timeout=20, job_id="first")
    second = Job.create("slow", "INSERT INTO t VALUES (2)", job_id="second")
    bodies = [queued(aws.s3, settings.bucket, j) for j in (greedy, first, second)]
    records = [Record(f"m{i}", body) for i, body in enumerate(bodies)]
    # 1.5 s left in the invocation: the first write's budget is cut to fit, the second is handed back.
    assert worker.process(records, remaining=1.5) == ["m2"]
    error = client.status("greedy").error or {}
    assert error.get("type") == "InvalidJob" and "SRDB_MAX_JOB_TIMEOUT" in error.get("message", "")
    assert (client.status("first").error or {}).get("type") == "Timeout"
    assert client.status("second").state is JobState.QUEUED
    assert worker.process([records[2]]) == []
    assert client.status("second").state is JobState.SUCCEEDED


def test_huge_values_are_refused_before_they_fill_memory(settings: Settings, aws: Any,
                                                         drain: Callable[..., int]) -> None:
    tight = settings.replace(max_result_bytes=1_000_000)
    worker = Worker(tight, aws.s3, aws.sqs, aws.ec2)
    client = Client(tight, s3=aws.s3, sqs=aws.sqs)
    setup(client, lambda: drain(worker), "blob", "CREATE TABLE t (a)")
    giant = Job.create("blob", "SELECT randomblob(1000000000)")
    over = Job.create("blob", "SELECT randomblob(600000) UNION ALL SELECT randomblob(600000)")
    fine = Job.create("blob", "SELECT length(randomblob(100000))")
    assert batch(worker, aws, tight, giant, over, fine) == []
    assert "too big" in (client.status(giant.job_id).error or {}).get("message", "")
    assert (client.status(over.job_id).error or {}).get("type") == "ResultTooLarge"
    assert client.status(fine.job_id).values() == [[100000]]


def test_non_finite_reals_travel_as_tagged_json(client: Client, drain: Callable[..., int], settings: Settings,
                                                aws: Any) -> None:
    setup(client, drain, "reals", "CREATE TABLE t (r REAL)", "INSERT INTO t VALUES (9e999), (-9e999), (1.5)")
    job_id = client.submit("reals", "SELECT r FROM t ORDER BY rowid")
    drain()
    raw = aws.s3.get_object(Bucket=settings.bucket, Key=f"results/{job_id}.json")["Body"].read().decode()
    assert "Infinity\"" in raw and "Infinity," not in raw
    assert json.loads(raw, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))["rows"][0] == [{"$real": "Infinity"}]
    assert client.wait(job_id, 5).values() == [[float("inf")], [float("-inf")], [1.5]]


def test_a_lost_manifest_never_starts_a_new_history(client: Client, drain: Callable[..., int], settings: Settings,
                                                    aws: Any, worker: Worker) -> None:
    setup(client, drain, "hist", "CREATE TABLE t (a)")
    setup(client, drain, "hist", "INSERT INTO t VALUES (1)")
    before = aws.s3.get_object(Bucket=settings.bucket, Key=version_key("hist", 1))["Body"].read()
    aws.s3.delete_object(Bucket=settings.bucket, Key=manifest_key("hist"))
    job = Job.create("hist", "CREATE TABLE fresh (a)")
    assert batch(worker, aws, settings, job) == ["m0"]
    assert client.status(job.job_id).state is JobState.QUEUED
    assert aws.s3.get_object(Bucket=settings.bucket, Key=version_key("hist", 1))["Body"].read() == before
    assert aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix="db/hist/manifest")["KeyCount"] == 0


def test_a_claim_checked_job_whose_payload_is_gone_fails_saying_so(client: Client, settings: Settings, aws: Any,
                                                                   drain: Callable[..., int]) -> None:
    job_id = client.submit("cc", "SELECT '" + os.urandom(300_000).hex() + "'")  # too random to travel deflated
    aws.s3.delete_object(Bucket=settings.bucket, Key=f"jobs/{job_id}/payload.json")
    drain()
    error = client.wait(job_id, 5).error or {}
    assert error.get("type") == "InvalidJob" and "is missing" in error.get("message", "")


# Statements that leave something behind on a connection, or reach for the worker's own state.
STATEMENTS = [
    "CREATE TEMP TABLE orders (id, note)",
    "CREATE TEMP TRIGGER t AFTER INSERT ON main.orders BEGIN UPDATE orders SET note = 'forged' WHERE id = new.id; END",
    "CREATE TEMP VIEW v AS SELECT 1 AS one",
    "SELECT * FROM v",
    "CREATE TEMP TABLE scratch (a)",
    "INSERT INTO scratch VALUES (1)",
    "INSERT INTO orders (note) VALUES ('mine')",
    "INSERT OR ROLLBACK INTO orders VALUES (1, 'dup')",
    "UPDATE orders SET note = note || '!'",
    "SELECT id, note FROM orders ORDER BY id",
    "SELECT last_insert_rowid(), changes(), total_changes()",
    "SELECT name FROM sqlite_temp_master ORDER BY name",
    "PRAGMA defer_foreign_keys = ON",
    "PRAGMA defer_foreign_keys",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA foreign_keys",
    "PRAGMA main.foreign_key_check",
    "SAVEPOINT _srdb_foreign_keys",
    "ROLLBACK TO _srdb_foreign_keys",
    "INSERT INTO _srdb_jobs VALUES ('x', '{}', 0)",
    "SELECT count(*) FROM _srdb_jobs",
    "SAVEPOINT job",
    "RELEASE job",
    "ROLLBACK TO job",
    "COMMIT",
    "SELECT " + "+".join(["1"] * 102),
]


def _outcome(client: Client, job_id: str) -> tuple[Any, ...]:
    result = client.status(job_id)
    return result.state, (result.error or {}).get("type"), result.values(), result.rowcount, result.lastrowid


def _job(database: str, statements: list[str]) -> Job:
    return Job.create(database, statements=[(s, None) for s in statements])


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=3),
       second=st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=3))
@pytest.mark.slow
def test_two_jobs_in_one_batch_end_as_in_batches_of_their_own(
        client: Client, worker: Worker, aws: Any, settings: Settings, first: list[str], second: list[str]) -> None:
    together, apart = f"iso{next(_examples)}", f"iso{next(_examples)}"
    for database in (together, apart):
        setup_job = Job.create(database, "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
        assert batch(worker, aws, settings, setup_job) == []
    a, b = _job(together, first), _job(together, second)
    assert batch(worker, aws, settings, a, b) == []
    alone_a, alone_b = _job(apart, first), _job(apart, second)
    # A batch runs its writes (in order) before its reads: apart, the same order.
    order = sorted([alone_a, alone_b], key=lambda job: is_read_job(job))
    for job in order:
        assert batch(worker, aws, settings, job) == []
    assert _outcome(client, a.job_id) == _outcome(client, alone_a.job_id)
    assert _outcome(client, b.job_id) == _outcome(client, alone_b.job_id)
    check = [_job(database, ["SELECT id, note FROM orders ORDER BY id"]) for database in (together, apart)]
    assert batch(worker, aws, settings, *check) == []
    assert client.status(check[0].job_id).values() == client.status(check[1].job_id).values()


LIMITS = {  # one job per limit srdb sets on SQLite (shared.guard.JOB_LIMITS), each failing alone and saying why
    "columns": ("SELECT " + ", ".join(f"{i} AS c{i}" for i in range(2001)), "too many columns"),
    "compound": (" UNION ALL ".join(["SELECT 1"] * 501), "too many terms in compound SELECT"),
    "like": ("SELECT 'a' LIKE '" + "%a" * 30_000 + "'", "LIKE or GLOB pattern too complex"),
    "depth": ("SELECT " + "1+" * 1100 + "1", "Expression tree is too large"),
    "attach": ("ATTACH DATABASE ':memory:' AS other", "ATTACH"),
    "variables": ("SELECT " + ", ".join(["?"] * 32_767), "too many SQL variables"),
}


def test_each_limit_on_sqlite_fails_its_job_alone(client: Client, worker: Worker, aws: Any, settings: Settings,
                                                  drain: Callable[..., int]) -> None:
    setup(client, drain, "limits", "CREATE TABLE chain (n INTEGER)")
    jobs = {name: Job.create("limits", sql, list(range(32_767)) if name == "variables" else None,
                             job_id=f"limit-{name}") for name, (sql, _) in LIMITS.items()}
    innocent = Job.create("limits", "SELECT count(*) FROM chain", job_id="limit-innocent")
    assert batch(worker, aws, settings, *jobs.values(), innocent) == []
    for name, (_, says) in LIMITS.items():
        result = client.status(jobs[name].job_id)
        assert result.state is JobState.FAILED and says in (result.error or {}).get("message", ""), (name, result.error)
    assert client.status("limit-innocent").values() == [[0]]
