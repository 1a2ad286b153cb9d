"""The HTTP API Lambda's entry point: a function URL event in (``AuthType: AWS_IAM``: the caller signed
with SigV4, and its IAM principal is in the event), the response out. One warm API per container."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from api.app import Api
from producer.client import Client
from shared.clients import Clients
from shared.grants import GrantStore
from shared.s3 import Bucket
from shared.settings import Settings

logger = Logger(service="srdb-api")
_api: Api | None = None


def build(settings: Settings) -> Api:
    clients = Clients.build(settings)
    return Api(Client(settings, s3=clients.s3, sqs=clients.sqs),
               grants=GrantStore(Bucket(clients.s3, settings.bucket)))


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    global _api
    if _api is None:
        _api = build(Settings.load())
    return _api.handle(event, context)
