"""The worker Lambda's entry point: an SQS event in, ``batchItemFailures`` out.

Logs are Powertools JSON (srdb's own loggers share its format; job ids travel in each
line's fields), and each batch emits CloudWatch metrics in the embedded metric format.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from shared.clients import Clients, caller_id
from shared.settings import Settings
from worker.batch import CRASH_POINTS, BatchStats, Record, Worker
from worker.handback import handed_back

logger = Logger(service="srdb-worker")
copy_config_to_registered_loggers(source_logger=logger, include={"srdb"})
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "srdb"), service="worker")
_worker: Worker | None = None


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda handler: run the batch on this container's warm worker. Lambda freezes the container
    when it returns, so the locks kept for a next batch are parked first (worker/keeper.py)."""
    try:
        return serve(event, context)
    finally:
        _warm_worker().park()


def serve(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Run one batch on this process's warm worker; a long-lived process (``srdb worker``) calls this,
    and its worker gives back the locks it kept once they are idle for the linger."""
    worker = _warm_worker()
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else None
    response = run_batch(worker, event, remaining)
    emit(worker.last_stats)
    return response


def run_batch(worker: Worker, event: dict[str, Any], remaining: float | None = None) -> dict[str, Any]:
    """Messages named in ``batchItemFailures`` stay on the queue for redelivery; the rest are done."""
    records = [
        Record(r.message_id, r.body or "", int(r.attributes.approximate_receive_count or 1),
               str(r.get("eventSourceARN") or ""), str(r.attributes.get("SenderId") or ""),
               *handed_back(r.message_attributes))
        for r in SQSEvent(event).records
    ]
    report = worker.run(records, remaining=remaining)
    if report.retry():
        logger.warning("batch finished with retries", extra={"retry": report.retry(), "size": len(records)})
    return report.batch_item_failures()


def emit(stats: BatchStats) -> None:
    """Jobs run, failed and retried, lock wait, commit bytes and batch duration, as EMF metrics."""
    for name, unit, value in (
        ("JobsSucceeded", MetricUnit.Count, stats.succeeded),
        ("JobsFailed", MetricUnit.Count, stats.failed),
        ("JobsRetried", MetricUnit.Count, stats.retried),
        ("MessagesDropped", MetricUnit.Count, stats.dropped),
        ("LockWait", MetricUnit.Milliseconds, stats.lock_wait_ms),
        ("CommitBytes", MetricUnit.Bytes, stats.commit_bytes),
        ("BatchDuration", MetricUnit.Milliseconds, stats.duration_ms),
    ):
        metrics.add_metric(name=name, unit=unit, value=value)
    metrics.flush_metrics()


def shutdown() -> None:
    """Release what this process's warm worker keeps for later batches (its write locks)."""
    if _worker is not None:
        _worker.close()


def _warm_worker() -> Worker:
    # Built once per container: a warm Lambda keeps its clients and its local snapshots.
    global _worker
    if _worker is None:
        settings = Settings.load()
        settings.require("bucket")  # and vpc_id for the security-group lock (shared.lock.make_lock)
        clients = Clients.build(settings)
        _worker = Worker(settings, clients.s3, clients.sqs, clients.ec2, crash=_crash_hook(),
                         own_sender=caller_id(settings))
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
