"""One packer for every SendMessageBatch the worker makes (callbacks and hand-backs)."""

from __future__ import annotations

from shared.sqs_batches import send_batches


def test_ten_messages_and_256_kib_to_a_request_at_most() -> None:
    small = [f"m{i}" for i in range(23)]
    assert [len(b) for b in send_batches(small, str)] == [10, 10, 3]
    large = ["x" * 100 * 1024 for _ in range(5)]  # a hand-back copies bodies of up to 240 KiB
    assert [len(b) for b in send_batches(large, str)] == [2, 2, 1]
    assert [m for b in send_batches(small, str) for m in b] == small  # in order, none lost
