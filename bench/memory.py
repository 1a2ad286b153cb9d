"""The memory bench: a ``srdb worker`` process given the deployed Lambda's memory size
(``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``) takes one batch of hostile jobs at a time; its peak resident
memory (Linux's VmHWM) is printed beside that memory size and beside its peak for a batch of ``SELECT 1``
(the baseline, measured in the same run). A worker past its memory size is what Lambda kills, with its
whole batch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import Bench, peak_rss_of, worker_outputs
from shared.job.result import JobState

MIB = 1024 * 1024
_ROWS3 = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) "

# (name, database of each job, SQL): each sent ``jobs`` times, in one batch.
HOSTILE = [
    ("baseline: SELECT 1", "r", "SELECT 1"),
    ("SELECT zeroblob(60 MiB)", "r", "SELECT zeroblob(62914560)"),
    ("SELECT randomblob(60 MiB)", "r", "SELECT randomblob(62914560)"),
    ("two 30 MiB columns", "r", "SELECT zeroblob(31457280), randomblob(31457280)"),
    ("three 60 MiB rows", "r", _ROWS3 + "SELECT randomblob(62914560) FROM c"),
    ("60 MiB text", "r", "SELECT printf('%.*c', 62914560, 'x')"),
    ("INSERT … RETURNING 48 MiB, a database each", "w{i}", "INSERT INTO t VALUES (randomblob(50000000)) RETURNING v"),
]


def memory(bench: Bench, tmp: str, jobs: int = 8, memory_mib: int = 1024) -> dict[str, Any]:
    """Each hostile input ``jobs`` times in one batch of a fresh worker with ``memory_mib`` MiB."""
    figures: dict[str, Any] = {"scenario": "memory", "lambda_memory_mib": memory_mib, "jobs_per_batch": jobs}
    for name, database, sql in HOSTILE:
        run = bench.fresh(tmp)
        client = run.client()
        names = [database.format(i=i) for i in range(jobs)]
        with run.draining(run.worker()):
            for db in sorted(set(names)):
                client.query(db, "CREATE TABLE t (v)", timeout=120)
        ids = [client.submit(db, sql) for db in names]
        log = Path(run.settings.cache_dir) / "memory-worker.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with worker_outputs(run.settings, [log], "--batch-size", str(jobs),
                            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory_mib)) as processes:
            results = [client.wait(job_id, 300) for job_id in ids]
            peak = peak_rss_of(processes[0].pid)
        states = Counter(r.state.value if r.state is not JobState.FAILED else f"FAILED {(r.error or {}).get('type')}"
                         for r in results)
        figures[name] = {"peak_mib": round(peak), "of_lambda_memory": round(peak / memory_mib, 2),
                         "outcomes": dict(states)}
    figures["target"] = f"every peak under {memory_mib} MiB; every job SUCCEEDED or failed naming the cause"
    return figures
