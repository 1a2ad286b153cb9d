"""How a job's message is routed on a FIFO queue, so that writes rarely meet.

On a FIFO queue (its name ends ``.fifo``) every write job of a database carries that database as its
``MessageGroupId``: SQS never hands two batches of one group to two consumers at once, so one
database's writes are never run by two workers at the same moment, and a worker need not take the
database's write lock at all — the conditional manifest commit stays the fence for the rare copy
that meets another (a visibility timeout that ran out, a job sent through a second queue). A job that
only reads is its own group (its id), so reads spread over every consumer as on a standard queue.
Every send gets a fresh ``MessageDeduplicationId``: srdb runs a job once by its own ledger, and SQS's
five-minute deduplication would drop a deliberate resend (a redrive, a hand-back).

A standard queue takes none of this: its messages carry no group, and writes take the lock.
"""

from __future__ import annotations

import uuid

from shared.errors import SrdbError
from shared.job.classify import is_read_job
from shared.job.model import Job


def is_fifo(queue: str) -> bool:
    """True for a FIFO queue, named by its URL, ARN or name."""
    return queue.endswith(".fifo")


def runs_as_read(job: Job) -> bool:
    """Whether the worker runs ``job`` on the read path: read-only or as of an old version, a statement
    sqlparse knows reads, or a transaction's preview (its commit is a write)."""
    if job.transaction is not None:
        return job.transaction.preview
    return job.read_only or job.as_of is not None or is_read_job(job)


def message_group(job: Job) -> str:
    """A write's group is its database; a read is a group of its own. A job the worker will refuse (no
    statement, say) goes as a write: it fails there, saying why."""
    try:
        read = runs_as_read(job)
    except SrdbError:
        read = False
    return job.job_id if read else job.database


def routing(queue: str, job: Job) -> dict[str, str]:
    """The SendMessage fields a job's message needs on ``queue``: none on a standard queue."""
    return fifo_fields(message_group(job)) if is_fifo(queue) else {}


def fifo_fields(group: str) -> dict[str, str]:
    """A FIFO message's group, and a deduplication id of its own (every send is meant, resends too)."""
    return {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex}
