"""The soak, bounded: mixed load while workers are killed with SIGKILL; nothing lost, nothing doubled."""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from bench.soak import run_soak
from producer.client import Client
from producer.local.stack import LocalStack
from producer.transaction import Transaction

pytestmark = pytest.mark.e2e


def test_random_worker_kills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    report = run_soak(12, workers=3, clients=2, kill_every=2.5, folder=tmp_path,
                      prefix="soaktest")
    assert report.kills >= 3
    assert report.submitted > 50
    assert (report.lost, report.duplicated, report.unfinished, report.failed) == (0, 0, 0, 0)
    writes = report.submitted // 2
    assert report.counter == writes  # every write's increment, exactly once


def test_transfers_in_transactions_under_worker_kills_apply_exactly_once(tmp_path: Path) -> None:
    """Clients move money in read-modify-write transactions (retried on SerializationFailure) while
    worker processes are killed and their messages redelivered: the total is conserved and every
    transfer a client saw commit is in the log exactly once, and no other."""
    rng = random.Random(7)
    stack = LocalStack(tmp_path, workers=3, visibility_timeout=6, lock_ttl=5, prefix="txsoak")
    settings = stack.start()
    try:
        admin = Client(settings)
        admin.query("bank", "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)", timeout=60)
        admin.query("bank", "CREATE TABLE transfers (id TEXT PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER)",
                    timeout=60)
        admin.query("bank", "INSERT INTO acct VALUES (1, 1000), (2, 1000), (3, 1000)", timeout=60)
        committed: list[tuple[str, int, int, int]] = []
        lock = threading.Lock()

        def transfer(tx: Transaction, seed: int) -> tuple[str, int, int, int]:
            local = random.Random(seed)
            src, dst = local.sample([1, 2, 3], 2)
            amount = local.randint(1, 50)
            balances = dict(tx.execute("SELECT id, balance FROM acct WHERE id IN (?, ?)", [src, dst]).values())
            # Written back as read, moved: a lost update would break the total.
            tx.execute("UPDATE acct SET balance = ? WHERE id = ?", [balances[src] - amount, src])
            tx.execute("UPDATE acct SET balance = ? WHERE id = ?", [balances[dst] + amount, dst])
            transfer_id = uuid.UUID(int=local.getrandbits(128)).hex
            tx.execute("INSERT INTO transfers VALUES (?, ?, ?, ?)", [transfer_id, src, dst, amount])
            return transfer_id, src, dst, amount

        def client_loop(index: int) -> None:
            client = Client(settings)
            for n in range(4):
                base = index * 100 + n
                done = client.run_transaction("bank", lambda tx, base=base: transfer(tx, base + rng.random()),
                                              attempts=30, timeout=120)
                with lock:
                    committed.append(done)

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        kills = 0
        while any(t.is_alive() for t in threads):
            time.sleep(2.0)
            victim = rng.randrange(len(stack.processes))
            stack.processes[victim].send_signal(signal.SIGKILL)
            stack.processes[victim].wait()
            stack.processes[victim] = stack.spawn_worker(100 + kills)
            kills += 1
        for thread in threads:
            thread.join()
        assert kills >= 2 and len(committed) == 12
        logged = admin.query("bank", "SELECT id, src, dst, amount FROM transfers ORDER BY id", timeout=60).values()
        assert sorted(tuple(row) for row in logged) == sorted(committed)  # each once, and only those
        balances = dict(admin.query("bank", "SELECT id, balance FROM acct", timeout=60).values())
        assert sum(balances.values()) == 3000
        for account in (1, 2, 3):
            moved = sum(a for _, s, _, a in committed if s == account) - sum(a for _, _, d, a in committed
                                                                               if d == account)
            assert balances[account] == 1000 - moved
    finally:
        stack.stop()
