"""Packing messages into SendMessageBatch requests: at most ten messages and 256 KiB in all per request."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
MAX_SEND_BATCH = 10
MAX_SEND_BATCH_BYTES = 256 * 1024


def send_batches(items: list[T], body: Callable[[T], str]) -> list[list[T]]:
    """``items`` in order, cut into requests SQS takes: ten messages at most, and no more bytes of
    ``body(item)`` together than one request may carry."""
    batches: list[list[T]] = []
    size = 0
    for item in items:
        length = len(body(item).encode())
        if not batches or len(batches[-1]) == MAX_SEND_BATCH or size + length > MAX_SEND_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += length
    return batches
