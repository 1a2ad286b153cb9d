"""The worker's own bookkeeping (``_srdb_jobs``, the exactly-once record) cannot be swapped out, shadowed,
fired upon or named by a job: hostile jobs arrive beside other clients' jobs in the same batch, and the
worker's own statements are replayed against it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from producer.client import Client
from shared.job.model import Job
from shared.job.result import JobState
from shared.settings import Settings
from worker.batch import Worker

from ..conftest import queued
from .test_isolation import batch, setup

# The attack of issue #21: a TEMP table renamed to the worker's table, with a trigger chain that would
# forge another client's recorded outcome.
SWAP = [
    "CREATE TABLE w (a)",
    "CREATE TABLE leak (job_id, outcome)",
    "CREATE TRIGGER t2 AFTER INSERT ON w BEGIN "
    "INSERT OR REPLACE INTO _srdb_jobs VALUES ('order-42', '{\"rows\":[[1000000]],\"rowcount\":1}', 1e12); "
    "INSERT INTO leak SELECT job_id, outcome FROM _srdb_jobs; END",
    "CREATE TEMP TABLE x (job_id, outcome, applied_at)",
    "CREATE TEMP TRIGGER t1 AFTER INSERT ON x BEGIN INSERT INTO w VALUES (1); END",
]
RENAMES = {
    "temp-swap": "ALTER TABLE temp.x RENAME TO _srdb_jobs",
    "temp-swap-case": "ALTER TABLE temp.x RENAME TO _SRDB_Jobs",
    "temp-swap-quoted": 'ALTER TABLE temp.x RENAME TO "_srdb_jobs"',
    "temp-other-name": "ALTER TABLE temp.x RENAME TO _srdb_records",
}
MAKES = {
    "rename-user-table": ["ALTER TABLE orders RENAME TO _srdb_orders"],
    "rename-user-table-case": ["ALTER TABLE orders RENAME TO [_Srdb_Orders]"],
    "one-column-temp": ["CREATE TEMP TABLE y (a)", "ALTER TABLE temp.y RENAME TO _srdb_jobs"],
    "fts-shadow-tables": ["CREATE VIRTUAL TABLE _srdb USING fts5(body)"],
    "rtree-shadow-tables": ["CREATE VIRTUAL TABLE _srdb USING rtree(id, x0, x1)"],
    "temp-view": ["CREATE TEMP VIEW _srdb_jobs AS SELECT 1 AS job_id, 2 AS outcome, 3 AS applied_at"],
    "temp-index-on-own": ["CREATE INDEX temp.i ON _srdb_jobs (outcome)"],
    "dbstat": ["SELECT name FROM dbstat", "INSERT INTO orders (note) VALUES ('x')"],
}


def _error(client: Client, job_id: str) -> dict[str, Any]:
    result = client.status(job_id)
    assert result.state is JobState.FAILED, (job_id, result.state, result.rows)
    return result.error or {}


@pytest.mark.parametrize("rename", RENAMES, ids=list(RENAMES))
def test_a_job_cannot_swap_the_workers_table_for_its_own(
        rename: str, client: Client, worker: Worker, aws: Any, settings: Settings,
        drain: Callable[..., int]) -> None:
    setup(client, drain, "shop", "CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER)",
          "INSERT INTO orders VALUES (42, 1)")
    before = Job.create("shop", "INSERT INTO orders VALUES (1, 1)", job_id=f"before-{rename}")
    attack = Job.create("shop", statements=[(s, None) for s in [*SWAP, RENAMES[rename]]], job_id=f"attack-{rename}")
    victim = queued(aws.s3, settings.bucket, Job.create(
        "shop", "UPDATE orders SET qty = qty + 1 WHERE id = 42 RETURNING qty", job_id="order-42"))
    other = Job.create("other", "CREATE TABLE o (a)", job_id=f"other-{rename}")
    assert batch(worker, aws, settings, before, attack, victim, other) == []
    error = _error(client, attack.job_id)
    assert error["type"] == "Forbidden" and "belong to srdb" in error["message"], error
    assert client.status("order-42").values() == [[2]]
    assert client.status(before.job_id).state is JobState.SUCCEEDED
    assert client.status(other.job_id).state is JobState.SUCCEEDED
    # The victim's message delivered again: its recorded outcome stands, its UPDATE is not applied twice.
    assert batch(worker, aws, settings, victim) == []
    read = client.submit("shop", "SELECT qty, (SELECT count(*) FROM sqlite_schema WHERE name IN ('w', 'leak')) "
                                 "FROM orders WHERE id = 42")
    drain()
    assert client.wait(read, 5).values() == [[2, 0]]


@pytest.mark.parametrize("name", MAKES, ids=list(MAKES))
def test_no_object_may_be_made_or_renamed_into_srdbs_names(
        name: str, client: Client, worker: Worker, aws: Any, settings: Settings, drain: Callable[..., int]) -> None:
    setup(client, drain, "shop", "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
    hostile = Job.create("shop", statements=[(s, None) for s in MAKES[name]], job_id=f"hostile-{name}")
    innocent = [Job.create("shop", "INSERT INTO orders (note) VALUES ('mine')", job_id=f"innocent-{name}-{i}")
                for i in range(2)]
    elsewhere = Job.create("else", "CREATE TABLE e (a)", job_id=f"else-{name}")
    assert batch(worker, aws, settings, innocent[0], hostile, innocent[1], elsewhere) == []
    assert _error(client, hostile.job_id)["type"] in ("Forbidden", "SqlError")
    assert [client.status(j.job_id).rowcount for j in innocent] == [1, 1]
    assert client.status(elsewhere.job_id).state is JobState.SUCCEEDED
    read = client.submit("shop", "SELECT count(*) FROM orders")
    drain()
    assert client.wait(read, 5).values() == [[2]]


def test_a_redelivered_write_beside_a_swap_attempt_applies_once(
        client: Client, worker: Worker, aws: Any, settings: Settings, drain: Callable[..., int]) -> None:
    setup(client, drain, "bank", "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER)",
          "INSERT INTO acct VALUES (1, 100)")
    pay = Job.create("bank", "UPDATE acct SET balance = balance - 10 WHERE id = 1", job_id="pay")
    body = queued(aws.s3, settings.bucket, pay)
    attack = Job.create("bank", statements=[
        ("CREATE TEMP TABLE x (job_id, outcome, applied_at)", None),
        ("ALTER TABLE temp.x RENAME TO _srdb_jobs", None),
        ("DELETE FROM acct WHERE 0", None)], job_id="attack-pay")
    assert batch(worker, aws, settings, body, attack, body) == []
    assert _error(client, "attack-pay")["type"] == "Forbidden"
    read = client.submit("bank", "SELECT balance FROM acct")
    drain()
    assert client.wait(read, 5).values() == [[90]]
