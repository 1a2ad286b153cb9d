"""``make soak``: mixed load on the local stack while workers are killed at random.

Clients keep submitting writes (each appends its own job id to a log table and bumps a
counter) and reads; every few seconds a random ``srdb worker`` process is killed with SIGKILL
and a new one started. At the end every job is waited for, and the log is checked: a job that
succeeded but is missing from the log is lost, a job id logged twice is duplicated. Both must
be 0. A job that kept failing (its deliveries kept meeting killed workers) waits in the
dead-letter queue, as it would in production: the soak redrives it once, as an operator
would, and counts it. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from producer.cli.dlq import DeadLetters
from producer.client import Client
from producer.local.stack import LocalStack
from shared.errors import WaitTimeout
from shared.job.result import JobResult, JobState

WRITE = [("INSERT INTO log (job_id) VALUES (?)", None), ("UPDATE counter SET n = n + 1", None)]


@dataclass
class SoakReport:
    seconds: float
    workers: int
    kills: int
    submitted: int
    succeeded: int
    failed: int
    unfinished: int
    dead_lettered: int
    lost: int
    duplicated: int
    counter: int
    jobs_per_second: float


def run_soak(seconds: float, *, workers: int = 3, clients: int = 3, kill_every: float = 3.0,
             seed: int = 1, folder: Path | None = None, prefix: str = "soak") -> SoakReport:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="srdb-soak-") as scratch:
        stack = LocalStack(folder or Path(scratch), workers=workers, visibility_timeout=12, lock_ttl=8,
                           prefix=prefix)
        settings = stack.start()
        try:
            admin = Client(settings)
            admin.query("soak", "CREATE TABLE log (job_id TEXT NOT NULL)", timeout=60)
            admin.query("soak", "CREATE TABLE counter (n INTEGER NOT NULL)", timeout=60)
            admin.query("soak", "INSERT INTO counter VALUES (0)", timeout=60)
            stop = threading.Event()
            writes: list[str] = []
            reads: list[str] = []
            lock = threading.Lock()

            def load(index: int) -> None:
                client = Client(settings)
                while not stop.is_set():
                    job_id = f"soak-{index}-{len(writes)}-{rng.getrandbits(32):08x}"
                    client.submit_statements("soak", [(WRITE[0][0], [job_id]), WRITE[1]], job_id=job_id)
                    read = client.submit("soak", "SELECT n, (SELECT count(*) FROM log) FROM counter")
                    with lock:
                        writes.append(job_id)
                        reads.append(read)
                    stop.wait(0.02)

            kills = 0
            started = time.monotonic()
            with ThreadPoolExecutor(clients) as pool:
                for index in range(clients):
                    pool.submit(load, index)
                while time.monotonic() - started < seconds:
                    time.sleep(min(kill_every, max(0.0, seconds - (time.monotonic() - started))))
                    victim = rng.randrange(len(stack.processes))
                    stack.processes[victim].send_signal(signal.SIGKILL)
                    stack.processes[victim].wait()
                    stack.processes[victim] = stack.spawn_worker(100 + kills)
                    kills += 1
                stop.set()
            elapsed = time.monotonic() - started
            finals = _settle(admin, writes + reads, 60 + 2 * settings.lock_ttl)
            dead = DeadLetters(admin.sqs, admin.store, settings.queue_url, settings.dlq_url).redrive()
            if dead:
                finals = _settle(admin, writes + reads, 120)
            states = [r.state for r in finals]
            logged = admin.query("soak", "SELECT job_id, count(*) FROM log GROUP BY job_id", timeout=60)
            counts = {row[0]: row[1] for row in logged.values()}
            succeeded_writes = [j for j, r in zip(writes, finals, strict=False) if r.state is JobState.SUCCEEDED]
            counter = admin.query("soak", "SELECT n FROM counter", timeout=60).values()[0][0]
            return SoakReport(
                seconds=round(elapsed, 1), workers=workers, kills=kills, submitted=len(states),
                succeeded=states.count(JobState.SUCCEEDED), failed=states.count(JobState.FAILED),
                unfinished=sum(1 for s in states if not s.final), dead_lettered=len(dead),
                lost=sum(1 for j in succeeded_writes if counts.get(j, 0) == 0),
                duplicated=sum(1 for c in counts.values() if c > 1), counter=int(str(counter)),
                jobs_per_second=round(len(states) / elapsed, 1),
            )
        finally:
            stack.stop()


def _settle(client: Client, job_ids: list[str], timeout: float) -> list[JobResult]:
    """Wait for every job; one still queued at the end comes back as it is."""
    def settle(job_id: str) -> JobResult:
        try:
            return client.wait(job_id, timeout)
        except WaitTimeout:
            return client.status(job_id)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(settle, job_ids))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=3.0)
    args = parser.parse_args()
    report = run_soak(args.seconds, workers=args.workers, clients=args.clients, kill_every=args.kill_every)
    print(json.dumps(asdict(report)))
    return 0 if report.lost == report.duplicated == report.unfinished == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
