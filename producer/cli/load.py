"""``srdb load``: a CSV file into a table, as executemany jobs packed near the message size limit."""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from producer.client import Client
from producer.protocol import Submission, prepare
from shared.errors import ClientSideError, JobFailed
from shared.job.envelope import MAX_INLINE_MESSAGE
from shared.job.model import Job
from shared.job.result import JobState

# One match tells an integer (group 1) from a real. ASCII digits only.
_NUMBER = re.compile(r"([-+]?\d{1,19})|[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NUMBER_START = frozenset("0123456789+-.")
_NUMBER_END = frozenset("0123456789.")
TARGET_JOB_BYTES = MAX_INLINE_MESSAGE - 16 * 1024
# A job's JSON at most, however well it compresses: what one worker decodes and runs in one go.
MAX_JOB_JSON = 4 * 1024 * 1024


class LoadInterrupted(Exception):
    """Ctrl-C during a load: what had committed, and the jobs sent but not yet finished (to cancel)."""

    def __init__(self, rows: int, jobs: int, pending: list[str]) -> None:
        super().__init__(f"interrupted after {rows} rows")
        self.rows, self.jobs, self.pending = rows, jobs, pending


@dataclass(frozen=True)
class LoadReport:
    rows: int
    jobs: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def quote_identifier(name: str) -> str:
    if not name or "\x00" in name:
        raise ClientSideError(f"{name!r} is not a usable column or table name")
    return '"' + name.replace('"', '""') + '"'


def typed(value: str) -> Any:
    """CSV text to a SQLite value: integers and reals keep their type, an empty field is NULL."""
    if value == "":
        return None
    if value[0] not in _NUMBER_START or value[-1] not in _NUMBER_END:
        return value  # the cheap test first: most text is not a number
    number = _NUMBER.fullmatch(value)
    if number is None:
        return value
    if number.group(1):
        integer = int(value)
        if _INT64_MIN <= integer <= _INT64_MAX:
            return integer
    return float(value)  # a real, or an integer too large for SQLite's 64 bits


class Sizer:
    """How much JSON to pack into one job so that, compressed, it fills a message.

    Starts from the plain message size and learns the compression ratio from each job sent,
    keeping a margin; a job that still comes out too large travels by claim check, so the
    estimate only decides efficiency, never correctness."""

    def __init__(self, margin: float = 0.8, most: int = MAX_JOB_JSON) -> None:
        self.target = TARGET_JOB_BYTES
        self.margin, self.most = margin, most

    def learn(self, submission: Submission) -> None:
        if submission.compressed:
            ratio = submission.text_bytes / max(1, len(submission.body))
            self.target = int(min(self.most, max(TARGET_JOB_BYTES, TARGET_JOB_BYTES * ratio * self.margin)))
        elif not submission.inline:
            self.target = max(TARGET_JOB_BYTES, int(self.target * self.margin))  # overshot: back off


def batches(rows: Iterator[list[str]], width: int, rows_per_job: int | None,
            sizer: Sizer | None = None) -> Iterator[list[list[Any]]]:
    """Pack rows into parameter sets whose JSON stays near ``sizer.target`` bytes.

    The size is estimated from the CSV text (a value's JSON is its text, plus quotes for
    strings)."""
    sizer = sizer or Sizer()
    batch: list[list[Any]] = []
    size = 0
    for line, row in enumerate(rows, start=2):
        if len(row) != width:
            raise ClientSideError(f"line {line}: {len(row)} fields where the header has {width}")
        values = [typed(v) for v in row]
        cost = sum(map(len, row)) + 4 * width + 2
        if batch and (size + cost > sizer.target or (rows_per_job and len(batch) >= rows_per_job)):
            yield batch
            batch, size = [], 0
        batch.append(values)
        size += cost
    if batch:
        yield batch


def load_csv(client: Client, database: str, table: str, path: Path, *, rows_per_job: int | None = None,
             concurrency: int = 8, progress: bool = True, timeout: float = 600.0,
             job_timeout: float | None = None) -> LoadReport:
    """Create the table when missing, then send the rows; returns once every job has succeeded.
    LoadInterrupted on Ctrl-C, naming the jobs sent and not yet finished."""
    start = time.monotonic()
    with open(path, newline="", encoding="utf-8") as f:
        total = max(0, sum(1 for _ in f) - 1)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ClientSideError(f"{path} is empty: the first line must name the columns") from None
        columns = ", ".join(quote_identifier(c) for c in header)
        client.query(database, f"CREATE TABLE IF NOT EXISTS {quote_identifier(table)} ({columns})",
                     timeout=timeout)
        insert = (f"INSERT INTO {quote_identifier(table)} ({columns}) "
                  f"VALUES ({', '.join('?' for _ in header)})")
        bar = tqdm(total=total, unit="rows", disable=not progress, desc=f"load {table}", unit_scale=True)
        pending: list[tuple[Future[str], int]] = []
        jobs = rows = 0
        sizer = Sizer()
        sent: list[str] = []
        with ThreadPoolExecutor(concurrency) as pool:
            try:
                for batch in batches(reader, len(header), rows_per_job, sizer):
                    submission = prepare(Job.create(database, insert, param_sets=list(batch), timeout=job_timeout))
                    sizer.learn(submission)
                    sent.append(submission.job.job_id)
                    pending.append((pool.submit(client.submit_prepared, submission), len(batch)))
                    jobs += 1
                    # Bound what is in flight, so memory stays flat whatever the file size.
                    if len(pending) >= 4 * concurrency:
                        rows += _wait_job(client, pending.pop(0), bar, timeout)
                while pending:
                    rows += _wait_job(client, pending.pop(0), bar, timeout)
            except KeyboardInterrupt:
                bar.close()
                for future, _ in pending:
                    future.cancel()
                raise LoadInterrupted(rows, jobs - len(pending), sent[len(sent) - len(pending):]) from None
        bar.close()
    return LoadReport(rows, jobs, time.monotonic() - start)


def _wait_job(client: Client, item: tuple[Future[str], int], bar: Any, timeout: float) -> int:
    future, count = item
    result = client.wait(future.result(), timeout)
    if result.state is not JobState.SUCCEEDED:
        raise JobFailed(result.job_id, result.error or {"type": result.state.value, "message": ""})
    bar.update(count)
    return count
