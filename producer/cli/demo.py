"""``srdb demo`` (what ``make demo`` runs): the main job of srdb on the local stack, start to finish.

It starts ``srdb local`` in a scratch folder, loads a generated CSV through the batch path,
runs a few writes and several concurrent reads, reads an older snapshot, prints each result
with its timings, and stops everything it started.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from producer.cli.load import load_csv
from producer.cli.output import summary, table
from producer.client import Client
from shared.job.result import JobResult, JobState
from shared.settings import Settings

ROWS = 20_000
REGIONS = ["north", "south", "east", "west", "central"]
READS = {
    "revenue by region": "SELECT region, count(*) AS orders, round(sum(amount), 2) AS revenue "
                         "FROM orders GROUP BY region ORDER BY revenue DESC",
    "top customers": "SELECT customer, count(*) AS orders, round(sum(amount), 2) AS spent "
                     "FROM orders GROUP BY customer ORDER BY spent DESC LIMIT 5",
    "largest orders": "SELECT id, customer, region, amount FROM orders ORDER BY amount DESC LIMIT 5",
    "orders per month": "SELECT substr(ordered_at, 1, 7) AS month, count(*) AS orders FROM orders "
                        "GROUP BY month ORDER BY month LIMIT 6",
    "region targets": "SELECT r.name, r.target, round(sum(o.amount), 2) AS revenue, "
                      "round(100.0 * sum(o.amount) / r.target, 1) AS pct FROM regions r "
                      "JOIN orders o ON o.region = r.name GROUP BY r.name ORDER BY pct DESC",
}
WRITES = [
    ("create regions", "CREATE TABLE IF NOT EXISTS regions (name TEXT PRIMARY KEY, target REAL NOT NULL)", None),
    ("set targets", "INSERT OR REPLACE INTO regions VALUES ('north', 1000000), ('south', 950000), "
                    "('east', 1050000), ('west', 900000), ('central', 1100000)", None),
    ("refund cancelled", "UPDATE orders SET amount = 0 WHERE id % 997 = 0", None),
    ("index customers", "CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer)", None),
]


def generate_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "customer", "region", "amount", "ordered_at"])
        for i in range(1, rows + 1):
            writer.writerow([i, f"customer-{rng.randint(1, 500):03d}", rng.choice(REGIONS),
                             round(rng.uniform(5, 500), 2), f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"])


def start_local(folder: Path) -> subprocess.Popen[str]:
    # --ephemeral: the demo's folder is a scratch one, so there is nothing to keep and nothing to save at the end.
    process = subprocess.Popen([sys.executable, "-m", "producer.cli", "local", "--workers", "2", "--ephemeral"],
                               cwd=folder,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "ready" in line:
            print(line.rstrip())
            return process
    raise RuntimeError(f"srdb local exited with {process.wait()} before it was ready")


def show(title: str, result: JobResult) -> None:
    print(f"\n== {title}")
    if result.state is not JobState.SUCCEEDED:
        print(f"{result.state.value}: {result.error}")
        return
    if result.columns:
        print(table(result.columns, result.values()))
    print(summary(result))


def time_travel(client: Client, refunds: int) -> list[str]:
    """Read the snapshot from before the refunds (version ``refunds``), beside the current one."""
    history = client.history("shop", limit=3)
    print(f"\n== time travel: newest snapshots {', '.join(f'v{m.version}' for m in history)}")
    sql = "SELECT count(*) AS refunded FROM orders WHERE amount = 0"
    before = client.wait(client.submit("shop", sql, as_of=refunds - 1), 60)
    show(f"read as of v{refunds - 1}, before the refunds", before)
    show("read now", client.wait(client.submit("shop", sql), 60))
    return [] if before.state is JobState.SUCCEEDED else ["time travel"]


def run_demo(rows: int = ROWS) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="srdb-demo-") as scratch:
        folder = Path(scratch)
        local = start_local(folder)
        try:
            client = Client(Settings.load(environ={}, cwd=folder))
            csv_path = folder / "orders.csv"
            generate_csv(csv_path, rows)
            print(f"\n== batch load: {rows:,} generated rows from {csv_path.name}")
            report = load_csv(client, "shop", "orders", csv_path)
            print(f"loaded {report.rows:,} rows in one load job, {report.seconds:.1f}s, "
                  f"{report.rows_per_second:,.0f} rows/s")
            versions = {}
            for title, sql, params in WRITES:
                result = client.wait(client.submit("shop", sql, params), 60)
                show(f"write: {title}", result)
                versions[title] = result.version or 0
            print(f"\n== {len(READS)} reads submitted at once")
            ids = {title: client.submit("shop", sql) for title, sql in READS.items()}
            with ThreadPoolExecutor(len(ids)) as pool:
                results = dict(zip(ids, pool.map(lambda j: client.wait(j, 60), ids.values()), strict=True))
            for title, result in results.items():
                show(f"read: {title}", result)
            failed = [t for t, r in results.items() if r.state is not JobState.SUCCEEDED]
            failed += time_travel(client, versions["refund cancelled"])
        finally:
            local.terminate()
            try:
                local.wait(timeout=60)
            except subprocess.TimeoutExpired:  # never leave a stack running behind the demo
                local.kill()
                local.wait()
    print(f"\nstopped the local stack; demo took {time.monotonic() - started:.1f}s")
    return 1 if failed else 0
