"""``srdb local``: the whole system on one machine.

A moto server on loopback holds the bucket, the job queue with its dead-letter queue, the
callback queue and the VPC. Each worker is its own process running ``srdb worker`` (as each
Lambda container is its own sandbox, with its own /tmp cache), and the reaper runs on its
schedule in a thread.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from api.server import ApiServer
from producer.local.persist import SYNC_SECONDS, Mirror
from producer.local.processes import spawn_worker, stop_all
from reaper.reaper import Reaper
from shared.clients import client_kwargs
from shared.errors import ClientSideError
from shared.names import QUEUE_KINDS
from shared.settings import LOCAL_ENV_FILE, Settings, find_local_env, names_a_stack, write_env_file

log = logging.getLogger("srdb.local")
MAX_RECEIVE_COUNT = 5
LOCAL_PID_FILE = Path(".srdb") / "local.pid"
LOCAL_PORT_FILE = Path(".srdb") / "port"
LOCAL_HTTP_PORT_FILE = Path(".srdb") / "http-port"  # the HTTP API's (api/), kept as the endpoint's is
LOCAL_DATA_FOLDER = Path(".srdb") / "data" / "s3"


class LocalStackError(ClientSideError):
    """``srdb local`` cannot start: the port is taken, or another one runs in this folder."""


def running_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` when that process is alive; None otherwise."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        return pid  # alive, and another user's
    except OSError:
        return None
    return pid


def stale_local_env(folder: Path, environ: dict[str, str] | None = None) -> str | None:
    """Advice when this folder's settings come from ``.srdb/local.env`` and no ``srdb local`` that wrote
    it is alive (it was killed before it could clean up); None otherwise."""
    env = os.environ if environ is None else environ
    found = find_local_env(folder)
    if names_a_stack(env) or found is None:
        return None
    if running_pid(found.parent.parent / LOCAL_PID_FILE) is None:
        return (f"the settings came from {found}, but the `srdb local` that wrote it is not running "
                "(it was stopped without cleaning up): start it again with `srdb local`, or delete "
                f"{LOCAL_ENV_FILE} and set SRDB_* variables for a deployed stack")
    return None


def _last_port(folder: Path, file: Path = LOCAL_PORT_FILE) -> int | None:
    """The port this folder's last ``srdb local`` used, while it is free: a restart keeps its endpoint, so
    exported settings and other terminals' ``SRDB_ENDPOINT_URL`` do not go stale."""
    try:
        port = int((folder / file).read_text().strip())
    except (OSError, ValueError):
        return None
    return port if _bind_error(port) is None else None


def _bind_error(port: int) -> OSError | None:
    """Why a server could not listen on ``port`` now; None when it could. SO_REUSEADDR, as the server sets
    it: the connections a stopped stack left in TIME_WAIT do not hold its port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_resources(endpoint_url: str, *, visibility_timeout: int = 60, lock_ttl: float = 60.0,
                     prefix: str = "srdb", bucket: str | None = None,
                     max_receive_count: int = MAX_RECEIVE_COUNT, fifo: bool = False) -> Settings:
    """Create the bucket, queues and VPC on an endpoint; return the settings that name them. ``fifo``: the
    job queue and its dead-letter queue are FIFO queues (shared/job/routing.py).

    Names derive from ``prefix`` (the bucket is ``<prefix>-local``), so several stacks can share
    one moto server, as they do when they run in one process: moto keeps its state per process.
    """
    bucket = bucket or f"{prefix}-local"
    base = Settings(endpoint_url=endpoint_url, aws_access_key_id="testing", aws_secret_access_key="testing",
                    region="us-east-1", bucket=bucket, lock_prefix=prefix, lock_ttl=lock_ttl)
    kwargs = client_kwargs(base)
    s3, sqs, ec2 = (boto3.client(name, **kwargs) for name in ("s3", "sqs", "ec2"))
    s3.create_bucket(Bucket=bucket)
    suffix, kind = (".fifo", {"FifoQueue": "true"}) if fifo else ("", {})
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-jobs-dlq{suffix}", Attributes=kind)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    queue_url = sqs.create_queue(QueueName=f"{prefix}-jobs{suffix}", Attributes={
        "VisibilityTimeout": str(visibility_timeout), "RedrivePolicy": redrive, **kind})["QueueUrl"]
    callback_url = sqs.create_queue(QueueName=f"{prefix}-callbacks")["QueueUrl"]
    vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    # A job may run for at most job_timeout; the lock must outlive any job that holds it.
    job_timeout = max(1.0, min(30.0, visibility_timeout / 2, lock_ttl / 2))
    # A batch must end before its messages come back: the visibility timeout is the local worker's
    # "Lambda timeout", and no job may ask for more than fits it.
    worker_timeout = float(min(visibility_timeout, lock_ttl))
    return base.replace(queue_url=queue_url, dlq_url=dlq_url, callback_queue_url=callback_url, vpc_id=vpc_id,
                        job_timeout=job_timeout, lock_wait=min(30.0, visibility_timeout / 2),
                        max_receive_count=max_receive_count, worker_timeout=worker_timeout,
                        max_job_timeout=max(job_timeout, worker_timeout * 0.8))


class LocalStack:
    """Start with :meth:`start`, stop with :meth:`stop`; ``settings`` then names everything."""

    def __init__(self, folder: Path, *, port: int = 0, workers: int = 2, visibility_timeout: int = 60,
                 lock_ttl: float = 60.0, reaper_interval: float | None = None, prefix: str = "srdb",
                 ephemeral: bool = True, queue: str = QUEUE_KINDS[0]) -> None:
        self.prefix, self.ephemeral, self.queue = prefix, ephemeral, queue
        self.folder, self.port, self.workers = folder, port or _last_port(folder) or free_port(), workers
        self.mirror: Mirror | None = None
        self.visibility_timeout, self.lock_ttl = visibility_timeout, lock_ttl
        self.reaper_interval = reaper_interval or max(1.0, min(60.0, lock_ttl / 4))
        self.server: Any = None
        self.settings = Settings()
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self.http: ApiServer | None = None

    @property
    def env_file(self) -> Path:
        return self.folder / LOCAL_ENV_FILE

    @property
    def pid_file(self) -> Path:
        return self.folder / LOCAL_PID_FILE

    @property
    def data_folder(self) -> Path:
        return self.folder / LOCAL_DATA_FOLDER

    def _check_alone(self) -> None:
        running = running_pid(self.pid_file)
        if running is not None and running != os.getpid():
            raise LocalStackError(f"srdb local already runs in {self.folder} (pid {running}); its settings are in "
                                  f"{self.env_file}. Use that one, or stop it (Ctrl-C, or kill {running}) first")
        busy = _bind_error(self.port)
        if busy is not None:
            raise LocalStackError(f"port {self.port} on 127.0.0.1 is in use ({busy.strerror}): "
                                  "choose another with --port, or leave it out for a free one")

    def start(self) -> Settings:
        """Start everything. LocalStackError at once when the port is taken or another ``srdb local``
        runs in this folder."""
        self._check_alone()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.settings = create_resources(f"http://127.0.0.1:{self.port}",
                                         visibility_timeout=self.visibility_timeout, lock_ttl=self.lock_ttl,
                                         prefix=self.prefix, fifo=self.queue == "fifo")
        if not self.ephemeral:
            self.mirror = Mirror(boto3.client("s3", **client_kwargs(self.settings)), self.settings.bucket,
                                 self.data_folder)
            loaded = self.mirror.load()
            if loaded:
                log.info("loaded %d objects from %s", loaded, self.data_folder)
        self.http = self._serve_http()
        self.settings = self.settings.replace(http_url=self.http.url)
        write_env_file(self.env_file, self.settings.to_env())
        (self.folder / LOCAL_PORT_FILE).write_text(f"{self.port}\n")  # the next start takes it again
        (self.folder / LOCAL_HTTP_PORT_FILE).write_text(f"{self.http.server_address[1]}\n")
        self.pid_file.write_text(f"{os.getpid()}\n")
        for index in range(self.workers):
            self.processes.append(self.spawn_worker(index))
        self._reaper = threading.Thread(target=self._reap, name="srdb-reaper", daemon=True)
        self._reaper.start()
        return self.settings

    def _serve_http(self) -> ApiServer:
        """The HTTP API and console (api/) for this stack, on the port the folder's last one had while free."""
        from api.app import Api
        from producer.client import Client

        port = _last_port(self.folder, LOCAL_HTTP_PORT_FILE) or 0
        server = ApiServer(Api(Client(self.settings)), "127.0.0.1", port)
        server.start()
        return server

    def spawn_worker(self, index: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one ``srdb worker`` process with its own cache folder and log file."""
        state = self.folder / ".srdb"
        with open(state / f"worker-{index}.log", "ab") as logfile:
            return spawn_worker(self.settings, state / "cache" / f"worker-{index}", "--parent-pid", str(os.getpid()),
                                output=logfile, cwd=self.folder, **(extra_env or {}))

    def stop(self) -> None:
        self._stop.set()
        stop_all(self.processes)
        self.processes.clear()
        if self._reaper is not None:
            self._reaper.join(timeout=10)
        if self.mirror is not None:
            self._sync()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.env_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    def _reap(self) -> None:
        kwargs = client_kwargs(self.settings)
        reaper = Reaper.for_settings(self.settings, ec2=boto3.client("ec2", **kwargs), s3=boto3.client("s3", **kwargs))
        next_reap = time.monotonic() + self.reaper_interval
        while not self._stop.wait(SYNC_SECONDS if self.mirror else self.reaper_interval):
            if self.mirror is not None:
                self._sync()
            if time.monotonic() < next_reap:
                continue
            next_reap = time.monotonic() + self.reaper_interval
            try:
                reaper.run()
            except Exception:  # the reaper keeps its schedule whatever one run met
                log.exception("reaper run failed")

    def _sync(self) -> None:
        assert self.mirror is not None
        try:
            self.mirror.sync()
        except Exception:  # the next sync tries again
            log.exception("copying the bucket to %s failed", self.data_folder)
