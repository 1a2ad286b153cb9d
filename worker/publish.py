"""Stage four: each job's final status document (and its callback), and the FAILED documents of
refused messages. A message is done only once its document is written; if S3 fails, it is retried."""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from shared.errors import StorageError, UserError
from shared.job.keys import status_key
from shared.job.result import JobResult, JobState, epoch, iso
from shared.job.status import StatusStore
from shared.names import queue_name
from shared.sqs_batches import send_batches
from worker.handback import HandBacks
from worker.verdicts import Deferred, HandBack, Refusal, Task, Verdict

log = logging.getLogger("srdb.worker")
MAX_CALLBACK_BYTES = 240 * 1024


class Publisher:
    def __init__(self, status: StatusStore, sqs: Any, *, max_receive_count: int, now: Callable[[], float],
                 handbacks: HandBacks) -> None:
        self.status, self.sqs, self.max_receive_count, self.now = status, sqs, max_receive_count, now
        self.handbacks = handbacks
        self._callbacks: list[tuple[str, str, str]] = []  # queue, job id, body: sent by send_callbacks
        self._mutex = threading.Lock()

    def publish(self, task: Task, verdict: Verdict, etag: str | None) -> bool:
        """Write the job's final status document (and the callback). False: retry the message.
        ``etag``: the document's ETag as the worker knows it (the QUEUED one, or its RUNNING one). A job to
        hand back is queued for :class:`HandBacks` (the batch sends them once it is done)."""
        if isinstance(verdict, HandBack):
            if self.handbacks.add(task, task.sender, verdict.delay):
                if verdict.delay:
                    self._waiting(task, verdict, etag)
                return False
            verdict = Deferred(verdict.reason)
        if isinstance(verdict, Deferred):
            if task.record.receive_count >= self.max_receive_count:
                self._dead_letter(task, verdict, etag)
            return False
        outcome, finished = verdict.outcome, self.now()
        submitted = epoch(task.job.submitted_at)
        timings = {"run_ms": round(outcome.run_ms, 3)}
        if submitted is not None:
            timings["queued_ms"] = round(max(0.0, verdict.started - submitted) * 1000, 3)
            timings["total_ms"] = round(max(0.0, finished - submitted) * 1000, 3)
        state = JobState.SUCCEEDED if outcome.ok else JobState.FAILED
        if (outcome.error or {}).get("type") == "Cancelled":
            state = JobState.CANCELLED
        result = JobResult(
            task.job.job_id, state,
            database=task.job.database, columns=outcome.columns, types=outcome.types, rows=outcome.rows,
            rowcount=outcome.rowcount, lastrowid=outcome.lastrowid, error=outcome.error, parts=outcome.parts,
            version=verdict.version, submitted_at=task.job.submitted_at, started_at=iso(verdict.started),
            finished_at=iso(finished),
            timings=timings, job_digest=task.digest, created=verdict.created, snapshot=verdict.snapshot or None,
            label=task.job.summary,
        )
        try:
            # A read is only published over the document it saw, so a cancel that won the race stands.
            # A write's effect is committed whatever a late cancel said, so its result always lands.
            written = self.status.put(result, if_match=etag if task.read else None)
        except (StorageError, OSError) as exc:
            log.warning("job %s: result not published: %s; it will be retried", task.job.job_id, exc,
                        extra={"job_id": task.job.job_id})
            return False
        log.info("job %s %s on %s: %s, run %.0f ms", task.job.job_id, "read" if task.read else "write",
                 task.job.database, result.state.value, outcome.run_ms,
                 extra={"job_id": task.job.job_id, "database": task.job.database, "state": result.state.value,
                        "run_ms": round(outcome.run_ms, 3), "version": verdict.version})
        if written and task.job.reply_to:
            with self._mutex:
                self._callbacks.append((task.job.reply_to, task.job.job_id, self._callback_body(result)))
        return True

    def send_callbacks(self) -> None:
        """The callbacks of the results published since the last call, ten to a SendMessageBatch per queue.
        A callback queue that refuses is reported, not retried: the status document is the result."""
        with self._mutex:
            pending, self._callbacks = self._callbacks, []
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for queue_url, job_id, body in pending:
            by_queue[queue_url].append((job_id, body))
        for queue_url, items in by_queue.items():
            for batch in send_batches(items, lambda item: item[1]):
                try:
                    response = self.sqs.send_message_batch(QueueUrl=queue_url, Entries=[
                        {"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(batch)])
                    failed = [(batch[int(f["Id"])][0], f.get("Message", f.get("Code"))) for f in
                              response.get("Failed", [])]
                except Exception as exc:
                    failed = [(job_id, str(exc)) for job_id, _ in batch]
                for job_id, reason in failed:
                    log.warning("job %s: callback to %s failed: %s", job_id, queue_url, reason,
                                extra={"job_id": job_id})

    def refuse(self, refusal: Refusal) -> bool:
        """Write a refused message's FAILED document where it harms no other job. False: S3 failed, retry."""
        job_id = refusal.job_id
        log.warning("message %s (job %s) is refused: %s", refusal.record.message_id, job_id, refusal.error,
                    extra={"job_id": job_id, "message_id": refusal.record.message_id})
        result = JobResult(job_id, JobState.FAILED, error=refusal.error.to_json(), finished_at=iso(self.now()),
                           job_digest=refusal.digest)
        try:
            if refusal.etag is not None:
                self.status.put(result, if_match=refusal.etag)
            else:
                self.status.put(result, if_none_match=True)
        except StorageError:
            return False
        except UserError:
            pass  # the id is not one a key may hold: there is no document to write
        return True

    def _waiting(self, task: Task, verdict: HandBack, etag: str | None) -> None:
        """Say on the QUEUED document why the job waits (a lock another worker holds), once: a client's
        wait shows it instead of a silent QUEUED. Only over the version the worker knows (a cancel wins)."""
        if task.record.handbacks:
            return  # said on its first hand-back already
        waiting = JobResult(task.job.job_id, JobState.QUEUED, database=task.job.database,
                            submitted_at=task.job.submitted_at, job_digest=task.digest,
                            queue=queue_name(task.record.source) if task.record.source else None,
                            redriven_after=task.redriven_after, waiting=str(verdict.reason), label=task.job.summary)
        try:
            self.status.put(waiting, if_match=etag)
        except (StorageError, UserError) as exc:
            log.info("job %s: its wait was not shown: %s", task.job.job_id, exc)

    def _dead_letter(self, task: Task, verdict: Deferred, etag: str | None) -> None:
        """The last delivery failed too: SQS moves the message to the dead-letter queue, and the status
        document says why. It stays ``retryable`` (``srdb dlq redrive`` runs it again) unless it failed
        the same way before it was redriven: then it is settled, so a redrive cannot loop."""
        reason, count = verdict.reason, task.record.receive_count
        again = (task.redriven_after or {}).get("type") == reason.type
        then = ("it failed the same way before it was redriven, so it is settled FAILED and a redrive will not "
                "run it again" if again else "the job is in the dead-letter queue (srdb dlq redrive sends it back)")
        error = {"type": reason.type, "retryable": not again, "deliveries": count,
                 "message": f"gave up after {count} deliveries: {reason}; {then}"}
        result = JobResult(task.job.job_id, JobState.FAILED, database=task.job.database, error=error,
                           submitted_at=task.job.submitted_at, finished_at=iso(self.now()), job_digest=task.digest,
                           label=task.job.summary)
        try:
            self.status.put(result, if_match=etag)
        except StorageError as exc:
            log.warning("job %s: dead-letter status not written: %s", task.job.job_id, exc)

    @staticmethod
    def _callback_body(result: JobResult) -> str:
        body = result.to_bytes()
        if len(body) > MAX_CALLBACK_BYTES:
            body = json.dumps({"job_id": result.job_id, "state": result.state.value,
                               "status_key": status_key(result.job_id)}).encode()
        return body.decode()

