"""The reaper Lambda's entry point, run on a schedule."""

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
    report = Reaper.for_settings(settings, ec2=clients.ec2, s3=clients.s3).reap_locks().to_json()
    if report["freed"]:
        logger.warning("freed stale locks", extra=report)
    return report
