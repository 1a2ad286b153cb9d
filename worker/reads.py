"""Stage three: one database's read jobs, run concurrently, each on its own read-only connection to
the local copy (or to an old snapshot, for reads ``as_of`` it); and interactive transactions'
previews, each on a scratch copy of the transaction's base snapshot that is thrown away after."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import (
    InfrastructureError,
    SerializationFailure,
    StorageError,
    UserError,
    VersionNotFound,
    no_version_yet,
)
from shared.guard import Guard, open_job_connection
from shared.job.classify import is_read_job
from shared.job.model import AsOf, Job, as_of_point
from shared.snapshot.history import History
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import SnapshotStore
from worker.execute import Outcome, run_job
from worker.results import ResultSink
from worker.verdicts import Deferred, Done, GroupResult, HandBack, Task, Verdict, deferred
from worker.writes import OUT_OF_TIME

if TYPE_CHECKING:  # APSW is imported only by a worker that reads pages (SRDB_READ_PAGES)
    from worker.page_writes import PageWrites

K = TypeVar("K")
SCRATCH = ".scratch"  # under the cache folder: previews' copies, each removed when its preview ends


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
        pages: PageWrites | None = None,
    ) -> None:
        self.store, self.history, self.concurrency = store, history, concurrency
        self.sink, self.budget, self.now, self.watch = sink, budget, now, watch
        self.pages = pages
        shutil.rmtree(store.cache_dir / SCRATCH, ignore_errors=True)  # what a process that died left

    def run(self, database: str, tasks: list[Task]) -> GroupResult:
        previews = [t for t in tasks if t.job.transaction is not None]
        tasks = [t for t in tasks if t.job.transaction is None]
        if self.pages is not None:  # reads take pages, previews write on an overlay of their own
            try:
                current = self.pages.pages.manifests.current(database)
            except InfrastructureError as exc:
                return GroupResult(deferred(previews + tasks, exc))
            return GroupResult({**self._previews_on_pages(database, previews, current, self.pages),
                                **self._on_pages(database, tasks, current, self.pages)})
        return self._local(database, previews, tasks)

    def _local(self, database: str, previews: list[Task], tasks: list[Task]) -> GroupResult:
        """Previews and reads on the local copy of the whole file."""
        try:
            with self.store.reader(database) as snapshot:
                verdicts: dict[str, Verdict] = self._previews(database, previews, snapshot.path, snapshot.manifest)
                if snapshot.manifest is None:
                    return GroupResult({**verdicts, **self._no_version_yet(database, tasks)})
                by_as_of: dict[AsOf | None, list[Task]] = defaultdict(list)
                for task in tasks:
                    by_as_of[task.job.as_of].append(task)
                for as_of, group in by_as_of.items():
                    verdicts.update(self._as_of(database, as_of, group, snapshot.path, snapshot.version,
                                                snapshot.manifest))
                return GroupResult(verdicts)
        except InfrastructureError as exc:
            return GroupResult(deferred(previews + tasks, exc))

    def _on_pages(self, database: str, tasks: list[Task], current: Manifest | None,
                  pages: PageWrites) -> dict[str, Verdict]:
        """Read jobs on the versions they read, straight from their chunks (worker/pages.py)."""
        if not tasks:
            return {}
        if current is None:
            return self._no_version_yet(database, tasks)
        by_as_of: dict[AsOf | None, list[Task]] = defaultdict(list)
        for task in tasks:
            by_as_of[task.job.as_of].append(task)
        verdicts: dict[str, Verdict] = {}

        def version(as_of: AsOf | None) -> Manifest:
            return current if as_of is None else self.history.resolve(database, as_of_point(as_of), current)

        for at, group in self._resolved(by_as_of, version, verdicts):
            assert at is not None
            verdicts.update(self._each(group, at.version, partial(_open_pages, pages, database, at), read_only=True,
                                       what="the version's pages"))
        return verdicts

    def _previews_on_pages(self, database: str, tasks: list[Task], current: Manifest | None,
                           pages: PageWrites) -> dict[str, Verdict]:
        """Each preview on an overlay of its transaction's base (worker/page_writes.py): no copy of the
        database, and only the chunks its statements touch."""
        by_base: dict[int | None, list[Task]] = defaultdict(list)
        for task in tasks:
            assert task.job.transaction is not None
            by_base[task.job.transaction.base].append(task)
        verdicts: dict[str, Verdict] = {}

        def version(base: int | None) -> Manifest | None:
            if current is None and base not in (None, 0):
                raise VersionNotFound(f"database {database} has no version {base}: it does not exist")
            if base == 0 or current is None:
                return None
            return current if base is None else self.history.resolve(database, base, current)

        for at, group in self._resolved(by_base, version, verdicts):
            found = _on(self._preview_group(database, at, group, pages), at.writer if at else "")
            verdicts.update(_explained(found, no_version_yet(database)) if current is None else found)
        return {t.record.message_id: _on_its_base(t, verdicts[t.record.message_id]) for t in tasks
                if t.record.message_id in verdicts}

    def _resolved(self, groups: dict[K, list[Task]], version: Callable[[K], Manifest | None],
                  verdicts: dict[str, Verdict]) -> Iterator[tuple[Manifest | None, list[Task]]]:
        """Each group with the version it runs on; a group whose version cannot be had gets its verdicts here
        (failed, when there is no such version; deferred, when S3 failed)."""
        for key, group in groups.items():
            try:
                at = version(key)
            except UserError as exc:
                verdicts.update(self._failed(group, exc))
                continue
            except InfrastructureError as exc:
                verdicts.update(deferred(group, exc))
                continue
            yield at, group

    def _preview_group(self, database: str, at: Manifest | None, tasks: list[Task],
                       pages: PageWrites) -> dict[str, Verdict]:
        """Previews on version ``at`` (None: an empty database): one whose statements only read reads the
        version's pages; one that writes writes on an overlay of its own."""
        reads = {t.record.message_id: _reads_only(t.job) for t in tasks}  # sqlparse: once a task
        reading = [t for t in tasks if reads[t.record.message_id]]
        writing = [t for t in tasks if not reads[t.record.message_id]]
        version = at.version if at is not None else 0
        verdicts: dict[str, Verdict] = {}
        if reading and at is None:
            verdicts.update(self._read_file(None, 0, reading))
        elif reading and at is not None:
            verdicts.update(self._each(reading, version, partial(_open_pages, pages, database, at),
                                       read_only=True, what="the version's pages"))
        if writing:
            scratch = pages.scratch(database, at)
            verdicts.update(self._each(writing, version, lambda task, guard: scratch(guard), read_only=False,
                                       what="a transaction's overlay"))
        return verdicts

    def _failed(self, tasks: list[Task], exc: UserError) -> dict[str, Verdict]:
        return {t.record.message_id: Done(Outcome.failed(t.job.job_id, exc), None, self.now()) for t in tasks}

    def _previews(self, database: str, tasks: list[Task], path: Path, current: Manifest | None) -> dict[str, Verdict]:
        """Each preview on its transaction's base: the current snapshot (base None), an empty database
        (base 0: the transaction began before the database existed), or an old snapshot."""
        by_base: dict[int | None, list[Task]] = defaultdict(list)
        for task in tasks:
            assert task.job.transaction is not None
            by_base[task.job.transaction.base].append(task)
        version = current.version if current is not None else 0
        verdicts: dict[str, Verdict] = {}
        for base, group in by_base.items():
            if base is None or base == version or base == 0:
                at = path if current is not None and base != 0 else None
                found = _on(self._scratch(at, version if at is not None else 0, group),
                            current.writer if at is not None and current is not None else "")
                verdicts.update(_explained(found, no_version_yet(database)) if current is None else found)
            else:
                try:
                    if current is None:
                        raise VersionNotFound(f"database {database} has no version {base}: it does not exist")
                    old = self.history.resolve(database, base, current)
                    at = self.store.materialize(database, old)
                except UserError as exc:
                    verdicts.update({t.record.message_id: Done(Outcome.failed(t.job.job_id, exc), None, self.now())
                                     for t in group})
                    continue
                except (InfrastructureError, OSError) as exc:
                    verdicts.update(deferred(group, exc if isinstance(exc, InfrastructureError)
                                             else StorageError(str(exc))))
                    continue
                verdicts.update(_on(self._scratch(at, base, group), old.writer))
        return {t.record.message_id: _on_its_base(t, verdicts[t.record.message_id]) for t in tasks
                if t.record.message_id in verdicts}

    def _scratch(self, path: Path | None, version: int, tasks: list[Task]) -> dict[str, Verdict]:
        """Run each preview on its own copy of ``path`` (None: an empty database), then drop the copy;
        a preview whose statements only read needs no copy, and reads ``path`` itself."""
        reads = {t.record.message_id: _reads_only(t.job) for t in tasks}  # sqlparse: once a task
        reading = [t for t in tasks if reads[t.record.message_id]]
        writing = [t for t in tasks if not reads[t.record.message_id]]
        verdicts = self._read_file(path, version, reading) if reading else {}
        return {**verdicts, **self._copies(path, version, writing)} if writing else verdicts

    def _copies(self, path: Path | None, version: int, tasks: list[Task]) -> dict[str, Verdict]:
        def connect(task: Task, guard: Guard) -> tuple[sqlite3.Connection, Callable[[], None]]:
            scratch = self.store.cache_dir / SCRATCH / f"{task.job.job_id}-{uuid.uuid4().hex}.sqlite"
            try:
                scratch.parent.mkdir(parents=True, exist_ok=True)
                if path is not None:
                    shutil.copyfile(path, scratch)
                conn = open_job_connection(scratch, guard)
                conn.execute("PRAGMA synchronous = OFF")
                conn.execute("BEGIN IMMEDIATE")  # never committed: nothing of the preview stays
            except BaseException:
                scratch.unlink(missing_ok=True)
                raise
            return conn, lambda: scratch.unlink(missing_ok=True)

        return self._each(tasks, version, connect, read_only=False, what="a transaction's scratch copy")

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
        verdicts.update(_explained(self._read_file(None, 0, [t for t in tasks if t.job.as_of is None]), why))
        return verdicts

    def _read_file(self, path: Path | None, version: int, tasks: list[Task]) -> dict[str, Verdict]:
        """Read ``path`` (None: an empty database)."""

        def connect(task: Task, guard: Guard) -> tuple[sqlite3.Connection, Callable[[], None]]:
            # immutable: nothing changes the local copy while this database's reads run (see reader()).
            conn = (open_job_connection(f"file:{path}?mode=ro&immutable=1", guard, uri=True) if path
                    else open_job_connection(":memory:", guard))
            return conn, lambda: None

        return self._each(tasks, version, connect, read_only=True, what="local copy")

    def _each(self, tasks: list[Task], version: int,
              connect: Callable[[Task, Guard], tuple[Any, Callable[[], None]]], *,
              read_only: bool, what: str) -> dict[str, Verdict]:
        """Run each task on a connection of its own, ``concurrency`` at a time."""

        def run(task: Task) -> Verdict:
            budget = self.budget(task.job)
            if budget is None:
                return HandBack(OUT_OF_TIME)
            started = self.now()
            with self.watch(task) as cancelled:
                guard = Guard(read_only=read_only, cancelled=cancelled, scratch=not read_only)
                try:
                    conn, cleanup = connect(task, guard)
                except InfrastructureError as exc:
                    return Deferred(exc)
                except (sqlite3.Error, OSError) as exc:
                    return Deferred(StorageError(f"{what}: {exc}"))
                try:
                    return Done(run_job(conn, guard, task.job, self.sink(task.job), budget=budget), version, started)
                except InfrastructureError as exc:  # S3 failed under it (a page, a result part): run it again
                    return Deferred(exc)
                finally:
                    conn.close()
                    cleanup()

        with ThreadPoolExecutor(max(1, min(self.concurrency, len(tasks)))) as pool:
            return dict(zip((t.record.message_id for t in tasks), pool.map(run, tasks), strict=True))

def _open_pages(pages: PageWrites, database: str, at: Manifest, task: Task,
                guard: Guard) -> tuple[Any, Callable[[], None]]:
    return pages.pages.open(database, at, guard)


def _explained(verdicts: dict[str, Verdict], why: str) -> dict[str, Verdict]:
    """Failures on an empty database say why it is empty."""
    out: dict[str, Verdict] = {}
    for message_id, verdict in verdicts.items():
        if isinstance(verdict, Done) and verdict.outcome.error is not None:
            error = {**verdict.outcome.error, "message": f"{verdict.outcome.error['message']} ({why})"}
            verdict = replace(verdict, outcome=replace(verdict.outcome, error=error))
        out[message_id] = verdict
    return out


def _reads_only(job: Job) -> bool:
    try:
        return is_read_job(job)
    except UserError:
        return False


def _on(verdicts: dict[str, Verdict], snapshot: str) -> dict[str, Verdict]:
    """Previews' verdicts, each naming the snapshot it ran on (the transaction's base, from its first)."""
    return {m: replace(v, snapshot=snapshot) if isinstance(v, Done) else v for m, v in verdicts.items()}


def _on_its_base(task: Task, verdict: Verdict) -> Verdict:
    """A preview that ran on a snapshot of the base's version but not the base itself (the database was
    dropped and made again, reusing version numbers) fails: the transaction's base is gone."""
    assert task.job.transaction is not None
    base = task.job.transaction.snapshot
    if not base or not isinstance(verdict, Done) or not verdict.snapshot or verdict.snapshot == base:
        return verdict
    return Done(Outcome.failed(task.job.job_id, SerializationFailure(
        f"database {task.job.database} was dropped and made again since this transaction began: its version "
        f"{task.job.transaction.base} is another database's now; nothing of the transaction was applied; "
        "run it again")), verdict.version, verdict.started)
