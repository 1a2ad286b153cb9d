"""``make bench``: every scenario on the local stack, one JSON document per scenario.

``python -m bench [--quick] [--only NAME ...]``. ``--quick`` shrinks every scenario (for a smoke
run); figures for the README come from the full run. Figures depend on the machine: quote them
as ratios to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from collections import Counter
from contextlib import nullcontext
from typing import Any

from bench import consumers, http, memory, pages, scenarios, startup
from bench.harness import AWS_LATENCY, Bench, aws_network, moto_server

SCENARIOS = ("small-writes", "many-databases", "consumers", "etl", "write-cost", "warm-read", "storage", "transactions",
             "memory", "startup", "http", "pages", "pages-bounded")


def machine(latency: bool, network: bool = False) -> dict[str, Any]:
    return {"scenario": "machine", "aws_latency_model": AWS_LATENCY if latency else None,
            "aws_network_model": "bench/awsproxy.py" if network else None,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "note": "client, worker and a moto server (S3, SQS, EC2) share this machine"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    # pages-bounded makes a 4 GiB database that moto holds in memory: only when asked for.
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=[s for s in SCENARIOS if s != "pages-bounded"])
    parser.add_argument("--etl-rows", type=int, default=0, help="rows for the etl scenario")
    parser.add_argument("--etl-workers", type=int, default=2, help="worker processes for the etl scenario")
    parser.add_argument("--etl-worker-args", default="", help="arguments for those srdb worker processes")
    parser.add_argument("--jobs", type=int, default=0, help="jobs for the small-writes scenario")
    parser.add_argument("--consumers", type=int, default=0,
                        help="small-writes: srdb as that many `srdb worker` processes on a FIFO queue (0: in-process)")
    parser.add_argument("--pages-mib", type=int, default=0, help="the database's size for the pages scenario")
    parser.add_argument("--bounded-mib", type=int, default=0,
                        help="the database's size for the pages-bounded scenario (its worker caches 512 MiB)")
    parser.add_argument("--aws-latency", action="store_true",
                        help="add a model of AWS round-trip times to every request (bench/harness.py)")
    parser.add_argument("--aws-network", action="store_true",
                        help="put the AWS network model (bench/awsproxy.py: round trips, body pacing, EC2's "
                             "throttle) between every process and moto; small-writes adds a 64 MiB database")
    args = parser.parse_args()
    # The in-process worker's line per job would interleave with the figures on stdout.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    logging.getLogger("srdb.worker").setLevel(logging.WARNING)
    print(json.dumps(machine(args.aws_latency, args.aws_network)), flush=True)
    calls: dict[str, tuple[Counter[str], int]] = {}
    with moto_server() as moto, scenarios.scratch() as tmp, \
            (aws_network(moto) if args.aws_network else nullcontext(moto)) as endpoint:
        bench = Bench(endpoint, latency=AWS_LATENCY if args.aws_latency else {}, moto=moto)
        jobs = args.jobs or (100 if args.quick else 1000)
        runs = {
            "small-writes": lambda: [scenarios.small_writes(bench, tmp, jobs=jobs if mib < 64 else max(10, jobs // 4),
                                                            initial_mib=mib, consumers=args.consumers)
                                     for mib in ((0, 8, 64) if args.aws_network else (0, 8))],
            "many-databases": lambda: scenarios.many_databases(bench, tmp, jobs=120 if args.quick else 600,
                                                               databases=8 if args.quick else 24),
            "consumers": lambda: consumers.consumers(bench, tmp, per_database=5 if args.quick else 25,
                                                     databases=8 if args.quick else 24,
                                                     hot_jobs=30 if args.quick else 150,
                                                     sequential=10 if args.quick else 30),
            "etl": lambda: scenarios.etl(bench, tmp, rows=args.etl_rows or (20_000 if args.quick else 1_000_000),
                                         workers=args.etl_workers, worker_args=tuple(args.etl_worker_args.split())),
            "write-cost": lambda: scenarios.write_cost(bench, tmp, sizes=(4, 16) if args.quick else (4, 256),
                                                       repeats=2 if args.quick else 5),
            "warm-read": lambda: scenarios.warm_read(bench, tmp, reads=20 if args.quick else 200),
            "storage": lambda: scenarios.storage(bench, tmp, mib=4 if args.quick else 32),
            "transactions": lambda: scenarios.transactions(bench, tmp, count=10 if args.quick else 50,
                                                           mib=1 if args.quick else 8),
            "memory": lambda: memory.memory(bench, tmp, jobs=4 if args.quick else 8),
            "startup": lambda: startup.startup(runs=3 if args.quick else 7),
            "pages": lambda: pages.pages(bench, tmp, mib=args.pages_mib or (16 if args.quick else 256)),
            "pages-bounded": lambda: pages.bounded(bench, tmp, mib=args.bounded_mib or (64 if args.quick else 4096),
                                                   cache_mib=16 if args.quick else 512),
            "http": lambda: http.http_api(bench, tmp, reads=20 if args.quick else 100,
                                          concurrent=50 if args.quick else 200,
                                          big_rows=10_000 if args.quick else 100_000),
        }
        for name in args.only:
            result = runs[name]()
            for figures in result if isinstance(result, list) else [result]:
                calls.update(figures.pop("_calls", {}))
                print(json.dumps(figures), flush=True)
    print(json.dumps(scenarios.cost(calls)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
