"""The worker Lambda's entry point: an SQS event in, ``batchItemFailures`` out."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from shared.clients import Clients
from shared.settings import Settings
from worker.batch import CRASH_POINTS, Record, Worker

logger = Logger(service="srdb-worker")
_worker: Worker | None = None


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda handler: run the batch on this container's warm worker."""
    return run_batch(_warm_worker(), event)


def run_batch(worker: Worker, event: dict[str, Any]) -> dict[str, Any]:
    """Messages named in ``batchItemFailures`` stay on the queue for redelivery; the rest are done."""
    records = [
        Record(r.message_id, r.body or "", int(r.attributes.approximate_receive_count or 1))
        for r in SQSEvent(event).records
    ]
    failed = worker.process(records)
    if failed:
        logger.warning("batch finished with retries", extra={"retry": failed, "size": len(records)})
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def _warm_worker() -> Worker:
    # Built once per container: a warm Lambda keeps its clients and its local snapshots.
    global _worker
    if _worker is None:
        settings = Settings.load()
        settings.require("bucket", "vpc_id")
        clients = Clients.build(settings)
        _worker = Worker(settings, clients.s3, clients.sqs, clients.ec2, crash=_crash_hook())
    return _worker


def _crash_hook() -> Any:
    """``SRDB_CRASH_AT=<point>`` makes this process die at that point: how tests kill a worker mid-batch."""
    point = os.environ.get("SRDB_CRASH_AT", "")
    if point and point not in CRASH_POINTS:
        raise ValueError(f"SRDB_CRASH_AT={point!r}: choose one of {', '.join(CRASH_POINTS)}")

    def crash(at: str) -> None:
        if at == point:
            os._exit(70)

    return crash
