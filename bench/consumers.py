"""The consumers bench: what users run — several ``srdb worker`` processes on one queue — writing many
databases and one hot database, and one client's sequential writes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.awsproxy import ROUND_TRIP
from bench.harness import Bench, ServerMeter, percentile, worker_outputs
from bench.scenarios import writes_over

# One write's path, step by step, each priced as the network model prices it (bench/awsproxy.py): what the
# model's round trips add up to for one sequential write, the floor its latency is set beside. Requests that
# run side by side count once: the status document, the grants and (a FIFO queue's job) the current
# manifest; the result and the history entry.
WRITE_PATH = (("the client writes the QUEUED document", "s3.write"), ("the client sends the message", "sqs"),
              ("a worker receives it", "sqs"),
              ("the worker reads the document (and the grants, and the current manifest)", "s3.read"),
              ("the worker uploads the changed chunk", "s3.write"),
              ("the worker writes the manifest, conditionally", "s3.write"),
              ("the worker writes the result (and the history entry)", "s3.write"),
              ("the client's poll reads the result", "s3.read"))


def write_floor() -> float:
    """The seconds the model's round trips on one write's path add up to (WRITE_PATH)."""
    return sum(ROUND_TRIP[kind] for _, kind in WRITE_PATH)


def consumers(bench: Bench, tmp: str, per_database: int = 25, databases: int = 24, hot_jobs: int = 150,
              clients: int = 48, counts: tuple[int, ...] = (1, 2, 3), sequential: int = 30,
              queues: tuple[str, ...] = ("standard", "fifo")) -> dict[str, Any]:
    """What users run: ``srdb worker`` processes (each its own cache, as Lambda containers), batches of 10
    and no window (Lambda's defaults), the default lock (a security group, under EC2's throttle with
    --aws-network). For 1, 2 and 3 consumers: ``databases`` x ``per_database`` single-row writes from
    ``clients`` threads, then ``hot_jobs`` writes to one database; writes/s, and each batch's LockWait (the
    workers' own EMF metrics). Then one client's ``sequential`` writes on two consumers: p50 and p99 from
    submit to result. Every database's row count is checked: every job exactly once. All of it on a
    standard job queue (every write takes the lock) and on a FIFO queue (a database's writes are one
    message group, and take no lock: shared/job/routing.py), side by side. Beside each rate: the moto
    server's CPU share while it was measured (near 1.0, the scenario waited on moto, which serves one request
    at a time) and, on the network model, the requests each write took from every process."""
    figures: dict[str, Any] = {"scenario": "consumers", "databases": databases, "per_database": per_database,
                               "hot_jobs": hot_jobs, "clients": clients, "batch_size": 10, "window_s": 0}
    names = [f"c{d}" for d in range(databases)]
    for queue in queues:
        fifo = queue == "fifo"
        for count in counts:
            run = bench.fresh(tmp, fifo=fifo)
            logs = [Path(run.settings.cache_dir) / f"worker-{i}.log" for i in range(count)]
            for log in logs:
                log.parent.mkdir(parents=True, exist_ok=True)
            spread_load, hot_load = run.meter(), run.meter()
            with worker_outputs(run.settings, logs) as _:
                _, spread = writes_over(run.client(wait_queue=True), names, databases * per_database, clients,
                                         run.counter, spread_load)
                _, hot = writes_over(run.client(wait_queue=True), ["hot"], hot_jobs, clients, run.counter, hot_load)
            waits = sorted(_metric(logs, "LockWait"))
            figures[f"{queue} queue, {count} consumer{'s' if count > 1 else ''}"] = {
                "writes_per_s": round(databases * per_database / spread, 1),
                "hot_database_writes_per_s": round(hot_jobs / hot, 1),
                **_load(spread_load, databases * per_database, ""), **_load(hot_load, hot_jobs, "hot_database_"),
                "lock_wait_ms_p50": round(percentile(waits, 0.5), 1) if waits else 0.0,
                "lock_wait_ms_p99": round(percentile(waits, 0.99), 1) if waits else 0.0,
                "batches": len(waits)}
        run = bench.fresh(tmp, fifo=fifo)
        logs = [Path(run.settings.cache_dir) / f"seq-{i}.log" for i in range(2)]
        logs[0].parent.mkdir(parents=True, exist_ok=True)
        with worker_outputs(run.settings, logs) as _:
            client = run.client()
            client.query("seq", "CREATE TABLE t (v TEXT)", timeout=120)
            took = []
            for i in range(sequential):
                started = time.monotonic()
                client.query("seq", "INSERT INTO t VALUES (?)", [f"row {i}"], timeout=120)
                took.append(time.monotonic() - started)
            assert client.query("seq", "SELECT count(*) FROM t", timeout=120).values() == [[sequential]]
        took.sort()
        floor = write_floor()
        figures[f"{queue} queue, one client's sequential writes, 2 consumers"] = {
            "p50_s": round(percentile(took, 0.5), 3), "p99_s": round(percentile(took, 0.99), 3),
            "max_s": round(took[-1], 3), "model_round_trips_s": round(floor, 3),
            "p50_over_round_trips": round(percentile(took, 0.5) / floor, 2)}
    figures["target"] = (">= 50 writes/s for 24 databases with 3 consumers; never slower with 3 than with 1; "
                         "LockWait p99 <= 2 s; sequential p99 <= 1 s")
    return figures


def _load(meter: ServerMeter, writes: int, prefix: str) -> dict[str, float]:
    """The moto server's CPU share over the writes and the requests each write took, from every process."""
    figures = {}
    if meter.cpu_share is not None:
        figures[f"{prefix}moto_cpu_share"] = meter.cpu_share
    if meter.requests is not None:
        figures[f"{prefix}requests_per_write"] = round(meter.requests / writes, 1)
    return figures


def _metric(logs: list[Path], name: str) -> list[float]:
    """Every value of EMF metric ``name`` the workers printed."""
    values: list[float] = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if f'"{name}"' not in line:
                continue
            try:
                value = json.loads(line).get(name)
            except ValueError:
                continue
            values += [float(v) for v in (value if isinstance(value, list) else [value])]
    return values
