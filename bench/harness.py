"""What every benchmark needs: a moto server on loopback, fresh resources, request counters,
and a worker thread that drains the job queue as the event source mapping would."""

from __future__ import annotations

import itertools
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from bench.awsproxy import COUNT_PATH
from producer.client import Client
from producer.local.poller import Poller
from producer.local.processes import spawn_worker, stop_all
from producer.local.stack import create_resources, free_port
from shared.clients import client_config, client_kwargs
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch

_names = itertools.count(1)
_SERVED: dict[str, int] = {}  # endpoint -> the pid of the process that serves it (_served)
STATUS = "s3-status"  # counter prefix of the requests a status bucket would take
STATUS_PREFIXES = ("results/", "jobs/")


class RequestCounter:
    """Counts API calls per ``service.Operation`` through botocore's own event hooks."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call", self._count)
        client.meta.events.register("before-parameter-build.s3", self._count_status)
        return client

    def _count(self, model: Any, **kwargs: Any) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def _count_status(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        """Also counted apart: the S3 requests SRDB_STATUS_BUCKET would take (status documents,
        result parts, job bodies), priced at S3 Express One Zone's rates in the cost figures."""
        if str(params.get("Key", "")).startswith(STATUS_PREFIXES):
            with self._lock:
                self.calls[f"{STATUS}.{model.name}"] += 1

    def reset(self) -> Counter[str]:
        with self._lock:
            calls, self.calls = self.calls, Counter()
        return calls


# A model of in-region AWS round trips (seconds), for runs that ask for it (--aws-latency): moto answers
# in about a millisecond, AWS does not, and the seed design pays its round trips once per job.
AWS_LATENCY = {"s3.GetObject": 0.015, "s3.PutObject": 0.030, "s3.HeadObject": 0.012, "sqs": 0.010,
               "ec2.CreateSecurityGroup": 0.150, "ec2.DeleteSecurityGroup": 0.120, "ec2": 0.080}


def add_latency(client: Any, model: dict[str, float]) -> None:
    """Sleep before each request as long as the model says (the sleep releases the GIL, as I/O does)."""
    service = client.meta.service_model.service_name

    def delay(model_op: Any = None, **kwargs: Any) -> None:
        name = f"{service}.{kwargs['event_name'].rsplit('.', 1)[-1]}"
        time.sleep(model.get(name, model.get(service, 0.0)))

    client.meta.events.register("before-send", delay)


@dataclass
class Bench:
    endpoint: str
    settings: Settings = field(default_factory=Settings)
    counter: RequestCounter = field(default_factory=RequestCounter)
    clients: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    moto: str = ""  # the moto server's own endpoint (endpoint may be the network model in front of it)

    def fresh(self, tmp: str, *, fifo: bool = False, **changes: Any) -> Bench:
        """New bucket, queues and VPC, and counted clients for them; ``fifo``: a FIFO job queue."""
        n = next(_names)
        settings = create_resources(self.endpoint, visibility_timeout=120, lock_ttl=300, prefix=f"bench{n}",
                                    bucket=f"srdb-bench-{n}", fifo=fifo)
        settings = settings.replace(cache_dir=f"{tmp}/cache-{n}", lock_wait=60, job_timeout=120, **changes)
        kwargs, config = client_kwargs(settings), client_config(settings)
        clients = {name: self.counter.attach(boto3.client(name, config=config, **kwargs))
                   for name in ("s3", "sqs", "ec2")}
        for client in clients.values():
            add_latency(client, self.latency)
        return Bench(self.endpoint, settings, self.counter, clients, self.latency, self.moto)

    def meter(self) -> ServerMeter:
        return ServerMeter(self.moto or self.endpoint, self.endpoint)

    def client(self, *, wait_queue: bool = False) -> Client:
        """``wait_queue``: waits listen on the callback queue (producer/waiter.py) instead of polling S3."""
        settings = self.settings
        if wait_queue:
            settings = settings.replace(wait_queue_url=settings.callback_queue_url)
        return Client(settings, s3=self.clients["s3"], sqs=self.clients["sqs"])

    def worker(self, **changes: Any) -> Worker:
        return Worker(self.settings.replace(**changes), self.clients["s3"], self.clients["sqs"], self.clients["ec2"])

    @contextmanager
    def draining(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]] | Worker | list[Worker], *,
                 threads: int = 1, batch_size: int = 10, window: float = 0.0) -> Iterator[None]:
        """Poll the job queue in background threads for the duration of the block: ``threads`` of them
        sharing one handler, or one per worker of a list (as concurrent Lambda containers would)."""
        stop = threading.Event()
        handlers = handler if isinstance(handler, list) else [handler] * threads

        def run(target: Callable[[dict[str, Any], Any], dict[str, Any]] | Worker) -> None:
            call = target if callable(target) else (lambda event, ctx: run_batch(target, event))
            Poller(self.clients["sqs"], self.settings.queue_url, call, region=self.settings.region,
                   batch_size=batch_size, window=window, wait_seconds=1, stop=stop).run()

        pool = [threading.Thread(target=run, args=(target,), daemon=True) for target in handlers]
        for thread in pool:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in pool:
                thread.join()
            for target in {id(t): t for t in handlers}.values():
                if isinstance(target, Worker):
                    target.close()


@contextmanager
def worker_processes(settings: Settings, count: int, *args: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``srdb worker`` processes, as ``srdb local`` runs them: client and workers do not share a CPU."""
    # Their output (metrics) is not the bench's.
    processes = [spawn_worker(settings, f"{settings.cache_dir}/proc-{index}", *args, output=subprocess.DEVNULL)
                 for index in range(count)]
    try:
        yield processes
    finally:
        stop_all(processes, timeout=30)


@contextmanager
def worker_outputs(settings: Settings, logs: list[Path], *args: str,
                   **env: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One ``srdb worker`` process per path in ``logs``, its output (logs and EMF metrics) written there;
    ``env``: more environment variables for them."""
    files = [open(log, "wb") for log in logs]  # noqa: SIM115 - closed below
    processes = [spawn_worker(settings, f"{settings.cache_dir}/proc-{index}", *args, output=f, **env)
                 for index, f in enumerate(files)]
    try:
        yield processes
    finally:
        stop_all(processes, timeout=30)
        for f in files:
            f.close()


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in a process of its own, so its CPU is not the benchmark's."""
    with _served(["-m", "moto.server", "-H", "127.0.0.1", "-p"], "moto server") as endpoint:
        yield endpoint


@contextmanager
def aws_network(target: str) -> Iterator[str]:
    """The AWS network model (bench/awsproxy.py) in front of ``target``, in a process of its own."""
    with _served(["-m", "bench.awsproxy", "--target", target, "--port"], "AWS network proxy") as endpoint:
        yield endpoint


@contextmanager
def _served(args: list[str], what: str) -> Iterator[str]:
    """``python ARGS PORT`` on a free port, yielded once it answers HTTP, stopped at the end."""
    port = free_port()
    process = subprocess.Popen([sys.executable, *args, str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"the {what} exited") from None
                time.sleep(0.05)  # it is starting; nothing to poll but its port
        _SERVED[endpoint] = process.pid
        yield endpoint
    finally:
        _SERVED.pop(endpoint, None)
        process.terminate()
        process.wait(timeout=30)


def cpu_seconds_of(pid: int) -> float | None:
    """The CPU seconds (user and system) a running process has used, from Linux's /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerMeter:
    """What a stretch of a scenario asked of the servers: the moto server's CPU seconds per second of it (1.0:
    one core, all it can have — its requests take the GIL — so a figure near it says the scenario waited on
    moto, not on srdb), and the requests every process made through the AWS network model (None without it)."""

    def __init__(self, moto: str, endpoint: str) -> None:
        self.pid, self.endpoint = _SERVED.get(moto), endpoint
        self._started: tuple[float, float | None, int | None] = (0.0, None, None)
        self.cpu_share: float | None = None
        self.requests: int | None = None

    def start(self) -> None:
        self._started = (time.monotonic(), self._cpu(), _forwarded(self.endpoint))

    def stop(self) -> None:
        began, cpu, requests = self._started
        now_cpu, now_requests = self._cpu(), _forwarded(self.endpoint)
        if cpu is not None and now_cpu is not None:
            self.cpu_share = round((now_cpu - cpu) / max(1e-9, time.monotonic() - began), 2)
        if requests is not None and now_requests is not None:
            self.requests = now_requests - requests

    def _cpu(self) -> float | None:
        return cpu_seconds_of(self.pid) if self.pid is not None else None


def _forwarded(endpoint: str) -> int | None:
    """The requests the AWS network model at ``endpoint`` has forwarded; None when it is not one."""
    try:
        with urllib.request.urlopen(f"{endpoint}{COUNT_PATH}", timeout=5) as response:
            return int(response.read())
    except (OSError, ValueError):
        return None


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_of(pid: int) -> float:
    """A running process's peak resident memory (Linux's VmHWM), MiB; 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
