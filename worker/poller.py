"""What the Lambda event source mapping does, for running the worker outside Lambda.

Receive up to ten messages, hand them to ``worker.handler.handle`` as a real SQS event, then
delete exactly the messages the handler did not name in ``batchItemFailures``. The others stay
invisible until their visibility timeout ends and come back, and after ``maxReceiveCount``
receives SQS moves them to the dead-letter queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("srdb.poller")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def to_lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    records = []
    for m in messages:
        records.append({
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": dict(m.get("Attributes", {})),
            "messageAttributes": m.get("MessageAttributes", {}),
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })
    return {"Records": records}


class Poller:
    """Feeds one queue's batches to a handler until ``stop`` is set."""

    def __init__(self, sqs: Any, queue_url: str, handler: Handler, *, region: str, batch_size: int = 10,
                 wait_seconds: int = 1, stop: threading.Event | None = None) -> None:
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.region, self.batch_size, self.wait_seconds = region, batch_size, wait_seconds
        self.stop = stop or threading.Event()
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep polling: a failed batch comes back after its visibility timeout
                log.exception("batch failed")
                self.stop.wait(1.0)

    def poll_once(self) -> int:
        """Receive and run one batch; return how many messages it held."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        response = self.handler(to_lambda_event(messages, self.queue_arn, self.region), None)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start:start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return len(messages)
