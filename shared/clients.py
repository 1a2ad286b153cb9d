"""Building boto3 clients from settings: only handlers and the command line call this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from shared.settings import Settings


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by boto3 and aioboto3 clients."""
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    if settings.aws_access_key_id:
        kwargs["aws_access_key_id"] = settings.aws_access_key_id
        kwargs["aws_secret_access_key"] = settings.aws_secret_access_key
    return kwargs


def client_config(settings: Settings, *, fail_fast: bool = False) -> Config:
    """"standard" retries throttling, 5xx and connection errors with jittered backoff. ``fail_fast`` (the
    command line): an endpoint that does not answer ends the command in seconds, not a minute."""
    pool = max(10, settings.transfer_concurrency + settings.io_concurrency)
    if fail_fast:
        return Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=pool,
                      connect_timeout=1.5, read_timeout=30)
    return Config(retries={"max_attempts": 8, "mode": "standard"}, max_pool_connections=pool,
                  connect_timeout=5, read_timeout=30)


@dataclass(frozen=True)
class Clients:
    s3: Any
    sqs: Any
    ec2: Any

    @classmethod
    def build(cls, settings: Settings, *, fail_fast: bool = False) -> Clients:
        session = boto3.session.Session(profile_name=settings.profile or None)
        kwargs, config = client_kwargs(settings), client_config(settings, fail_fast=fail_fast)
        return cls(*(session.client(name, config=config, **kwargs) for name in ("s3", "sqs", "ec2")))


def caller_id(settings: Settings) -> Callable[[], str]:
    """This process's SenderId as SQS stamps it on the messages it sends (STS GetCallerIdentity's
    ``UserId``: ``AROA…:<session>`` for a role), asked once; "" while STS cannot say."""
    found: list[str] = []

    def ask() -> str:
        if not found:
            try:
                sts = boto3.session.Session(profile_name=settings.profile or None).client(
                    "sts", config=client_config(settings), **client_kwargs(settings))
                found.append(str(sts.get_caller_identity()["UserId"]))
            except Exception:  # no identity: no handed-back copy is believed, which is the safe side
                return ""
        return found[0]

    return ask
