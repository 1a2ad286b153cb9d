"""The HTTP API as users run it: ``srdb serve`` in a process of its own over two ``srdb worker`` processes on a
FIFO queue. Point reads over HTTP beside the Python client's submit-to-result in the same run, 200
concurrent HTTP clients, and the server's memory before and after paging through a 100k-row result."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from bench.harness import Bench, peak_rss_of, percentile, worker_processes


def _call(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def http_api(bench: Bench, tmp: str, reads: int = 100, concurrent: int = 200,
             big_rows: int = 100_000) -> dict[str, Any]:
    run = bench.fresh(tmp, fifo=True)
    client = run.client()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SRDB_")}, **run.settings.to_env()}
    serve = subprocess.Popen([sys.executable, "-m", "producer.cli", "serve", "--port", "0"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert serve.stdout is not None
        base = serve.stdout.readline().split(" at ")[1].split(" ")[0]
        with worker_processes(run.settings, 2):
            client.query("h", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", timeout=120)
            client.wait(client.submit_many("h", "INSERT INTO t (v) VALUES (?)", [[f"v{i}"] for i in range(10_000)]),
                        120)
            python_ms, http_ms = [], []
            for i in range(reads):  # interleaved, so both meet the same warm workers
                started = time.monotonic()
                client.query("h", "SELECT v FROM t WHERE id = ?", [1 + i], timeout=120)
                python_ms.append((time.monotonic() - started) * 1000)
                started = time.monotonic()
                status, doc = _call(base, "POST", "/v1/databases/h/query", {"sql": "SELECT v FROM t WHERE id = ?",
                                                                    "params": [1 + i]})
                http_ms.append((time.monotonic() - started) * 1000)
                assert status == 200 and doc["state"] == "SUCCEEDED", doc
            rss_before = peak_rss_of(serve.pid)
            answers: list[int] = []
            lock = threading.Lock()

            def one(n: int) -> None:
                try:
                    status, _ = _call(base, "POST", "/v1/databases/h/query", {"sql": "SELECT v FROM t WHERE id = ?",
                                                                      "params": [1 + n % 10_000], "wait": 30})
                except OSError:
                    status = 0
                with lock:
                    answers.append(status)

            started = time.monotonic()
            threads = [threading.Thread(target=one, args=(n,)) for n in range(concurrent)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            concurrent_s = time.monotonic() - started
            rss_after_concurrent = peak_rss_of(serve.pid)
            big_sql = (f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {big_rows}) "
                       "SELECT n, printf('%0100d', n) AS padded FROM c")
            status, doc = _call(base, "POST", "/v1/databases/h/query", {"sql": big_sql, "wait": 30})
            rows = len(doc.get("rows", []))
            for page in doc.get("pages", []):
                rows += len(_call(base, "GET", page["href"])[1]["rows"])
            rss_after_big = peak_rss_of(serve.pid)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    p50_python, p50_http = percentile(python_ms, 0.5), percentile(http_ms, 0.5)
    return {"scenario": "http", "reads": reads,
            "point_read_ms": {"python_client_p50": round(p50_python, 1), "http_p50": round(p50_http, 1),
                              "http_p95": round(percentile(http_ms, 0.95), 1),
                              "http_over_python": round(p50_http / p50_python, 2)},
            "concurrent_clients": concurrent, "concurrent_ok": sum(1 for s in answers if s == 200),
            "concurrent_errors": sum(1 for s in answers if s not in (200, 202)), "concurrent_s": round(concurrent_s, 1),
            "big_result_rows": rows, "big_result_pages": len(doc.get("pages", [])),
            "serve_peak_rss_mib": {"after_point_reads": round(rss_before, 1),
                                   "after_200_clients": round(rss_after_concurrent, 1),
                                   f"after_paging_{big_rows}_rows": round(rss_after_big, 1)},
            "target": "http p50 <= 1.2x the Python client's; 200 clients without an error; "
                      "memory flat with result size"}
