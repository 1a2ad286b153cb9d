"""Waiting for many jobs through one queue instead of polling S3 for each.

Polling costs a GET per job every 50 ms to 1 s of its wait: about ten for a job that takes a couple of
seconds from submit to result. A client given a **wait queue** (``SRDB_WAIT_QUEUE_URL``: an SQS queue
only this client reads, which the worker may send to — the stack's callback queue for one consumer,
or a queue of its own named in ``SRDB_REPLY_TO_ALLOWED``) sends its jobs with ``reply_to`` set to it.
The worker posts each result there, ten to a request; one long poll here receives up to ten of them,
whoever is waiting, and one DeleteMessageBatch removes them. A wait then reads the job's status
document once: about 1.3 requests instead of ten, and the wait ends as soon as the result is posted,
with no polling interval to sit out.

The queue is a signal, never the record: a message only says "job X is done", and the result is read
from ``results/<id>.json`` as always, so a forged or stale message costs one GET and nothing else. A
wait still reads the status document every few seconds (``Client.wait``), so a callback the worker
could not send (it logs it and goes on) costs latency, never the result. A message for an id nobody
here expects (another run of this client) is deleted and dropped.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

log = logging.getLogger("srdb.client")
LONG_POLL = 2  # seconds a receive waits for a message: how long the thread outlives the last wait


class Waiter:
    """One receiving thread for every wait of a client; started on demand, gone when nobody waits."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs, self.queue_url = sqs, queue_url
        self._arrived: set[str] = set()
        self._expected: set[str] = set()
        self._waiting: dict[str, int] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def expect(self, job_id: str) -> None:
        """A job was sent with this queue as its ``reply_to``: keep its result when it comes."""
        with self._changed:
            self._expected.add(job_id)

    def expects(self, job_id: str) -> bool:
        with self._changed:
            return job_id in self._expected

    def wait(self, job_id: str, seconds: float) -> bool:
        """True when the worker said within ``seconds`` that the job is done (read its document then)."""
        with self._changed:
            if job_id not in self._expected:
                return False
            self._waiting[job_id] = self._waiting.get(job_id, 0) + 1
            self._start()
            try:
                signalled = self._changed.wait_for(lambda: job_id in self._arrived, timeout=seconds)
                self._arrived.discard(job_id)  # a signal is used once
                return signalled
            finally:
                self._waiting[job_id] -= 1
                if not self._waiting[job_id]:
                    del self._waiting[job_id]

    def forget(self, job_id: str) -> None:
        """The caller has the job's final result: nothing more to expect for it."""
        with self._changed:
            self._expected.discard(job_id)
            self._arrived.discard(job_id)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._receive, name="srdb-waiter", daemon=True)
            self._thread.start()

    def _receive(self) -> None:
        while True:
            with self._changed:
                if not self._waiting:
                    self._thread = None
                    return
            try:
                messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                    WaitTimeSeconds=LONG_POLL).get("Messages", [])
            except Exception as exc:  # the waits fall back to reading S3; try again on the next turn
                log.warning("wait queue %s: %s", self.queue_url, exc)
                with self._changed:
                    self._changed.wait(1.0)
                continue
            done = [_job_id(m["Body"]) for m in messages]
            if messages:
                try:
                    self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
                except Exception as exc:  # they come back after their visibility timeout, and are dropped
                    log.warning("wait queue %s: delete failed: %s", self.queue_url, exc)
            with self._changed:
                self._arrived.update(j for j in done if j in self._expected)
                self._changed.notify_all()


def _job_id(body: str) -> str:
    """The id a callback names ('' when it names none): the worker's result document, or its short form."""
    try:
        return str(json.loads(body)["job_id"])
    except (ValueError, KeyError, TypeError):
        return ""
