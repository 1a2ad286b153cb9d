"""Interactive transactions: previews on scratch copies, a commit validated against its base version."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from producer.client import Client
from producer.transaction import Transaction, TransactionClosed
from shared.errors import JobFailed, SerializationFailure
from shared.job.model import Job, TxStep
from shared.job.result import JobState
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

from ..conftest import queued, sqs_event


def values(client: Client, database: str, sql: str) -> list[list[Any]]:
    return client.query(database, sql, timeout=10).values()


@pytest.fixture
def accounts(client: Client, serving: Worker) -> str:
    client.query("bank", "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)", timeout=10)
    client.query("bank", "INSERT INTO acct VALUES (1, 100), (2, 100), (3, 100)", timeout=10)
    return "bank"


def test_a_transaction_reads_its_own_writes_and_nobody_else_sees_them_until_commit(client: Client,
                                                                                   accounts: str) -> None:
    with client.transaction(accounts) as tx:
        assert tx.execute("SELECT balance FROM acct WHERE id = 1").values() == [[100]]
        inserted = tx.execute("INSERT INTO acct (balance) VALUES (?) RETURNING id", [7])
        assert inserted.values() == [[4]]  # RETURNING keys work inside a transaction
        assert tx.execute("UPDATE acct SET balance = balance - 10 WHERE id = 1").rowcount == 1
        assert tx.execute("SELECT balance FROM acct WHERE id IN (1, 4) ORDER BY id").values() == [[90], [7]]
        assert values(client, accounts, "SELECT count(*), sum(balance) FROM acct") == [[3, 300]]
    assert values(client, accounts, "SELECT count(*), sum(balance) FROM acct") == [[4, 297]]
    with pytest.raises(TransactionClosed):
        tx.execute("SELECT 1")


def test_rollback_and_an_exception_apply_nothing(client: Client, accounts: str) -> None:
    tx = client.transaction(accounts)
    tx.execute("DELETE FROM acct")
    tx.rollback()
    with pytest.raises(RuntimeError), client.transaction(accounts) as inner:
        inner.execute("DELETE FROM acct")
        raise RuntimeError("the application changed its mind")
    assert values(client, accounts, "SELECT count(*) FROM acct") == [[3]]


def test_a_failed_statement_fails_alone_and_the_transaction_goes_on(client: Client, accounts: str) -> None:
    with client.transaction(accounts) as tx:
        tx.execute("INSERT INTO acct VALUES (9, 1)")
        with pytest.raises(JobFailed, match="UNIQUE constraint failed"):
            tx.execute("INSERT INTO acct VALUES (1, 1)")
        assert tx.execute("SELECT count(*) FROM acct").values() == [[4]]
    assert values(client, accounts, "SELECT count(*) FROM acct") == [[4]]


def test_a_commit_after_another_commit_fails_and_applies_nothing(client: Client, accounts: str) -> None:
    tx = client.transaction(accounts)
    tx.execute("UPDATE acct SET balance = 0 WHERE id = 1")
    client.query(accounts, "UPDATE acct SET balance = 50 WHERE id = 2", timeout=10)  # someone else commits
    with pytest.raises(SerializationFailure, match="changed since this transaction began at version 2"):
        tx.commit()
    assert values(client, accounts, "SELECT balance FROM acct ORDER BY id") == [[100], [50], [100]]


def test_a_read_only_transaction_commits_nothing_and_cannot_fail(client: Client, accounts: str) -> None:
    tx = client.transaction(accounts)
    assert tx.execute("SELECT sum(balance) FROM acct").values() == [[300]]
    client.query(accounts, "UPDATE acct SET balance = 0", timeout=10)
    assert tx.execute("SELECT sum(balance) FROM acct").values() == [[300]]  # its snapshot, unchanged
    assert tx.commit() is None


def test_a_transaction_on_a_database_that_does_not_exist_yet_creates_it(client: Client, serving: Worker) -> None:
    with client.transaction("fresh") as tx:
        tx.execute("CREATE TABLE t (n)")
        tx.executemany("INSERT INTO t VALUES (?)", [[1], [2], [3]])
        assert tx.execute("SELECT sum(n) FROM t").values() == [[6]]
        assert tx.base == 0
    assert values(client, "fresh", "SELECT sum(n) FROM t") == [[6]]


def test_a_redelivered_commit_applies_once_and_a_second_commit_on_the_same_base_fails(
        settings: Settings, aws: Any, client: Client, worker: Worker) -> None:
    def job(sql: str, base: int | None, preview: bool) -> Job:
        return Job.create("once", statement_sets=[(sql, [[]])], transaction=TxStep(base, preview))

    create = Job.create("once", "CREATE TABLE t (n)")
    run_batch(worker, sqs_event(queued(aws.s3, settings.bucket, create)))
    first, second = job("INSERT INTO t VALUES (1)", 1, False), job("INSERT INTO t VALUES (2)", 1, False)
    bodies = [queued(aws.s3, settings.bucket, j) for j in (first, second)]
    assert run_batch(worker, sqs_event(*bodies)) == {"batchItemFailures": []}
    assert client.status(first.job_id).state is JobState.SUCCEEDED
    assert client.status(second.job_id).error["type"] == "SerializationFailure"  # type: ignore[index]
    run_batch(worker, sqs_event(bodies[0]))  # delivered again after it committed: its recorded outcome
    check = Job.create("once", "SELECT group_concat(n) FROM t")
    run_batch(worker, sqs_event(queued(aws.s3, settings.bucket, check)))
    assert client.status(check.job_id).values() == [["1"]]


def test_read_modify_write_transactions_conserve_the_total(settings: Settings, aws: Any, client: Client,
                                                          accounts: str) -> None:
    """Several clients move money between accounts at once, each transaction retried on a
    serialization failure: every committed move is whole, and the total never changes."""
    moved: list[int] = []

    def transfer(tx: Transaction, rng: random.Random) -> int:
        source, target = rng.sample([1, 2, 3], 2)
        amount = rng.randint(1, 20)
        balance = tx.execute("SELECT balance FROM acct WHERE id = ?", [source]).values()[0][0]
        if balance < amount:
            return 0
        tx.execute("UPDATE acct SET balance = balance - ? WHERE id = ?", [amount, source])
        tx.execute("UPDATE acct SET balance = balance + ? WHERE id = ?", [amount, target])
        return amount

    def run(seed: int) -> None:
        own = Client(settings, s3=aws.s3, sqs=aws.sqs)
        rng = random.Random(seed)
        for _ in range(3):
            moved.append(own.run_transaction(accounts, lambda tx: transfer(tx, rng), attempts=20))

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(moved) == 9
    assert values(client, accounts, "SELECT sum(balance), min(balance) >= 0 FROM acct") == [[300, 1]]


def test_hostile_previews_fail_alone_beside_other_clients_jobs(settings: Settings, aws: Any, client: Client,
                                                               worker: Worker) -> None:
    """A preview runs the client's SQL on a writable copy: it is still a job, under the same guard."""
    def preview(sql: str) -> Job:
        return Job.create("hostile", statement_sets=[(sql, [[]])], transaction=TxStep(None, preview=True))

    setup = Job.create("hostile", "CREATE TABLE t (n)")
    run_batch(worker, sqs_event(queued(aws.s3, settings.bucket, setup)))
    jobs = [preview("INSERT INTO _srdb_jobs VALUES ('forged', '{}', 0)"),
            preview("ATTACH DATABASE '/tmp/x.db' AS x"),
            preview("DELETE FROM _srdb_jobs"),
            preview("INSERT INTO t VALUES (1) RETURNING n"),
            Job.create("hostile", "INSERT INTO t VALUES (2)")]
    assert run_batch(worker, sqs_event(*(queued(aws.s3, settings.bucket, j) for j in jobs))) == {
        "batchItemFailures": []}
    errors = [client.status(j.job_id).error for j in jobs]
    assert [e["type"] if e else None for e in errors] == ["Forbidden", "Forbidden", "Forbidden", None, None]
    assert client.status(jobs[3].job_id).values() == [[1]]
    check = Job.create("hostile", "SELECT group_concat(n) FROM t")
    run_batch(worker, sqs_event(queued(aws.s3, settings.bucket, check)))
    assert client.status(check.job_id).values() == [["2"]]  # the preview's write stayed on its copy
