"""What a batch did, as one value: each message's fate and the batch's figures. ``retry()`` is the one
place that decides which messages SQS must deliver again (``batchItemFailures``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.verdicts import Done, Ignored, Parsed, Refusal, Verdict


@dataclass(frozen=True)
class BatchStats:
    """What one batch did, for metrics: counts, time waited for locks, bytes committed, duration."""

    messages: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0  # copies that proved no job (forged or stray): done without touching any document
    lock_wait_ms: float = 0.0
    commit_bytes: int = 0
    duration_ms: float = 0.0


@dataclass(frozen=True)
class Fate:
    """One message's end in this batch: what parsing made of it, its job's verdict when it ran, and
    whether its document was written (True: the message is done)."""

    parsed: Parsed
    verdict: Verdict | None = None
    published: bool = False


@dataclass(frozen=True)
class BatchReport:
    fates: list[Fate] = field(default_factory=list)
    lock_wait_ms: float = 0.0
    commit_bytes: int = 0
    duration_ms: float = 0.0

    def retry(self) -> list[str]:
        """The message ids SQS must deliver again: those whose outcome was not published."""
        return sorted(f.parsed.record.message_id for f in self.fates if not f.published)

    def batch_item_failures(self) -> dict[str, Any]:
        """The Lambda response for an SQS event source with ReportBatchItemFailures."""
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self.retry()]}

    @property
    def stats(self) -> BatchStats:
        succeeded = sum(1 for f in self.fates if f.published and isinstance(f.verdict, Done) and f.verdict.outcome.ok)
        failed = sum(1 for f in self.fates if f.published and (
            isinstance(f.parsed, Refusal) or (isinstance(f.verdict, Done) and not f.verdict.outcome.ok)))
        dropped = sum(1 for f in self.fates if isinstance(f.parsed, Ignored) and f.parsed.dropped)
        return BatchStats(len(self.fates), succeeded, failed, len(self.retry()), dropped, self.lock_wait_ms,
                          self.commit_bytes, self.duration_ms)
