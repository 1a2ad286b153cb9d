"""Stage one: a message becomes a task to run, a refusal, a message to let go, or one to retry.

A message runs only as the job its QUEUED document names: the document is written by the client
before the message is sent and carries the job's digest, so a message sent under another job's id,
before or after it, can neither run in its place nor change its document.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future

from shared.errors import Forbidden, InfrastructureError, InternalError, InvalidJob, UserError
from shared.grants import Grants, GrantStore
from shared.job.classify import may_read_only
from shared.job.envelope import Envelope, guess_job_id, open_envelope
from shared.job.model import Job
from shared.job.result import JobResult
from shared.job.routing import runs_as_read
from shared.job.status import StatusStore
from shared.names import queue_name
from shared.settings import Settings
from worker.verdicts import Ignored, Parsed, Record, Refusal, Retry, Task


class Parser:
    def __init__(self, status: StatusStore, settings: Settings, grants: GrantStore,
                 own_sender: Callable[[], str] = lambda: "",
                 ahead: Callable[[Job, Record], None] = lambda job, record: None) -> None:
        """``ahead``: told of each job as soon as its message is read, before its status document is (what
        the job will need may be fetched beside it); nothing is decided on it."""
        self.status, self.settings, self.grants, self.own_sender = status, settings, grants, own_sender
        self.ahead = ahead
        self._lock = threading.Lock()
        self._batch_grants: Grants | None = None
        self._reading: Future[Grants] | None = None
        self.allowed_reply_to = settings.allowed_reply_to()

    def begin_batch(self, pool: Executor | None = None) -> None:
        """A batch sees the grants as they are when it begins: one read per batch, started in ``pool`` at once,
        beside the status reads, rather than after the first of them (a round trip less per batch)."""
        with self._lock:
            self._batch_grants = None
            self._reading = pool.submit(self.grants.current) if pool is not None else None

    def _grants(self) -> Grants:
        with self._lock:
            reading, self._reading = self._reading, None
            if self._batch_grants is None:
                try:  # a read that failed is made again here, so one transient error fails no job
                    self._batch_grants = reading.result() if reading is not None else self.grants.current()
                except InfrastructureError:
                    self._batch_grants = self.grants.current()
            return self._batch_grants

    def parse(self, record: Record) -> Parsed:
        try:
            envelope = open_envelope(record.body)
        except UserError as exc:
            return Refusal(record, guess_job_id(record.body) or record.message_id, exc)
        try:
            if envelope.payload_key is not None:
                return self._claimed(record, envelope)
            job = Job.from_text(envelope.job_text or "")
            if envelope.job_id is not None and job.job_id != envelope.job_id:
                raise InvalidJob(f"the message names job {envelope.job_id} but carries job {job.job_id}")
        except UserError as exc:
            # A malformed message proves no job: its FAILED document goes only where none exists.
            return Refusal(record, envelope.job_id or guess_job_id(record.body) or record.message_id, exc)
        except InfrastructureError as exc:
            return Retry(record, exc)
        self.ahead(job, record)
        try:
            current, etag = self.status.get(job.job_id)
        except InfrastructureError as exc:
            return Retry(record, exc)
        return self._admit(record, job, current, etag)

    def _claimed(self, record: Record, envelope: Envelope) -> Parsed:
        """A claim check. Its payload key follows from its id, so anyone may send one for any job: it writes
        the job's document only when the message itself carries the digest the QUEUED document names —
        then a payload that is gone or was replaced fails the job, saying so; any other copy is dropped."""
        assert envelope.job_id is not None and envelope.payload_key is not None
        current, etag = self.status.get(envelope.job_id)
        proven = current is not None and envelope.digest is not None and envelope.digest == current.job_digest
        try:
            job = Job.from_text(self._payload(envelope.job_id, envelope.payload_key))
            if job.job_id != envelope.job_id or (envelope.digest is not None and job.digest() != envelope.digest):
                raise InvalidJob(f"the claim-checked body of job {envelope.job_id} (s3 key {envelope.payload_key}) "
                                 "is not the job that was submitted: it was replaced after the submit; submit "
                                 "the job again under a new id")
        except UserError as exc:
            if current is None:
                return Refusal(record, envelope.job_id, exc)
            if proven and not current.state.final:
                return Refusal(record, envelope.job_id, exc, etag=etag, digest=current.job_digest)
            return Ignored(record, f"claim check for job {envelope.job_id} that proves no job ({exc}); left alone",
                           dropped=True)
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
        if current is not None and current.queue and record.source and queue_name(record.source) != current.queue:
            return Ignored(record, f"job {job.job_id} was queued for {current.queue}, and this copy came through "
                                   f"{queue_name(record.source)}: left alone", dropped=True)
        if current is None:
            return Refusal(record, job.job_id, InvalidJob(
                f"job {job.job_id} has no status document: jobs are submitted by writing their QUEUED "
                "document first (srdb's clients do), so the worker can tell them from forgeries"), digest=digest)
        if current.job_digest != digest:
            return Ignored(record, f"job {job.job_id}: the message does not match the job its status document "
                                   "names; left alone", dropped=True)
        if current.settled:
            return Ignored(record, f"job {job.job_id} is {current.state.value} already")  # CANCELLED stops here
        try:
            self._check(job)
            # A transaction's preview commits nothing: it runs beside the reads, on a scratch copy.
            read = runs_as_read(job)
            sender = self._sender(record)
            try:
                self._grants().check(record.source, sender, job.database, writes=not read)
            except Forbidden:
                # A reader's job that sqlparse could not classify runs where SQLite refuses every write.
                if read or job.transaction is not None or not may_read_only(job):
                    raise
                self._grants().check(record.source, sender, job.database, writes=False)
                read = True
        except UserError as exc:
            return Refusal(record, job.job_id, exc, etag=etag, digest=digest)
        except InfrastructureError as exc:
            return Retry(record, exc)
        return Task(record, job, read, etag, digest, current.redriven_after, sender)

    def _sender(self, record: Record) -> str:
        """The SenderId a message's grants are checked for: its own, or — for a copy a worker handed back
        (worker/handback.py), which SQS stamps with the worker's — the one the copy vouches for."""
        if record.handed_back_for and record.sender and record.sender == self.own_sender():
            return "" if record.handed_back_for == "-" else record.handed_back_for
        return record.sender

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
