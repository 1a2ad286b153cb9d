"""Commands that run srdb's parts: local (the whole stack), worker, reaper, demo; and env, the exports that
point other tools at the same stack."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from producer.cli.args import Subparsers, bounded, overrides
from shared.errors import EXIT_OK, EXIT_UNAVAILABLE, ClientSideError
from shared.names import QUEUE_KINDS

SERVE_PORT = 8710  # srdb serve's default port


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("local", parents=[common], help="run the whole stack on this machine until Ctrl-C")
    p.add_argument("--port", type=bounded(int, 0, 65535), default=0, help="moto server port (default: a free one)")
    p.add_argument("--workers", type=bounded(int, 0, 64), default=2, help="worker processes (0: the stack alone)")
    p.add_argument("--visibility-timeout", type=bounded(int, 1, 43200), default=60,
                   help="job queue visibility timeout, seconds")
    p.add_argument("--lock-ttl", type=bounded(float, 1), default=None,
                   help="seconds before the reaper frees a dead worker's lock (default: the visibility timeout, at "
                        "most 60; never more than it, or a redelivered job would wait out a dead worker's lock)")
    p.add_argument("--queue", choices=QUEUE_KINDS, default=QUEUE_KINDS[0],
                   help="the job queue's kind: fifo (the default, as deployed) gives each database's writes one "
                        "message group, so two workers never run them at once and need no lock; standard lets "
                        "any worker take any message, and writes take the lock")
    p.add_argument("--ephemeral", action="store_true",
                   help="keep nothing: by default the bucket (databases, history, results) is kept in .srdb/data "
                        "and loaded again at the next start")
    p.set_defaults(func=cmd_local)

    p = sub.add_parser("worker", parents=[common], help="poll the job queue and run batches, as the Lambda does")
    p.add_argument("--batch-size", type=bounded(int, 1, 10_000), default=10,
                   help="messages per batch (Lambda's BatchSize)")
    p.add_argument("--batching-window", type=bounded(float, 0, 300), default=0.0,
                   help="seconds to gather a batch (Lambda's MaximumBatchingWindowInSeconds)")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                   help="stop when process PID, which started this one, ends (srdb local's workers)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("serve", parents=[common],
                       help="serve the HTTP API and the web console against the stack the settings name")
    p.add_argument("--port", type=bounded(int, 0, 65535), default=SERVE_PORT,
                   help=f"the port (default {SERVE_PORT}; 0: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only; any other needs --token)")
    p.add_argument("--token", default=None, help="a secret every API request must carry (Authorization: Bearer …)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("reaper", parents=[common],
                       help="free stale locks and collect garbage (old versions, unused chunks) on a schedule")
    p.add_argument("--once", action="store_true", help="run once, print the report and exit")
    p.add_argument("--interval", type=bounded(float, 0.1), default=60.0, help="seconds between runs")
    p.set_defaults(func=cmd_reaper)


def register_last(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """The commands listed last in ``srdb --help``."""
    p = sub.add_parser("env", parents=[common],
                       help="print the exports that point the AWS CLI, any AWS SDK and other shells at this stack: "
                            'eval "$(srdb env)"')
    p.set_defaults(func=cmd_env)
    p = sub.add_parser("demo", parents=[common], help="start a local stack, load, query, print, stop")
    p.set_defaults(func=cmd_demo)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _stop_with_parent(stop: threading.Event, parent: int, every: float = 0.5, grace: float = 5.0) -> None:
    """End this process once its parent is gone (it was killed, even with SIGKILL: an orphan is adopted by
    another process, so its parent id changes). ``stop`` is set first; a worker still busy after ``grace``
    seconds (retrying an endpoint that died with its parent) exits anyway: the messages it held go back
    to the queue when their visibility timeout ends."""
    import os

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                logging.getLogger("srdb.worker").warning("the process that started this worker ended; stopping")
                stop.set()
                time.sleep(grace)
                os._exit(EXIT_UNAVAILABLE)
            if stop.wait(every):
                return

    threading.Thread(target=watch, name="srdb-parent-watch", daemon=True).start()


def cmd_serve(args: argparse.Namespace) -> int:
    from api.app import Api
    from api.server import ApiServer
    from producer.cli.args import client
    from shared.grants import GrantStore
    from shared.s3 import Bucket

    srdb = client(args)
    try:
        server = ApiServer(Api(srdb, grants=GrantStore(Bucket(srdb.s3, srdb.settings.bucket))), args.host, args.port,
                           args.token)
    except ValueError as exc:
        raise ClientSideError(str(exc)) from None
    except OSError as exc:
        raise ClientSideError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}): choose another --port "
                              "(0: a free one)") from None
    stop = _stop_on_signals()
    server.start()
    print(f"srdb serve: the HTTP API and console at {server.url} for {srdb.settings.bucket}; Ctrl-C stops it",
          flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    return EXIT_OK


def cmd_local(args: argparse.Namespace) -> int:
    from producer.local.stack import LocalStack

    lock_ttl = args.lock_ttl if args.lock_ttl is not None else min(60.0, float(args.visibility_timeout))
    if lock_ttl > args.visibility_timeout:
        raise ClientSideError(f"--lock-ttl {lock_ttl:g} is longer than --visibility-timeout {args.visibility_timeout}: "
                              "a job redelivered after a worker died would find its lock still held, delivery after "
                              "delivery, until the dead-letter queue; give a lock TTL no longer than the timeout")
    stack = LocalStack(Path.cwd(), port=args.port, workers=args.workers,
                       visibility_timeout=args.visibility_timeout, lock_ttl=lock_ttl, ephemeral=args.ephemeral,
                       queue=args.queue)
    stop = _stop_on_signals()
    stack.start()
    try:
        kept = "nothing kept (--ephemeral)" if args.ephemeral else f"data kept in {stack.data_folder}"
        print(f"srdb local ready at {stack.settings.endpoint_url} with {args.workers} worker(s); "
              f"settings in {stack.env_file}; {kept}", flush=True)
        print(f"HTTP API and console at {stack.settings.http_url} (SRDB_HTTP_URL)", flush=True)
        stop.wait()
    finally:
        stack.stop()
    print("srdb local stopped", flush=True)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from producer.local.poller import Poller
    from shared.clients import Clients
    from shared.settings import Settings
    from worker.handler import serve, shutdown

    settings = Settings.load(**overrides(args))
    settings.require("bucket", "queue_url", "vpc_id")
    stop = _stop_on_signals()
    if args.parent_pid is not None:
        _stop_with_parent(stop, args.parent_pid)
    try:
        Poller(Clients.build(settings).sqs, settings.queue_url, serve, region=settings.region, stop=stop,
               batch_size=args.batch_size, window=args.batching_window).run()
    finally:
        shutdown()  # the locks it kept for a next batch
    return EXIT_OK


def cmd_reaper(args: argparse.Namespace) -> int:
    from reaper.handler import handle

    if args.once:
        print(json.dumps(handle({}, None)))
        return EXIT_OK
    stop = _stop_on_signals()
    while True:
        report = handle({}, None)
        gc = report.get("gc") or {}
        if report["freed"] or gc.get("versions_deleted") or gc.get("trash_deleted") or gc.get("missing"):
            print(json.dumps(report), flush=True)
        if stop.wait(args.interval):
            return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    """``export`` lines: the stack's ``SRDB_*`` settings, and the ``AWS_*`` variables (the endpoint, the local
    stack's keys, the region) under which ``aws s3 ls s3://<bucket>`` and every SDK reach the same stack."""
    import shlex

    from shared.settings import Settings

    settings = Settings.load(**overrides(args))
    exports = dict(settings.to_env())
    aws = {"AWS_DEFAULT_REGION": settings.region, "AWS_ENDPOINT_URL": settings.endpoint_url,
           "AWS_ACCESS_KEY_ID": settings.aws_access_key_id, "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key,
           "AWS_PROFILE": settings.profile}
    exports.update({name: value for name, value in aws.items() if value})
    print("\n".join(f"export {name}={shlex.quote(str(value))}" for name, value in sorted(exports.items())))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from producer.cli.demo import run_demo

    return int(run_demo())
