"""Packing SQS batch requests: at most ten entries each, and for SendMessageBatch at most 256 KiB of
bodies in all (less a kilobyte for attributes). Every batch request srdb makes is cut here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
MAX_SEND_BATCH = 10
MAX_SEND_BATCH_BYTES = 255 * 1024


def tens(items: list[T]) -> list[list[T]]:
    """``items`` in order, ten to a batch request (DeleteMessageBatch, ChangeMessageVisibilityBatch, …)."""
    return [items[i:i + MAX_SEND_BATCH] for i in range(0, len(items), MAX_SEND_BATCH)]


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
