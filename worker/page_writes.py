"""Writes on pages: a group of write jobs, or a transaction's preview, on an overlay over the version it writes
on (worker/overlay.py) instead of a whole local copy.

A cold worker's one-row insert costs the chunks the insert touches; the commit uploads the chunks the overlay
holds that S3 does not have and then makes the manifest current by the same conditional write as ever
(:meth:`SnapshotStore.publish`). The chunks it made go into the chunk cache, and the manifest into the
worker's known manifests, so the next read or write of the database starts warm.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.guard import Guard, prepare_job_connection
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import SnapshotStore
from worker.apsw_conn import Connection
from worker.overlay import Overlay, connect
from worker.pages import Pages

OVERLAYS = ".overlays"  # under the cache folder: where overlays' private files are made (and at once unlinked)


class OnOverlay:
    """Connections on an overlay: the jobs' (guarded), and the worker's own."""

    def __init__(self, overlay: Overlay) -> None:
        self.overlay = overlay

    @property
    def version(self) -> int:
        return self.overlay.base.version if self.overlay.base is not None else 0

    @property
    def base(self) -> str:
        return self.overlay.base.writer if self.overlay.base is not None else ""

    @contextmanager
    def own(self) -> Iterator[Connection]:
        raw, forget = connect(self.overlay)
        conn = Connection(raw, forget)
        try:
            yield conn
        finally:
            conn.close()

    def connect(self, guard: Guard) -> Connection:
        return guarded(self.overlay, guard)


class OverlayTarget(OnOverlay):
    """A write target (worker/targets.py) on pages: version ``base`` of ``database`` under an overlay."""

    def __init__(self, store: SnapshotStore, pages: Pages, database: str, base: Manifest | None,
                 etag: str | None) -> None:
        super().__init__(Overlay(database, base, pages.cache, store.chunk_size, store.cache_dir / OVERLAYS))
        self.store, self.pages, self.database, self.etag = store, pages, database, etag

    def commit(self, jobs: list[str], labels: list[str]) -> int:
        names, new = self.overlay.chunks()
        manifest, etag = self.store.publish(self.database, self.overlay.base, self.etag, self.overlay.size,
                                            self.overlay.page_size(), names, new, jobs, labels,
                                            self.overlay.chunk_size)
        for digest, data in new.items():
            self.pages.cache.put(digest, data)
        self.pages.manifests.remember(self.database, manifest, etag)
        return manifest.version

    def close(self) -> None:
        self.overlay.close()


def guarded(overlay: Overlay, guard: Guard) -> Connection:
    """A job's connection on ``overlay``."""
    raw, forget = connect(overlay)
    conn = Connection(raw, forget)
    try:
        prepare_job_connection(conn, guard)
    except BaseException:
        conn.close()
        raise
    return conn


class PageWrites:
    """Opens write targets on pages, one group at a time per database in this process."""

    def __init__(self, store: SnapshotStore, pages: Pages) -> None:
        self.store, self.pages = store, pages
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

    @contextmanager
    def target(self, database: str) -> Iterator[OverlayTarget]:
        """The current version under an overlay. A database without a manifest is about to be created, which is
        only right when it has no history either: a lost ``manifest.json`` must not start a new version 1 over
        it."""
        with self._locks[database]:
            found = self.pages.manifests.known(database)
            if found is None:
                self.store.check_no_history(database)
            target = OverlayTarget(self.store, self.pages, database, *(found or (None, None)))
            try:
                yield target
            finally:
                target.close()

    def scratch(self, database: str, base: Manifest | None) -> Callable[[Guard], tuple[Connection,
                                                                                         Callable[[], None]]]:
        """How a transaction's preview opens version ``base`` (None: an empty database): an overlay of its own,
        in a transaction never committed, thrown away when the preview ends."""

        def open_one(guard: Guard) -> tuple[Connection, Callable[[], None]]:
            overlay = Overlay(database, base, self.pages.cache, self.store.chunk_size,
                              Path(self.store.cache_dir) / OVERLAYS)
            conn: Connection | None = None
            try:
                conn = guarded(overlay, guard)
                conn.execute("BEGIN IMMEDIATE")  # never committed: nothing of the preview stays
            except BaseException:
                if conn is not None:
                    conn.close()
                overlay.close()
                raise
            return conn, overlay.close

        return open_one
