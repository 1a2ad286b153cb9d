"""Stage three: one database's read jobs, run concurrently, each on its own read-only connection to
the local copy (or to an old snapshot, for reads ``as_of`` it)."""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

from shared.errors import InfrastructureError, StorageError, UserError, VersionNotFound, no_version_yet
from shared.guard import Guard, open_job_connection
from shared.job.model import AsOf, Job, as_of_point
from shared.snapshot.history import History
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import SnapshotStore
from worker.execute import Outcome, run_job
from worker.results import ResultSink
from worker.verdicts import Deferred, Done, GroupResult, Task, Verdict, deferred
from worker.writes import OUT_OF_TIME


class ReadStage:
    def __init__(
        self,
        store: SnapshotStore,
        history: History,
        *,
        concurrency: int,
        sink: Callable[[Job], ResultSink],
        budget: Callable[[Job], float | None],
        now: Callable[[], float],
        watch: Callable[[Task], AbstractContextManager[threading.Event]],
    ) -> None:
        self.store, self.history, self.concurrency = store, history, concurrency
        self.sink, self.budget, self.now, self.watch = sink, budget, now, watch

    def run(self, database: str, tasks: list[Task]) -> GroupResult:
        try:
            with self.store.reader(database) as snapshot:
                if snapshot.manifest is None:
                    return GroupResult(self._no_version_yet(database, tasks))
                by_as_of: dict[AsOf | None, list[Task]] = defaultdict(list)
                for task in tasks:
                    by_as_of[task.job.as_of].append(task)
                verdicts: dict[str, Verdict] = {}
                for as_of, group in by_as_of.items():
                    verdicts.update(self._as_of(database, as_of, group, snapshot.path, snapshot.version,
                                                snapshot.manifest))
                return GroupResult(verdicts)
        except InfrastructureError as exc:
            return GroupResult(deferred(tasks, exc))

    def _as_of(self, database: str, as_of: AsOf | None, tasks: list[Task], path: Path, version: int,
               current: Manifest) -> dict[str, Verdict]:
        if as_of is None:
            return self._read_file(path, version, tasks)
        try:
            old = self.history.resolve(database, as_of_point(as_of), current)
            at = path if old.version == version else self.store.materialize(database, old)
        except UserError as exc:
            return {t.record.message_id: Done(Outcome.failed(t.job.job_id, exc), None, self.now()) for t in tasks}
        except (InfrastructureError, OSError) as exc:
            return deferred(tasks, exc if isinstance(exc, InfrastructureError) else StorageError(str(exc)))
        return self._read_file(at, old.version, tasks)

    def _no_version_yet(self, database: str, tasks: list[Task]) -> dict[str, Verdict]:
        """Decided here, once, for every client: a database no write has created reads as an empty
        database at version 0 (as a new SQLite file does), and a failure says why it is empty."""
        why = no_version_yet(database)
        old = [t for t in tasks if t.job.as_of is not None]
        verdicts: dict[str, Verdict] = {
            t.record.message_id: Done(Outcome.failed(t.job.job_id, VersionNotFound(why)), None, self.now())
            for t in old}
        for message_id, verdict in self._read_file(None, 0, [t for t in tasks if t.job.as_of is None]).items():
            if isinstance(verdict, Done) and verdict.outcome.error is not None:
                error = {**verdict.outcome.error, "message": f"{verdict.outcome.error['message']} ({why})"}
                verdict = replace(verdict, outcome=replace(verdict.outcome, error=error))
            verdicts[message_id] = verdict
        return verdicts

    def _read_file(self, path: Path | None, version: int, tasks: list[Task]) -> dict[str, Verdict]:
        """Read ``path`` (None: an empty database)."""

        def read(task: Task) -> Verdict:
            budget = self.budget(task.job)
            if budget is None:
                return Deferred(OUT_OF_TIME)
            started = self.now()
            with self.watch(task) as cancelled:
                guard = Guard(read_only=True, cancelled=cancelled)
                try:
                    # immutable: nothing changes the local copy while this database's reads run (see reader()).
                    conn = (open_job_connection(f"file:{path}?mode=ro&immutable=1", guard, uri=True) if path
                            else open_job_connection(":memory:", guard))
                except sqlite3.Error as exc:
                    return Deferred(StorageError(f"local copy: {exc}"))
                try:
                    return Done(run_job(conn, guard, task.job, self.sink(task.job), budget=budget), version, started)
                finally:
                    conn.close()

        with ThreadPoolExecutor(max(1, min(self.concurrency, len(tasks)))) as pool:
            return dict(zip((t.record.message_id for t in tasks), pool.map(read, tasks), strict=True))
