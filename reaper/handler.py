"""The reaper Lambda's entry point, run on a schedule: stale locks, then garbage collection."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from reaper.reaper import Reaper
from shared.clients import Clients
from shared.settings import Settings

logger = Logger(service="srdb-reaper")


def handle(event: dict[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    settings = Settings.load()
    if not (settings.vpc_id or settings.bucket):
        settings.require("bucket")
    clients = Clients.build(settings)
    # The minute's schedule frees locks ({"gc": false}); the collector's own ({"gc": true}) and a call
    # with no event (`srdb reaper --once`) make a whole pass. The collector starts no other database
    # once half the invocation's time is gone.
    budget = context.get_remaining_time_in_millis() / 2000 if context is not None else None
    reaper = Reaper.for_settings(settings, ec2=clients.ec2, s3=clients.s3, gc_budget=budget)
    report = (reaper.run() if (event or {}).get("gc", True) else reaper.reap_locks()).to_json()
    if report["freed"]:
        logger.warning("freed stale locks", extra=report)
    gc = report.get("gc") or {}
    if gc.get("versions_deleted") or gc.get("trash_deleted") or gc.get("missing"):
        logger.info("garbage collected", extra=gc)
    return report
