"""Pages on demand (worker/pages.py): what a read costs a worker with an empty cache — a new Lambda container
— against the same read on a warm one, and against a worker that reads whole local copies
(``SRDB_READ_PAGES=0``, the design before), on a database of ``mib`` MiB."""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.harness import Bench
from bench.scenarios import MIB, _database_of
from shared.s3 import Bucket
from shared.snapshot.store import SnapshotStore

READS = {
    "point read by primary key": ("SELECT length(b) FROM t WHERE id = ?", None),
    "point read as of the version before": ("SELECT length(b) FROM t WHERE id = ?", 1),
}


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
        for name, (sql, as_of) in READS.items():
            cold = run.worker(read_pages=pages_on, cache_dir=f"{tmp}/cold-{uuid.uuid4().hex}")
            with run.draining(cold):
                started = time.monotonic()
                client.query("big", sql, [rows // 2], as_of=as_of, timeout=600)
                cold_s = time.monotonic() - started
                down = cold.store.stats.bytes_down
                started = time.monotonic()
                client.query("big", sql, [rows // 3], as_of=as_of, timeout=600)
                warm_s = time.monotonic() - started
            figures[f"{name}, {design}"] = {"downloaded_mib": round(down / MIB, 2), "cold_s": round(cold_s, 2),
                                            "warm_s": round(warm_s, 2),
                                            "cold_over_warm_s": round(cold_s - warm_s, 2)}
        cold = run.worker(read_pages=pages_on, cache_dir=f"{tmp}/cold-{uuid.uuid4().hex}")
        with run.draining(cold):
            started = time.monotonic()
            client.query("big", "SELECT count(*), sum(length(b)) FROM t", timeout=600)
            figures[f"full scan, {design}"] = {"downloaded_mib": round(cold.store.stats.bytes_down / MIB, 2),
                                               "cold_s": round(time.monotonic() - started, 2)}
    figures["target"] = "a point read on a cold worker: <= 2 MiB downloaded, <= 0.5 s more than warm"
    return figures
