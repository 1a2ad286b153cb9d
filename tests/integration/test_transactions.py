"""Interactive transactions: previews on scratch copies, a commit validated against its base version."""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from producer.aio import AsyncClient
from producer.client import Client
from producer.transaction import AsyncTransaction, Transaction, TransactionClosed
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


def test_a_transaction_whose_database_was_dropped_and_made_again_commits_nothing(client: Client,
                                                                                accounts: str) -> None:
    tx = client.transaction(accounts)
    assert tx.execute("UPDATE acct SET balance = 0 WHERE id = 1").rowcount == 1
    client.drop(accounts)  # and made again, up to the same version number, with other data
    client.query(accounts, "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)", timeout=10)
    client.query(accounts, "INSERT INTO acct VALUES (1, 7), (2, 7), (3, 7)", timeout=10)
    assert client.history(accounts)[0].version == 2
    with pytest.raises(SerializationFailure, match="dropped and made again"):
        tx.execute("SELECT balance FROM acct WHERE id = 1")  # a preview on the base that is gone
    with pytest.raises(SerializationFailure, match="dropped and made again"):
        tx.commit()
    assert values(client, accounts, "SELECT balance FROM acct ORDER BY id") == [[7], [7], [7]]


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


def test_a_restore_or_a_load_under_a_transaction_fails_its_commit(client: Client, accounts: str,
                                                                  tmp_path: Any) -> None:
    tx = client.transaction(accounts)
    tx.execute("UPDATE acct SET balance = 1 WHERE id = 1")
    client.restore(accounts, 1)
    with pytest.raises(SerializationFailure, match="it is at 3"):
        tx.commit()
    csv = tmp_path / "more.csv"
    csv.write_text("id,balance\n7,7\n")
    tx = client.transaction(accounts)
    tx.execute("DELETE FROM acct")
    client.load(accounts, "acct", str(csv))
    with pytest.raises(SerializationFailure):
        tx.commit()
    assert values(client, accounts, "SELECT count(*) FROM acct") == [[1]]  # version 1 had no rows; the load's one


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


@pytest.mark.slow
def test_read_modify_write_transactions_conserve_the_total(settings: Settings, aws: Any, client: Client,
                                                          accounts: str) -> None:
    """Several clients move money between accounts at once, each transaction retried on a
    serialization failure: every committed move is whole, and the total never changes."""
    moved: list[int] = []

    def transfer(tx: Transaction, rng: random.Random) -> int:
        source, target = rng.sample([1, 2, 3], 2)
        amount = rng.randint(1, 20)
        # Read two balances, write back what was read, moved: a lost update would break the total.
        balances = dict(tx.execute("SELECT id, balance FROM acct WHERE id IN (?, ?)", [source, target]).values())
        if balances[source] < amount:
            return 0
        tx.execute("UPDATE acct SET balance = ? WHERE id = ?", [balances[source] - amount, source])
        tx.execute("UPDATE acct SET balance = ? WHERE id = ?", [balances[target] + amount, target])
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


Op = tuple[str, int]  # ("x" or "y", the amount to add to what the transaction read)


@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.tuples(st.sampled_from("xy"), st.integers(1, 9)), min_size=1, max_size=2),
       second=st.lists(st.tuples(st.sampled_from("xy"), st.integers(1, 9)), min_size=0, max_size=2),
       ends=st.tuples(st.booleans(), st.booleans()), order=st.randoms(use_true_random=False))
@pytest.mark.slow
def test_two_interleaved_transactions_end_as_some_serial_order(client: Client, serving: Worker, first: list[Op],
                                                               second: list[Op], ends: tuple[bool, bool],
                                                               order: random.Random) -> None:
    """Each transaction reads a key and writes back what it read plus an amount; their steps and
    their COMMIT or ROLLBACK interleave at random. What the database ends with, and what each
    committed transaction read, must be what running the committed ones one after the other gives."""
    database = f"ser{uuid.uuid4().hex[:12]}"  # a fresh database for each example, replays included
    client.query(database, "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)", timeout=10)
    client.query(database, "INSERT INTO kv VALUES ('x', 0), ('y', 0)", timeout=10)
    txs = [client.transaction(database, timeout=10), client.transaction(database, timeout=10)]
    plans: list[list[Op]] = [first, second]
    seen: list[list[int]] = [[], []]
    steps = [(i, step) for i, plan in enumerate(plans) for step in range(len(plan) + 1)]
    queue = {0: [s for s in steps if s[0] == 0], 1: [s for s in steps if s[0] == 1]}
    committed: list[int] = []
    while queue[0] or queue[1]:
        who = order.choice([i for i in (0, 1) if queue[i]])
        _, step = queue[who].pop(0)
        tx, plan = txs[who], plans[who]
        if step < len(plan):
            key, amount = plan[step]
            value = tx.execute("SELECT v FROM kv WHERE k = ?", [key]).values()[0][0]
            seen[who].append(value)
            tx.execute("UPDATE kv SET v = ? WHERE k = ?", [value + amount, key])
        elif ends[who]:
            try:
                tx.commit()
                committed.append(who)
            except SerializationFailure:
                pass
        else:
            tx.rollback()
    final = dict(client.query(database, "SELECT k, v FROM kv", timeout=10).values())

    def serial(order_of: list[int]) -> dict[str, int] | None:
        state = {"x": 0, "y": 0}
        for who in order_of:
            for (key, amount), value in zip(plans[who], seen[who], strict=True):
                if state[key] != value:
                    return None  # this order would have shown the transaction something else
                state[key] = value + amount
        return state

    assert final in [serial(committed), serial(committed[::-1])], (plans, seen, committed, final)


async def test_the_async_client_runs_transactions_too(settings: Settings, accounts: str) -> None:
    async with AsyncClient(settings) as client:
        async with client.transaction(accounts) as tx:
            await tx.execute("UPDATE acct SET balance = balance + 5 WHERE id = 3")
            assert (await tx.execute("SELECT balance FROM acct WHERE id = 3")).values() == [[105]]

        async def move(tx: AsyncTransaction) -> int:
            await tx.execute("UPDATE acct SET balance = balance - 5 WHERE id = 1")
            return 5

        assert await client.run_transaction(accounts, move) == 5
        later = client.transaction(accounts)
        await later.execute("DELETE FROM acct")
        await later.rollback()
        assert (await client.query(accounts, "SELECT sum(balance) FROM acct")).values() == [[300]]


def test_a_commit_reports_every_row_its_statements_changed(client: Client, accounts: str) -> None:
    tx = client.transaction(accounts)
    for i in range(5):
        tx.execute("INSERT INTO acct (balance) VALUES (?)", [i])
    assert tx.execute("UPDATE acct SET balance = balance + 1").rowcount == 8
    committed = tx.commit()
    assert committed is not None and committed.rowcount == 13
