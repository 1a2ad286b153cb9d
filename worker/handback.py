"""Handing a job back to its queue when the batch ran out of time before it started.

A message that a batch leaves to SQS redelivery uses up one of its deliveries, and after
``maxReceiveCount`` of them SQS moves it to the dead-letter queue. Time that earlier jobs of the batch
used is not the job's fault: a client's innocent write behind others' long jobs would be dead-lettered
for them. So a job that could not start is sent again as a new message — the same body, to the queue
it came through — and the old one is deleted: the copy starts with its deliveries unused.

The copy is the worker's message, so SQS stamps it with the worker's SenderId; it carries the SenderId
of the message it copies (``srdb-sender``), which the parser believes only when the copy's own SenderId
is the worker's (no client can send as the worker). A job is handed back at most ``MAX_HANDBACKS`` times;
after that it takes SQS's redelivery like any deferred job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from shared.job.routing import fifo_fields, is_fifo
from shared.names import queue_name
from shared.sqs_batches import send_batches
from worker.verdicts import Task

log = logging.getLogger("srdb.worker")
HANDBACKS = "srdb-handbacks"
SENDER = "srdb-sender"
MAX_HANDBACKS = 20


def _timing(source: str, task: Task, delay: int) -> dict[str, Any]:
    """A copy's delay on a standard queue; on a FIFO queue, which takes no delay per message, its group
    (the job's database, or its own for a read, as the parser routed it: shared/job/routing.py)."""
    if is_fifo(source):
        return fifo_fields(task.job.job_id if task.read else task.job.database)
    return {"DelaySeconds": delay}


def handed_back(attributes: Mapping[str, Any]) -> tuple[int, str]:
    """(times handed back, the original SenderId) from a Lambda record's message attributes."""

    def value(name: str) -> str:
        found = attributes.get(name) or {}
        return str(found.get("stringValue") or found.get("StringValue") or "")

    count = value(HANDBACKS)
    return (int(count) if count.isdigit() else 0), value(SENDER)


class HandBacks:
    """The jobs of a batch to hand back, sent ten to a SendMessageBatch per queue when the batch is done."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self._pending: list[tuple[Task, str, int]] = []  # the task, the SenderId its copy vouches for, delay
        self._urls: dict[str, str] = {}
        self._mutex = threading.Lock()

    def add(self, task: Task, sender: str, delay: int = 0) -> bool:
        """Queue ``task`` to be handed back (invisible ``delay`` seconds); False when it was handed back too
        often already."""
        if task.record.handbacks >= MAX_HANDBACKS or not task.record.source:
            return False
        with self._mutex:
            self._pending.append((task, sender, delay))
        return True

    def send(self) -> set[str]:
        """Send the copies; the message ids whose copy was sent (those are done)."""
        with self._mutex:
            pending, self._pending = self._pending, []
        by_queue: dict[str, list[tuple[Task, str, int]]] = {}
        for item in pending:
            by_queue.setdefault(item[0].record.source, []).append(item)
        sent: set[str] = set()
        for source, items in by_queue.items():
            for batch in send_batches(items, lambda item: item[0].record.body):
                sent |= self._send(source, batch)
        return sent

    def _send(self, source: str, items: list[tuple[Task, str, int]]) -> set[str]:
        entries = [{"Id": str(i), "MessageBody": task.record.body, **_timing(source, task, delay),
                    "MessageAttributes": {
                        HANDBACKS: {"DataType": "Number", "StringValue": str(task.record.handbacks + 1)},
                        SENDER: {"DataType": "String", "StringValue": sender or "-"}}}
                   for i, (task, sender, delay) in enumerate(items)]
        try:
            response = self.sqs.send_message_batch(QueueUrl=self._url(source), Entries=entries)
        except Exception as exc:  # the messages stay on the queue: SQS delivers them again
            log.warning("handing %d job(s) back to %s failed: %s", len(items), source, exc)
            return set()
        failed = {int(f["Id"]) for f in response.get("Failed", [])}
        return {task.record.message_id for i, (task, _, _) in enumerate(items) if i not in failed}

    def _url(self, source: str) -> str:
        if source not in self._urls:
            account = source.split(":")[4] if source.count(":") >= 5 else None
            kwargs = {"QueueOwnerAWSAccountId": account} if account else {}
            self._urls[source] = str(self.sqs.get_queue_url(QueueName=queue_name(source), **kwargs)["QueueUrl"])
        return self._urls[source]
