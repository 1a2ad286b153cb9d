"""Waits that speak: many jobs polled together with a progress bar, one job's state and time on the
terminal, and what Ctrl-C did to the jobs it cancelled."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from tqdm import tqdm

from producer.client import Client
from producer.protocol import poll_delays
from shared.errors import SrdbError
from shared.job.result import JobResult, JobState


def wait_all(client: Client, job_ids: list[str], *, timeout: float | None = 600.0, progress: bool = True,
             concurrency: int = 16) -> list[JobResult]:
    """Each job's result, in the order given. A job still running at the deadline comes back in its
    current state (not final); an unknown id comes back NOT_FOUND."""
    latest: dict[str, JobResult] = {}
    pending = list(dict.fromkeys(job_ids))
    deadline = None if timeout is None else client.clock() + timeout
    bar = tqdm(total=len(pending), unit="jobs", desc="wait", disable=not progress, leave=False)
    with ThreadPoolExecutor(max(1, min(concurrency, len(pending)))) as pool:
        for delay in poll_delays(cap=2.0):
            for result in pool.map(client.status, pending):
                latest[result.job_id] = result
            still = [j for j in pending if not latest[j].state.final and latest[j].state is not JobState.NOT_FOUND]
            bar.update(len(pending) - len(still))
            pending = still
            if not pending or (deadline is not None and client.clock() + delay > deadline):
                break
            client.sleep(delay)
    bar.close()
    return [latest[j] for j in job_ids]


class Speaker:
    """What a wait says: once it passes a second, the job's id, state and the time waited. On a terminal
    the line is rewritten in place as the state changes; elsewhere (``live`` false) a line is printed
    each time the state changes, or nothing at all when ``quiet``."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None, quiet: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.quiet = quiet and not self.live
        self.clock, self.started = clock, clock()
        self.said: JobState | None = None
        self.shown = False
        self.job_id: str | None = None

    def __call__(self, result: JobResult) -> None:
        if self.job_id not in (None, result.job_id):  # one speaker serves a transaction's waits, one by one
            self.said, self.started = None, self.clock() - 1.0  # it is first called a second into a wait
        self.job_id = result.job_id
        if self.quiet or (not self.live and result.state is self.said):
            return
        self.said = result.state
        since = f" since {result.started_at}" if result.started_at else ""
        why = f": {result.waiting}" if result.waiting and result.state is JobState.QUEUED else ""
        line = (f"waiting for job {result.job_id} ({result.state.value}{since}{why}, "
                f"{self.clock() - self.started:.0f}s); Ctrl-C cancels it")
        if self.live:
            self.stream.write("\r\x1b[K" + line)
            self.shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Take the live line away before anything else is printed."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def cancel_all(client: Client, job_ids: list[str]) -> list[str]:
    """Cancel each job a worker has not finished (Ctrl-C during a wait); a line per job saying what
    became of it."""
    lines = []
    for job_id in job_ids:
        try:
            state = client.cancel(job_id)
        except SrdbError as exc:
            lines.append(f"job {job_id}: may still run (cancelling it failed: {exc})")
            continue
        if state is JobState.CANCELLED:
            lines.append(f"job {job_id}: cancelled")
        elif state is JobState.NOT_FOUND:
            lines.append(f"job {job_id}: never sent")
        else:
            lines.append(f"job {job_id}: {state.value} (it finished before the cancel; "
                         f"`srdb result {job_id}` shows it)")
    return lines
