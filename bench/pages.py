"""Pages on demand (worker/pages.py, worker/page_writes.py): what a read or a one-row insert costs a worker with
an empty cache — a new Lambda container — against the same job on a warm one, and against a worker that keeps
whole local copies (``SRDB_READ_PAGES=0``, the design before), on a database of ``mib`` MiB; and what an
interactive transaction's statements cost on it against the same on a 1 MiB database."""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Bench, peak_rss_of, worker_outputs
from bench.scenarios import MIB, _database_of
from shared.s3 import Bucket
from shared.snapshot.fork import fork
from shared.snapshot.store import SnapshotStore

JOBS = {
    "point read by primary key": ("SELECT length(b) FROM t WHERE id = ?", None),
    "point read as of the version before": ("SELECT length(b) FROM t WHERE id = ?", 1),
    "one-row insert": ("INSERT INTO t (b) VALUES (zeroblob(? % 100))", None),
}
WARM = 7  # the same job again on the warm worker: the median
STATEMENTS = 40  # an interactive transaction's, each a one-row update


def pages(bench: Bench, tmp: str, mib: int = 256) -> dict[str, Any]:
    run = bench.fresh(tmp)
    seed = SnapshotStore(Bucket(run.clients["s3"], run.settings.bucket), f"{tmp}/seeding-pages",
                         chunk_size=run.settings.chunk_size)
    with seed.writer("big") as writer:
        _database_of(writer.path, mib)
        writer.commit([])
    client = run.client()
    figures: dict[str, Any] = {"scenario": "pages",
                               "file_mib": round(seed.local_path("big").stat().st_size / MIB, 1)}
    with run.draining(run.worker()):  # version 2: one more row, so "the version before" is an old one
        client.query("big", "INSERT INTO t (b) VALUES (x'00')", timeout=600)
    rows = mib * 250
    for pages_on in (1, 0):
        design = "pages" if pages_on else "whole copy (before)"
        for name, (sql, as_of) in JOBS.items():
            cold = run.worker(read_pages=pages_on, cache_dir=f"{tmp}/cold-{uuid.uuid4().hex}")
            with run.draining(cold):
                started = time.monotonic()
                client.query("big", sql, [rows // 2], as_of=as_of, timeout=600)
                cold_s = time.monotonic() - started
                down = cold.store.stats.bytes_down
                warm = []
                for n in range(WARM):
                    started = time.monotonic()
                    client.query("big", sql, [rows // 3 + n], as_of=as_of, timeout=600)
                    warm.append(time.monotonic() - started)
                warm_s = statistics.median(warm)
            figures[f"{name}, {design}"] = {"downloaded_mib": round(down / MIB, 2), "cold_s": round(cold_s, 2),
                                            "warm_p50_s": round(warm_s, 3),
                                            "cold_over_warm_s": round(cold_s - warm_s, 2)}
        cold = run.worker(read_pages=pages_on, cache_dir=f"{tmp}/cold-{uuid.uuid4().hex}")
        with run.draining(cold):
            started = time.monotonic()
            client.query("big", "SELECT count(*), sum(length(b)) FROM t", timeout=600)
            figures[f"full scan, {design}"] = {"downloaded_mib": round(cold.store.stats.bytes_down / MIB, 2),
                                               "cold_s": round(time.monotonic() - started, 2)}
    figures["fork"] = _fork(run)
    figures.update(_transactions(bench, tmp, run, mib))
    figures["target"] = ("a point read, a read as of an old version and a one-row insert on a cold worker: <= 2 MiB "
                         "downloaded, <= 0.5 s more than warm; a transaction's write statement on the big database "
                         "<= 1.3x the same on 1 MiB, its 40th <= 1.5x its 2nd; a fork <= 1 MiB stored, <= 10 "
                         "requests, under a second")
    return figures


def _fork(run: Bench) -> dict[str, Any]:
    """``srdb fork`` of the big database: its requests, the bytes it added to the bucket, its time."""
    bucket = Bucket(run.clients["s3"], run.settings.bucket)
    before = sum(o.size for o in bucket.objects("db/"))
    requests, started = bucket.requests, time.monotonic()
    fork(bucket, "big", "big-fork")
    seconds, requests = time.monotonic() - started, bucket.requests - requests
    added = sum(o.size for o in bucket.objects("db/")) - before
    return {"requests": requests, "stored_mib": round(added / MIB, 3), "s": round(seconds, 2)}


def _transactions(bench: Bench, tmp: str, run: Bench, mib: int) -> dict[str, Any]:
    """Each statement's time (submit to result) in a transaction of STATEMENTS one-row updates, on the big
    database and on a 1 MiB one, on a worker kept warm across the transaction (as one Lambda container is)."""
    small = SnapshotStore(Bucket(run.clients["s3"], run.settings.bucket), f"{tmp}/seeding-small",
                          chunk_size=run.settings.chunk_size)
    with small.writer("small") as writer:
        _database_of(writer.path, 1)
        writer.commit([])
    client = run.client()
    figures: dict[str, Any] = {}
    for pages_on in (1, 0):
        design = "pages" if pages_on else "whole copy (before)"
        for database, size in (("small", 1), ("big", mib)):
            times = []
            with run.draining(run.worker(read_pages=pages_on, cache_dir=f"{tmp}/tx-{uuid.uuid4().hex}")), \
                    client.transaction(database, timeout=600) as tx:
                for n in range(STATEMENTS if pages_on else 3):
                    started = time.monotonic()
                    tx.execute("UPDATE t SET b = zeroblob(10) WHERE id = ?", [n + 1])
                    times.append(time.monotonic() - started)
            figures[f"transaction on {size} MiB, {design}"] = {
                "first_s": round(times[0], 3), "second_s": round(times[1], 3), "last_s": round(times[-1], 3),
                "statements": len(times), "last_over_second": round(times[-1] / times[1], 2)}
        big, one = figures[f"transaction on {mib} MiB, {design}"], figures[f"transaction on 1 MiB, {design}"]
        big["second_over_1_mib"] = round(big["second_s"] / one["second_s"], 2)
    return figures


def bounded(bench: Bench, tmp: str, mib: int = 4096, cache_mib: int = 512) -> dict[str, Any]:
    """A database of ``mib`` MiB served by one ``srdb worker`` process whose chunk cache is bounded to ``cache_mib``:
    point reads, a range scan, a full count and one-row inserts, each checked; after each, the cache folder's
    size; at the end, the worker's peak memory."""
    run = bench.fresh(tmp)
    seed = SnapshotStore(Bucket(run.clients["s3"], run.settings.bucket), f"{tmp}/seeding-bounded",
                         chunk_size=run.settings.chunk_size)
    started = time.monotonic()
    with seed.writer("huge") as writer:
        _database_of(writer.path, mib)
        writer.commit([])
    size = seed.local_path("huge").stat().st_size
    seed.discard("huge")
    figures: dict[str, Any] = {"scenario": "pages-bounded", "file_mib": round(size / MIB, 1),
                               "cache_bytes_mib": cache_mib, "seed_s": round(time.monotonic() - started, 1)}
    rows = mib * 250
    client = run.client()
    cache = Path(run.settings.cache_dir) / "proc-0" / ".chunks"
    log = Path(run.settings.cache_dir) / "bounded-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    jobs = [("point read", "SELECT length(b) FROM t WHERE id = ?", [rows // 2], [[4000]]),
            ("point read", "SELECT length(b) FROM t WHERE id = ?", [rows // 7], [[4000]]),
            ("range scan of 100,000 rows", "SELECT count(*), sum(length(b)) FROM t WHERE id BETWEEN ? AND ?",
             [rows // 3, rows // 3 + 99_999], [[100_000, 400_000_000]]),
            ("one-row insert", "INSERT INTO t (id, b) VALUES (?, zeroblob(10))", [rows + 1], []),
            ("one-row insert", "INSERT INTO t (id, b) VALUES (?, zeroblob(10))", [rows + 2], []),
            ("point read of an insert", "SELECT length(b) FROM t WHERE id = ?", [rows + 2], [[10]]),
            ("full count", "SELECT count(*) FROM t", [], [[rows + 2]])]
    done = []
    with worker_outputs(run.settings, [log], SRDB_CACHE_BYTES=str(cache_mib * MIB)) as processes:
        for name, sql, params, expected in jobs:
            started = time.monotonic()
            result = client.query("huge", sql, params, timeout=900)
            cached = sum(p.stat().st_size for p in cache.iterdir()) if cache.exists() else 0
            done.append({"job": name, "s": round(time.monotonic() - started, 2), "correct": result.values() == expected,
                         "cache_mib": round(cached / MIB, 1)})
        peak = peak_rss_of(processes[0].pid)
    figures["jobs"] = done
    figures["worker_peak_rss_mib"] = round(peak)
    figures["target"] = (f"every job correct, the cache folder never over {cache_mib} MiB, worker memory <= 300 MiB")
    return figures
