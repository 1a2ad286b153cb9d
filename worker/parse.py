"""Stage one: a message becomes a task to run, a refusal, a message to let go, or one to retry.

A message runs only as the job its QUEUED document names: the document is written by the client
before the message is sent and carries the job's digest, so a message sent under another job's id,
before or after it, can neither run in its place nor change its document.
"""

from __future__ import annotations

import threading

from shared.errors import InfrastructureError, InternalError, InvalidJob, UserError
from shared.grants import Grants, GrantStore
from shared.job.classify import is_read_job
from shared.job.envelope import guess_job_id, open_envelope
from shared.job.model import Job
from shared.job.result import JobResult
from shared.job.status import StatusStore
from shared.settings import Settings
from worker.verdicts import Ignored, Parsed, Record, Refusal, Retry, Task


class Parser:
    def __init__(self, status: StatusStore, settings: Settings, grants: GrantStore) -> None:
        self.status, self.settings, self.grants = status, settings, grants
        self._lock = threading.Lock()
        self._batch_grants: Grants | None = None
        self.allowed_reply_to = settings.allowed_reply_to()

    def begin_batch(self) -> None:
        """A batch sees the grants as they are when it first needs them: one read per batch."""
        with self._lock:
            self._batch_grants = None

    def _grants(self) -> Grants:
        with self._lock:
            if self._batch_grants is None:
                self._batch_grants = self.grants.current()
            return self._batch_grants

    def parse(self, record: Record) -> Parsed:
        try:
            envelope = open_envelope(record.body)
        except UserError as exc:
            return Refusal(record, guess_job_id(record.body) or record.message_id, exc)
        current, etag = None, None
        try:
            text = envelope.job_text
            if envelope.payload_key is not None:
                assert envelope.job_id is not None
                current, etag = self.status.get(envelope.job_id)
                text = self._payload(envelope.job_id, envelope.payload_key)
            job = Job.from_text(text or "")
            if envelope.job_id is not None and job.job_id != envelope.job_id:
                raise InvalidJob(f"the message names job {envelope.job_id} but carries job {job.job_id}")
        except UserError as exc:
            # Over the QUEUED document only when the message cannot be anyone's job but that one (a claim
            # check's payload key follows from its id, so a missing payload fails every copy alike).
            job_id = envelope.job_id or guess_job_id(record.body) or record.message_id
            over = etag if current is not None and not current.state.final else None
            return Refusal(record, job_id, exc, etag=over)
        except InfrastructureError as exc:
            return Retry(record, exc)
        if envelope.payload_key is None:
            current, etag = self.status.get(job.job_id)
        return self._admit(record, job, current, etag)

    def _payload(self, job_id: str, key: str) -> str:
        data = self.status.get_bytes(key, missing_ok=True)
        if data is None:
            raise InvalidJob(f"the claim-checked body of job {job_id} is missing (s3 key {key}): "
                             "it expired or was deleted; submit the job again")
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise InvalidJob(f"claim-checked payload is not UTF-8: {exc}") from None

    def _admit(self, record: Record, job: Job, current: JobResult | None, etag: str | None) -> Parsed:
        digest = job.digest()
        if current is None:
            return Refusal(record, job.job_id, InvalidJob(
                f"job {job.job_id} has no status document: jobs are submitted by writing their QUEUED "
                "document first (srdb's clients do), so the worker can tell them from forgeries"), digest=digest)
        if current.job_digest != digest:
            return Ignored(record, f"job {job.job_id}: the message does not match the job its status document "
                                   "names; left alone")
        if current.settled:
            return Ignored(record, f"job {job.job_id} is {current.state.value} already")  # CANCELLED stops here
        try:
            self._check(job)
            # A transaction's preview commits nothing: it runs beside the reads, on a scratch copy.
            read = (job.read_only or job.as_of is not None or is_read_job(job) if job.transaction is None
                    else job.transaction.preview)
            self._grants().check(record.source, record.sender, job.database, writes=not read)
        except UserError as exc:
            return Refusal(record, job.job_id, exc, etag=etag, digest=digest)
        except InfrastructureError as exc:
            return Retry(record, exc)
        return Task(record, job, read, etag, digest, current.redriven_after)

    def _check(self, job: Job) -> None:
        """What this deployment allows beyond the job schema."""
        if job.reply_to and job.reply_to not in self.allowed_reply_to:
            raise InvalidJob(f"reply_to queue {job.reply_to} is not allowed; allowed queues are set by "
                             "SRDB_CALLBACK_QUEUE_URL and SRDB_REPLY_TO_ALLOWED")
        if job.timeout is not None and job.timeout > self.settings.max_job_timeout:
            raise InvalidJob(f"timeout {job.timeout:g}s is over this deployment's limit of "
                             f"{self.settings.max_job_timeout:g}s (SRDB_MAX_JOB_TIMEOUT, below the worker's own "
                             "timeout)")


def parse_failed(record: Record, exc: Exception) -> Parsed:
    """Whatever parsing one message raised is that message's own refusal."""
    return Refusal(record, guess_job_id(record.body) or record.message_id, InternalError.wrapping(exc))
