"""Foreign keys are enforced in every write job, and a broken one is named: the key, the row, its value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.job.model import Job

from .test_transaction import Db, rows
from .test_transaction import apply as apply_jobs


def apply(path: Db, *jobs: Job) -> dict:
    return apply_jobs(path, *jobs)[0]


@pytest.fixture(params=["file", "pages"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    path = Db(request.param, tmp_path)
    outcomes = apply(path, Job.create("shop", statements=[
        ("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)", None),
        ("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), item TEXT)",
         None),
        ("INSERT INTO customers VALUES (1, 'ada')", None),
    ], job_id="setup"))
    assert outcomes["setup"].ok, outcomes["setup"].error
    yield path
    if path.overlay is not None:
        path.overlay.close()


def test_a_write_that_breaks_a_key_fails_naming_it_beside_jobs_that_keep_theirs(path: Db) -> None:
    outcomes = apply(
        path,
        Job.create("shop", "INSERT INTO orders VALUES (1, 1, 'tea')", job_id="good"),
        Job.create("shop", statements=[("INSERT INTO orders VALUES (2, 1, 'cake')", None),
                                       ("INSERT INTO orders VALUES (3, 42, 'jam')", None)], job_id="orphan"),
        Job.create("shop", "INSERT INTO orders VALUES (4, 1, 'milk')", job_id="later"),
    )
    assert outcomes["good"].ok and outcomes["later"].ok
    error = outcomes["orphan"].error
    assert error["type"] == "ConstraintViolation"
    assert error["message"] == ("statements[1]: FOREIGN KEY constraint failed: orders(customer_id) REFERENCES "
                                "customers(id): orders row 3 has customer_id = 42, which no row of customers has")
    assert rows(path, "SELECT id FROM orders ORDER BY id") == [(1,), (4,)]


def test_deleting_a_parent_that_rows_still_name_fails(path: Db) -> None:
    apply(path, Job.create("shop", "INSERT INTO orders VALUES (1, 1, 'tea')", job_id="order"))
    outcomes = apply(path, Job.create("shop", "DELETE FROM customers WHERE id = 1", job_id="delete"))
    assert outcomes["delete"].error["type"] == "ConstraintViolation"
    assert "orders row 1 has customer_id = 1, which no row of customers has" in outcomes["delete"].error["message"]
    assert rows(path, "SELECT count(*) FROM customers") == [(1,)]


def test_deferred_checks_fail_at_the_jobs_end_naming_the_key(path: Db) -> None:
    outcomes = apply(path, Job.create("shop", statements=[
        ("PRAGMA defer_foreign_keys = ON", None),
        ("INSERT INTO orders VALUES (5, 7, 'early')", None),
        ("INSERT INTO customers VALUES (7, 'late')", None),  # the parent arrives later: fine when deferred
        ("INSERT INTO orders VALUES (6, 8, 'never')", None),
    ], job_id="deferred"))
    error = outcomes["deferred"].error
    assert error["type"] == "ConstraintViolation"
    assert error["message"] == ("FOREIGN KEY constraint failed when the job ended (its checks were deferred): "
                                "orders(customer_id) REFERENCES customers(id): orders row 6 has customer_id = 8, "
                                "which no row of customers has; nothing of the job was applied")
    assert rows(path, "SELECT count(*) FROM orders") == [(0,)]
    fixed = apply(path, Job.create("shop", statements=[
        ("PRAGMA defer_foreign_keys = ON", None),
        ("INSERT INTO orders VALUES (5, 7, 'early')", None),
        ("INSERT INTO customers VALUES (7, 'late')", None),
    ], job_id="fixed"))
    assert fixed["fixed"].ok, fixed["fixed"].error


def test_a_job_may_turn_the_checks_off_for_itself_only(path: Db) -> None:
    outcomes = apply(
        path,
        Job.create("shop", statements=[("PRAGMA foreign_keys = OFF", None),
                                       ("INSERT INTO orders VALUES (9, 99, 'migrated')", None)], job_id="off"),
        Job.create("shop", "INSERT INTO orders VALUES (10, 100, 'checked')", job_id="next"),
        Job.create("shop", "PRAGMA foreign_keys", job_id="setting"),
    )
    assert outcomes["off"].ok, outcomes["off"].error
    assert outcomes["next"].error["type"] == "ConstraintViolation"
    assert outcomes["setting"].rows == [[1]]
    found = apply(path, Job.create("shop", "PRAGMA foreign_key_check", job_id="check"))["check"]
    assert found.rows == [["orders", 9, "customers", 0]]


def test_an_update_that_breaks_a_key_is_named_and_rolled_back(path: Db) -> None:
    outcomes = apply(path, Job.create("shop", statements=[
        ("INSERT INTO orders VALUES (1, 1, 'tea')", None),
        ("UPDATE orders SET customer_id = 2", None),
    ], job_id="update"))
    assert "orders row 1 has customer_id = 2" in outcomes["update"].error["message"]
    assert rows(path, "SELECT count(*) FROM orders") == [(0,)]
