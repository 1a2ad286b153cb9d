"""What the Lambda event source mapping does, for running the worker outside Lambda.

Receive a batch (up to ``batch_size`` messages, gathered for at most ``window`` seconds, as
``BatchSize`` and ``MaximumBatchingWindowInSeconds`` do), hand it to
``worker.handler.handle`` as a real SQS event, then
delete exactly the messages the handler did not name in ``batchItemFailures``. The others stay
invisible until their visibility timeout ends and come back, and after ``maxReceiveCount``
receives SQS moves them to the dead-letter queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.job.routing import is_fifo
from shared.sqs_batches import tens

log = logging.getLogger("srdb.poller")
# Seconds between short polls of a FIFO queue that had nothing to give: 0.1 after a batch, doubling while the
# polls come back empty, up to 0.4. A worker that just ran a batch polls again at once, and soon, so a busy
# group tends to stay with it; one that keeps finding nothing (its groups taken by others) asks less often.
FIFO_IDLE_POLL = 0.1
FIFO_IDLE_MAX = 0.4
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def to_lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    records = []
    for m in messages:
        records.append({
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": dict(m.get("Attributes", {})),
            # Lambda spells an attribute's fields in camel case.
            "messageAttributes": {name: {"stringValue": a.get("StringValue"), "dataType": a.get("DataType")}
                                  for name, a in m.get("MessageAttributes", {}).items()},
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })
    return {"Records": records}


class Poller:
    """Feeds one queue's batches to a handler until ``stop`` is set."""

    def __init__(self, sqs: Any, queue_url: str, handler: Handler, *, region: str, batch_size: int = 10,
                 window: float = 0.0, wait_seconds: int = 1, stop: threading.Event | None = None) -> None:
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.region, self.batch_size, self.window, self.wait_seconds = region, batch_size, window, wait_seconds
        self.stop = stop or threading.Event()
        self.fifo = is_fifo(queue_url)
        self._idle = FIFO_IDLE_POLL
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
        if self.fifo:
            # SQS gives a FIFO group to one receiver at a time. moto looks at the groups in flight once, when
            # a poll begins, so a long poll can take a group another receiver took while it waited; short
            # polls narrow that to polls that overlap (tests/integration/test_fifo.py says what still can).
            messages = self._receive(0)
            if not messages and self.wait_seconds:
                self.stop.wait(self._idle)
                self._idle = min(self._idle * 2, FIFO_IDLE_MAX)
            elif messages:
                self._idle = FIFO_IDLE_POLL
        else:
            messages = self._receive(self.wait_seconds)
        if not messages:
            return 0
        deadline = time.monotonic() + self.window
        while len(messages) < self.batch_size and time.monotonic() < deadline:
            more = self._receive(0)
            if not more:
                break
            messages += more
        response = self.handler(to_lambda_event(messages, self.queue_arn, self.region), None)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for chunk in tens(done):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return len(messages)

    def _receive(self, wait: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, self.batch_size), WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages
