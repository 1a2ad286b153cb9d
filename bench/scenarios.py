"""The benchmark scenarios. Each returns one JSON-ready dict: figures beside a baseline measured in
the same run, the request counts behind them, and nothing that passes or fails on time."""

from __future__ import annotations

import csv
import gzip
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    STATUS,
    Bench,
    RequestCounter,
    ServerMeter,
    peak_rss_mib,
    peak_rss_of,
    percentile,
    worker_outputs,
    worker_processes,
)
from bench.seed import SeedWorker
from producer.cli.load import typed
from producer.client import Client
from reaper.gc import Collector
from shared.job.result import JobResult, JobState
from shared.s3 import Bucket
from shared.snapshot.history import History
from shared.snapshot.store import SnapshotStore

MIB = 1024 * 1024


def _per_job(calls: Counter[str], jobs: int) -> dict[str, float]:
    by_service: Counter[str] = Counter()
    for name, count in calls.items():
        if not name.startswith(STATUS):  # a subset of s3's, counted apart for the cost figures
            by_service[name.split(".")[0]] += count
    return {service: round(count / jobs, 2) for service, count in sorted(by_service.items())}


def small_writes(bench: Bench, tmp: str, jobs: int = 1000, initial_mib: int = 0, clients: int = 50,
                 consumers: int = 0) -> dict[str, Any]:
    """Single-row INSERT jobs into a database of ``initial_mib``: srdb (batched, one commit per batch, only
    changed chunks uploaded) against the seed design (lock, whole file down and up, per job).

    ``consumers``: srdb as users run it — that many ``srdb worker`` processes on a FIFO job queue, batches of
    10 and no window (Lambda's FIFO event source); 0: one in-process worker, batches of 100 in a 0.2 s
    window. The seed design runs in-process either way.

    Closed loop: ``clients`` callers each submit a job and wait for it, until ``jobs`` are done. (An open
    loop that queues all jobs at once measures moto instead: its ReceiveMessage is quadratic in the
    queue's depth.)"""
    figures: dict[str, Any] = {"scenario": "small-writes", "jobs": jobs, "initial_db_mib": initial_mib,
                               "concurrent_clients": clients, "srdb_consumers": consumers or "in-process"}
    for mode in ("srdb", "seed"):
        processes = mode == "srdb" and consumers > 0
        run = bench.fresh(tmp, fifo=processes)
        client = run.client(wait_queue=mode == "srdb")
        handler: Any = run.worker() if mode == "srdb" else SeedWorker(run.settings, run.clients["s3"],
                                                                       run.clients["ec2"]).handle
        _initial_database(run, tmp, mode, initial_mib)
        logs = [Path(run.settings.cache_dir) / f"small-{i}.log" for i in range(consumers)]
        if processes:
            logs[0].parent.mkdir(parents=True, exist_ok=True)
        with (worker_outputs(run.settings, logs) if processes else
              run.draining(handler, batch_size=100 if mode == "srdb" else 10, window=0.2)):
            run.counter.reset()
            start = time.time()
            with ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(_insert_and_wait, [client] * jobs, range(jobs)))
        assert {r.state for r in results} == {JobState.SUCCEEDED}
        # From the first submit to the last result written: how fast the system ran the jobs,
        # not how fast this client happened to poll for them.
        elapsed = max(datetime.fromisoformat(r.finished_at or "").timestamp() for r in results) - start
        calls = run.counter.reset()
        figures[mode] = {"jobs_per_s": round(jobs / elapsed, 1), "seconds": round(elapsed, 2),
                         "requests_per_job": _per_job(calls, jobs)}
        figures.setdefault("_calls", {})[f"small-writes {initial_mib} MiB ({mode})"] = (calls, jobs)
    figures["speedup"] = round(figures["srdb"]["jobs_per_s"] / figures["seed"]["jobs_per_s"], 1)
    figures["target"] = ">= 10x the seed design"
    return figures


def many_databases(bench: Bench, tmp: str, jobs: int = 600, databases: int = 24, clients: int = 48,
                   workers: int = 3, lingers: tuple[float, ...] = (5.0, 1.0, 0.0),
                   backends: tuple[str, ...] = ("security-group", "s3")) -> dict[str, Any]:
    """Single-row writes spread over ``databases`` at once by ``clients`` closed-loop callers, drained by
    ``workers`` workers (each its own keeper, as concurrent Lambda containers), for each lock backend:
    locks kept between batches (``lock_linger`` 5 s, the default, and 1 s) beside given back after every
    batch (``lock_linger`` 0, srdb before #11) in the same run. Under ``--aws-network`` every lock call pays
    EC2's round trips and throttle. Each database's row count is checked: every job exactly once."""
    figures: dict[str, Any] = {"scenario": "many-databases", "jobs": jobs, "databases": databases,
                               "concurrent_clients": clients, "workers": workers}
    names = [f"m{d}" for d in range(databases)]
    for backend in backends:
        for linger in lingers:
            run = bench.fresh(tmp, lock_backend=backend, lock_linger=linger)
            pool_workers = [run.worker(cache_dir=f"{run.settings.cache_dir}/w{i}") for i in range(workers)]
            with run.draining(pool_workers, batch_size=100, window=0.2):
                calls, elapsed = writes_over(run.client(wait_queue=True), names, jobs, clients, run.counter)
            ec2 = {k.split(".")[1]: v for k, v in calls.items() if k.startswith("ec2.")}
            figures[f"{backend}, linger {linger:g}s"] = {
                "writes_per_s": round(jobs / elapsed, 1), "seconds": round(elapsed, 2),
                "kept_locks_reused": sum(w.locks.reused for w in pool_workers),
                "requests_per_job": _per_job(calls, jobs), "ec2_calls": ec2}
            figures.setdefault("_calls", {})[f"many-databases ({backend}, linger {linger:g}s)"] = (calls, jobs)
    figures["target"] = ">= 50 writes/s with the default lock under EC2's throttle, the S3 lease at least as much"
    return figures


def writes_over(client: Client, names: list[str], jobs: int, clients: int,
                 counter: RequestCounter, meter: ServerMeter | None = None) -> tuple[Counter[str], float]:
    """``jobs`` single-row INSERTs over the databases ``names``, round robin, by ``clients`` callers; the
    requests they made and the seconds from the first submit to the last result. Checks that each
    database holds exactly the rows sent to it (every job once). ``meter`` measures the writes alone."""
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda db: client.query(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", timeout=600),
                      names))
        counter.reset()
        if meter is not None:
            meter.start()
        start = time.time()
        results = list(pool.map(lambda i: client.wait(client.submit(
            names[i % len(names)], "INSERT INTO t (v) VALUES (?)", [f"row {i}"]), 600), range(jobs)))
        if meter is not None:
            meter.stop()
        elapsed = max(datetime.fromisoformat(r.finished_at or "").timestamp() for r in results) - start
        calls = counter.reset()
        counts = list(pool.map(lambda db: client.query(db, "SELECT count(*) FROM t", timeout=600).values(), names))
    assert {r.state for r in results} == {JobState.SUCCEEDED}
    expected = [[[len(range(d, jobs, len(names)))]] for d in range(len(names))]
    assert counts == expected, "a job ran more or less than once"
    return calls, elapsed


def _insert_and_wait(client: Client, index: int) -> JobResult:
    return client.wait(client.submit("w", "INSERT INTO t (v) VALUES (?)", [f"row {index}"]), 600)


def _initial_database(run: Bench, tmp: str, mode: str, mib: int) -> None:
    """The table ``t`` in database ``w``, with ``mib`` MiB of rows, stored the way each design stores it."""
    path = Path(tmp) / f"initial-{mode}-{mib}.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with conn:
        conn.executemany("INSERT INTO t (v) VALUES (?)", ([f"{i:08d}" * 50] for i in range(mib * 2400)))
    conn.close()
    if mode == "seed":
        run.clients["s3"].put_object(Bucket=run.settings.bucket, Key="seed/w.sqlite", Body=path.read_bytes())
        return
    store = SnapshotStore(Bucket(run.clients["s3"], run.settings.bucket), f"{tmp}/initial-{mib}",
                          chunk_size=run.settings.chunk_size)
    with store.writer("w") as writer:
        writer.path.write_bytes(path.read_bytes())
        writer.commit([])


def etl(bench: Bench, tmp: str, rows: int = 1_000_000, workers: int = 2,
        worker_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """``srdb load`` (COPY) of a generated 5-column CSV — and of the same rows gzipped, and as JSON Lines —
    against plain sqlite3 reading the CSV with the csv module and inserting it with executemany."""
    path = Path(tmp) / "etl.csv"
    rng = random.Random(3)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "name", "amount", "day", "zip"])
        for i in range(rows):
            writer.writerow([i, f"name-{rng.randrange(10_000)}", round(rng.uniform(0, 1000), 2),
                             f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}", f"{rng.randrange(100_000):05d}"])
    zipped = Path(tmp) / "etl.csv.gz"
    zipped.write_bytes(gzip.compress(path.read_bytes(), compresslevel=6))
    lines = Path(tmp) / "etl.jsonl"
    with open(path, newline="") as f, open(lines, "w") as out:
        reader = csv.reader(f)
        header = next(reader)
        for row in reader:
            values = [v if k == "zip" else typed(v) for k, v in zip(header, row, strict=True)]
            out.write(json.dumps(dict(zip(header, values, strict=True))) + "\n")
    sources = [("csv", path), ("csv.gz", zipped), ("jsonl", lines)]
    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"zip": __import__("pyarrow").string()}))
        pq.write_table(table, Path(tmp) / "etl.parquet")
        sources.append(("parquet", Path(tmp) / "etl.parquet"))
    except ImportError:
        pass  # Parquet is the optional extra srdb[parquet]
    plain_db = Path(tmp) / "plain.sqlite"
    start = time.monotonic()
    conn = sqlite3.connect(plain_db)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        conn.execute(f"CREATE TABLE t ({', '.join(header)})")
        with conn:
            conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(header))})",
                             ([typed(v) for v in row] for row in reader))
    conn.close()
    plain = time.monotonic() - start
    run = bench.fresh(tmp, max_job_timeout=100.0, worker_timeout=115.0)  # a load may take the whole budget
    client = run.client()
    loads: dict[str, Any] = {}
    with worker_processes(run.settings, workers, *worker_args) as processes:
        run.counter.reset()
        for name, source in sources:
            report = client.load("etl", f"t_{name.replace('.', '_')}", str(source), timeout=1800)
            check = client.query("etl", f"SELECT count(*), sum(id) FROM t_{name.replace('.', '_')}",
                                 timeout=120).values()
            assert check == [[rows, rows * (rows - 1) // 2]], check
            loads[name] = {"rows_per_s": round(report.rows_per_second), "seconds": round(report.seconds, 2),
                           "ratio_to_plain": round(report.rows_per_second / (rows / plain), 3),
                           "file_mib": round(source.stat().st_size / MIB, 1)}
        worker_rss = max((peak_rss_of(p.pid) for p in processes), default=0.0)
    client_rss = peak_rss_mib()
    calls = run.counter.reset()
    return {"scenario": "etl", "_calls": {"etl (per load)": (calls, len(sources))}, "rows": rows,
            "srdb_load": loads, "client_peak_rss_mib": round(client_rss, 1),
            "worker_peak_rss_mib": round(worker_rss, 1),
            "plain_sqlite_executemany": {"rows_per_s": round(rows / plain), "seconds": round(plain, 2)},
            "target": ">= 0.5 of plain for each format",
            "note": "one load job each; the worker streams the object into a TEMP table, learns the types, then "
                    "INSERT ... SELECT; client RSS is this process (it generated the files too)"}


def _database_of(path: Path, mib: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
    with conn:
        conn.executemany("INSERT INTO t (b) VALUES (randomblob(4000))", ([] for _ in range(mib * 250)))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def write_cost(bench: Bench, tmp: str, sizes: tuple[int, ...] = (4, 256), repeats: int = 5) -> dict[str, Any]:
    """One single-row INSERT into a warm worker's database of each size: bytes, requests, time."""
    figures: dict[str, Any] = {"scenario": "write-cost", "repeats": repeats}
    for mib in sizes:
        run = bench.fresh(tmp)
        seed_store = SnapshotStore(Bucket(run.clients["s3"], run.settings.bucket), f"{tmp}/seeding-{mib}",
                                   chunk_size=run.settings.chunk_size)
        with seed_store.writer(f"db{mib}") as writer:
            _database_of(writer.path, mib)
            writer.commit([])
        worker = run.worker()
        client = run.client()
        with run.draining(worker):
            client.wait(client.submit(f"db{mib}", "INSERT INTO t (b) VALUES (x'00')"), 600)  # warm the worker
            times, ups, downs, calls = [], [], [], Counter[str]()
            for _ in range(repeats):
                worker.store.stats.bytes_up = worker.store.stats.bytes_down = 0
                run.counter.reset()
                result = client.wait(client.submit(f"db{mib}", "INSERT INTO t (b) VALUES (x'01')"), 600)
                times.append(result.timings["total_ms"])
                ups.append(worker.store.stats.bytes_up)
                downs.append(worker.store.stats.bytes_down)
                calls += run.counter.reset()
        figures.setdefault("_calls", {})[f"write-cost ({mib} MiB)"] = (calls, repeats)
        figures[f"{mib}MiB"] = {
            "file_mib": round(seed_store.local_path(f"db{mib}").stat().st_size / MIB, 1),
            "bytes_uploaded": int(statistics.median(ups)), "bytes_downloaded": int(statistics.median(downs)),
            "s3_requests_per_write": round(sum(v for k, v in calls.items() if k.startswith("s3.")) / repeats, 1),
            "submit_to_result_ms_median": round(statistics.median(times), 1)}
    small, large = figures[f"{sizes[0]}MiB"], figures[f"{sizes[-1]}MiB"]
    figures["time_ratio_large_to_small"] = round(large["submit_to_result_ms_median"]
                                                 / small["submit_to_result_ms_median"], 2)
    figures["target"] = "<= 2 MiB uploaded on the large database, <= 2x the small database's time"
    return figures


def warm_read(bench: Bench, tmp: str, reads: int = 200) -> dict[str, Any]:
    """A point SELECT on an unchanged database: bytes downloaded and submit-to-result latency."""
    run = bench.fresh(tmp)
    client = run.client()
    worker = run.worker()
    with run.draining(worker):
        client.query("r", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", timeout=60)
        client.submit_many("r", "INSERT INTO t (v) VALUES (?)", [[f"v{i}"] for i in range(10_000)])
        client.query("r", "SELECT count(*) FROM t", timeout=60)  # the worker now holds the snapshot
        worker.store.stats.bytes_down = 0
        run.counter.reset()
        latencies = []
        for i in range(reads):
            start = time.monotonic()
            client.query("r", "SELECT v FROM t WHERE id = ?", [1 + i % 10_000], timeout=60)
            latencies.append((time.monotonic() - start) * 1000)
    calls = run.counter.reset()
    return {"scenario": "warm-read", "_calls": {"warm-read": (calls, reads)}, "reads": reads,
            "bytes_downloaded": worker.store.stats.bytes_down,
            "latency_ms": {"p50": round(percentile(latencies, 0.5), 1), "p95": round(percentile(latencies, 0.95), 1)},
            "requests_per_job": _per_job(calls, reads),
            "target": "0 bytes downloaded, p50 < 100 ms"}


def transactions(bench: Bench, tmp: str, count: int = 50, mib: int = 8) -> dict[str, Any]:
    """Read-modify-write transactions (SELECT, two UPDATEs, COMMIT) on a database of ``mib``: the jobs,
    requests and time of each statement (a preview) and of each commit, beside one autocommit job."""
    run = bench.fresh(tmp)
    client, worker = run.client(), run.worker()
    seed_store = SnapshotStore(Bucket(run.clients["s3"], run.settings.bucket), f"{tmp}/seeding-tx",
                               chunk_size=run.settings.chunk_size)
    with seed_store.writer("tx") as writer:
        _database_of(writer.path, mib)
        conn = sqlite3.connect(writer.path)
        conn.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER)")
        with conn:
            conn.executemany("INSERT INTO acct VALUES (?, 1000)", [[i] for i in range(1, 11)])
        conn.close()
        writer.commit([])
    statement_calls, commit_calls, single_calls = Counter[str](), Counter[str](), Counter[str]()
    statement_ms: list[float] = []
    commit_ms: list[float] = []
    single_ms: list[float] = []
    with run.draining(worker):
        client.query("tx", "SELECT count(*) FROM acct", timeout=600)  # warm the worker
        for i in range(count):
            source, target = 1 + i % 10, 1 + (i + 1) % 10
            run.counter.reset()
            tx = client.transaction("tx", timeout=600)
            for sql, params in (("SELECT balance FROM acct WHERE id IN (?, ?)", [source, target]),
                                ("UPDATE acct SET balance = balance - 1 WHERE id = ?", [source]),
                                ("UPDATE acct SET balance = balance + 1 WHERE id = ?", [target])):
                started = time.monotonic()
                tx.execute(sql, params)
                statement_ms.append((time.monotonic() - started) * 1000)
            statement_calls += run.counter.reset()
            started = time.monotonic()
            tx.commit()
            commit_ms.append((time.monotonic() - started) * 1000)
            commit_calls += run.counter.reset()
            started = time.monotonic()
            client.query("tx", "UPDATE acct SET balance = balance WHERE id = ?", [source], timeout=600)
            single_ms.append((time.monotonic() - started) * 1000)
            single_calls += run.counter.reset()
    return {"scenario": "transactions", "transactions": count, "database_mib": mib,
            "per_statement": {"jobs": 1, "requests": _per_job(statement_calls, 3 * count),
                              "ms_p50": round(percentile(statement_ms, 0.5), 1)},
            "per_commit": {"jobs": 1, "requests": _per_job(commit_calls, count),
                           "ms_p50": round(percentile(commit_ms, 0.5), 1)},
            "autocommit_write_baseline": {"requests": _per_job(single_calls, count),
                                          "ms_p50": round(percentile(single_ms, 0.5), 1)},
            "_calls": {"transaction statement": (statement_calls, 3 * count),
                       "transaction commit": (commit_calls, count)}}


def storage(bench: Bench, tmp: str, mib: int = 32) -> dict[str, Any]:
    """A delete-heavy workload, then bytes stored in S3 per byte of the database: before garbage
    collection, after it (retention 0), and after VACUUM and another collection."""
    run = bench.fresh(tmp)
    client, worker = run.client(), run.worker()
    bucket = Bucket(run.clients["s3"], run.settings.bucket)
    grace = 3600.0
    # The collector's clock runs a grace period ahead per pass, so the bench need not wait them out.
    ahead = [0.0]
    collector = Collector(bucket, retention=0, grace=grace, now=lambda: time.time() + ahead[0])

    def collect() -> None:
        for _ in range(2):  # the first pass moves dead chunks to the trash, the second empties it
            ahead[0] += grace + 60
            collector.collect()

    def stored() -> int:
        return sum(o.size for o in bucket.objects("db/s/"))

    def stage() -> dict[str, Any]:
        current = client.history("s", limit=1)[0]
        return {"versions": len(History(bucket).versions("s")), "file_mib": round(current.file_size / MIB, 2),
                "stored_mib": round(stored() / MIB, 2), "stored_per_file_byte": round(stored() / current.file_size, 2)}

    figures: dict[str, Any] = {"scenario": "storage", "mib": mib}
    with run.draining(worker):
        client.query("s", "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)", timeout=600)
        fill = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 256) "
                "INSERT INTO t (b) SELECT randomblob(4000) FROM c")
        for _ in range(mib):
            client.query("s", fill, timeout=600)
        for step in range(9, 0, -1):  # delete-heavy: nine jobs leave one row in ten, and update some
            client.query("s", f"DELETE FROM t WHERE id % 10 = {step}", timeout=600)
            client.query("s", "UPDATE t SET b = randomblob(4000) WHERE id % 100 = 0", timeout=600)
        figures["before_gc"] = stage()
        collect()
        figures["after_gc"] = stage()
        client.query("s", "VACUUM", timeout=600)
        collect()
        figures["after_vacuum_and_gc"] = stage()
    figures["target"] = "stored <= 1.5x the live database after GC and VACUUM with retention 0"
    return figures


# AWS list prices (us-east-1, 2026): S3 Standard PUT/COPY/POST/LIST $0.005 per 1,000 and GET $0.0004
# per 1,000; SQS standard $0.40 per million requests (each 64 KiB of a message is one request);
# EC2 security-group calls are free. Lambda is billed per batch, not per job, and is left out.
PRICES = {"s3_put_per_1000": 0.005, "s3_get_per_1000": 0.0004, "sqs_per_million": 0.40,
          # S3 Express One Zone (us-east-1), for the requests a status bucket takes: its per-GB upload and
          # retrieval fees add about $0.01 per million jobs of 1 KB documents and are left out.
          "s3_express_put_per_1000": 0.00113, "s3_express_get_per_1000": 0.00003}
_GETS = {"GetObject", "HeadObject"}


def cost(calls_by_scenario: dict[str, tuple[Counter[str], int]]) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": "cost", "prices_usd": PRICES}
    for name, (calls, jobs) in calls_by_scenario.items():
        s3_get, s3_put = _gets_and_puts(calls, "s3")
        x_get, x_put = _gets_and_puts(calls, STATUS)
        sqs = sum(v for k, v in calls.items() if k.startswith("sqs."))

        out[name] = {"s3_put_per_job": round(s3_put / jobs, 2), "s3_get_per_job": round(s3_get / jobs, 2),
                     "sqs_per_job": round(sqs / jobs, 2), "usd_per_million_jobs": _usd(jobs, sqs, s3_put, s3_get),
                     "usd_per_million_jobs_status_in_s3_express": _usd(jobs, sqs, s3_put - x_put, s3_get - x_get,
                                                                       x_put, x_get)}
    return out


def _gets_and_puts(calls: Counter[str], service: str) -> tuple[int, int]:
    """The GET-priced and the PUT-priced requests counted under ``service``."""
    gets = sum(v for k, v in calls.items() if k.startswith(f"{service}.") and k.split(".")[1] in _GETS)
    return gets, sum(v for k, v in calls.items() if k.startswith(f"{service}.")) - gets


def _usd(jobs: int, sqs: float, put: float, get: float, xput: float = 0.0, xget: float = 0.0) -> float:
    """Dollars per million jobs: S3 Standard requests, S3 Express One Zone requests, SQS requests."""
    return round(1e6 / jobs * (put / 1000 * PRICES["s3_put_per_1000"] + get / 1000 * PRICES["s3_get_per_1000"]
                               + xput / 1000 * PRICES["s3_express_put_per_1000"]
                               + xget / 1000 * PRICES["s3_express_get_per_1000"]
                               + sqs / 1e6 * PRICES["sqs_per_million"]), 2)


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="srdb-bench-")
