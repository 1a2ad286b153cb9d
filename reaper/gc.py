"""Garbage collection: version manifests older than the retention window, then the chunks that no
retained version names, then claim-checked payloads and staged loads nothing can still need.

Chunks are content-addressed, so the same chunk may be named by a version about to expire, by a
commit still in flight, or by a restore of an old version; deciding that one is garbage races all
of them. The collector is built so that each race ends with the chunk still readable:

- **A ledger, not a scan of history.** ``db/<name>/gc.json`` holds, for every live chunk, the
  newest version that names it, and the version it has counted up to. Each pass reads only the
  versions committed since (bounded per run); a chunk is live while that newest version is inside
  the window. A version only ever *raises* a chunk's entry, so a chunk found dead stays dead
  unless a later version names it again — and the ledger counts that version before any chunk
  is touched (a pass that is not caught up moves no chunk).
- **A grace period on every chunk it did not count** (``SRDB_GC_GRACE``, 1 hour): a commit uploads
  its new chunks before the manifest that names them, so a chunk younger than the grace is never
  touched. A writer that uploads a chunk S3 already holds rewrites it, which makes it young again.
- **A trash, not a delete.** A dead chunk is moved to ``db/<name>/trash/`` and deleted from there
  only a grace period later if it is still dead. A reader that misses a chunk reads the trash
  (shared/snapshot/store.py), and a pass that finds a live chunk in the trash puts it back. That
  closes the last window: a writer that re-uploads a chunk, or a restore that re-names an old
  version's chunks, between the pass's listing and its move.
- **One collector per database at a time, by a conditional write.** A pass writes its ledger with
  If-Match on the ETag it read *before* it deletes anything; a second reaper that read the same
  ledger fails that write and deletes nothing. A pass that has run for a quarter of the grace
  stops before deleting, so a stalled collector never acts on an old view; it leaves its ledger
  due at once, so the next pass does what it did not.

The current version is always kept, whatever the window.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reaper.forks import fork_view
from shared.errors import DatabaseDamaged, StorageError
from shared.job.keys import PAYLOADS_PREFIX, STAGING_PREFIX
from shared.names import DATABASE_RE
from shared.s3 import Blob, Bucket, ObjectInfo
from shared.snapshot.keys import (
    DATABASES_PREFIX,
    chunks_prefix,
    gc_state_key,
    trash_key,
    trash_prefix,
    version_key,
    versions_prefix,
)
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import current_manifest, put_version

log = logging.getLogger("srdb.gc")
JSON = "application/json"
# No message can outlive SQS's longest retention, so a payload or a staged file older than that is
# needed by no job (the bucket's lifecycle rules on AWS are the faster path; this is the floor).
ORPHAN_AGE = 14 * 24 * 3600.0
DELETE_BATCH = 1000
# S3 stamps Last-Modified to the whole second, truncated: an object may have been written up to a
# second after its stamp, so an age is trusted only with that second added.
STAMP = 1.0


@dataclass
class Ledger:
    """The newest version that names each live chunk, counted up to version ``through``."""

    through: int = 0
    last_ref: dict[str, int] = field(default_factory=dict)
    # When a pass next has something to do if no version is committed meanwhile: a version leaves
    # the window, or a chunk or the trash outgrows the grace period. Until then a pass costs 2 GETs.
    due: float | None = 0.0  # None: nothing until the next commit
    rules: list[float] = field(default_factory=list)  # the retention and grace ``due`` was reckoned with
    writer: str = ""  # the writer id of version ``through``: a database dropped and made again has another

    def count(self, manifest: Manifest) -> None:
        for digest in manifest.chunks:
            if self.last_ref.get(digest, 0) < manifest.version:
                self.last_ref[digest] = manifest.version

    def to_bytes(self) -> bytes:
        # A pass id makes every write's ETag new: S3's ETag is the body's MD5, and a second collector
        # that wrote the same ledger must still make the first one's If-Match fail.
        doc = {"through": self.through, "last_ref": self.last_ref, "due": self.due, "rules": self.rules,
               "writer": self.writer, "pass": uuid.uuid4().hex}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Ledger:
        try:
            doc = json.loads(data)
            due = doc.get("due", 0.0)
            return cls(int(doc["through"]), {str(k): int(v) for k, v in doc["last_ref"].items()},
                       None if due is None else float(due), [float(r) for r in doc.get("rules", [])],
                       str(doc.get("writer", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("a garbage collection ledger does not parse; counting the history again")
            return cls()


@dataclass
class GcReport:
    databases: int = 0
    idle: int = 0  # databases with nothing to do: no commit and nothing due since the last pass
    versions_deleted: int = 0
    chunks_trashed: int = 0
    chunks_restored: int = 0
    trash_deleted: int = 0
    bytes_freed: int = 0
    payloads_deleted: int = 0
    behind: list[str] = field(default_factory=list)  # databases whose history is not all counted yet
    skipped: list[str] = field(default_factory=list)  # another collector's, or not to be touched
    stalled: list[str] = field(default_factory=list)  # this pass ran too long to act: the next one will
    missing: list[str] = field(default_factory=list)  # live chunks found nowhere: damage to report

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Plan:
    """What one pass over one database decided, before it touches anything."""

    ledger: Ledger
    expired: list[int]
    trash: list[ObjectInfo]  # chunks to move to the trash
    restore: list[str]  # live chunks found only in the trash
    purge: list[ObjectInfo]  # trash to delete
    missing: list[str]
    stale_forks: list[str] = field(default_factory=list)  # fork markers whose fork is gone (reaper/forks.py)


@dataclass(frozen=True)
class Stock:
    """A database's chunks and trash by name; ``young``: objects modified since are within the grace period."""

    chunks: dict[str, ObjectInfo]
    trashed: dict[str, ObjectInfo]
    live: set[str]
    young: float
    hold_for: float  # an object is older than the grace only if its stamp says so by 1 s more (STAMP)

    @property
    def waiting(self) -> list[float]:
        """When each object not live now grows old enough to be moved or purged."""
        return ([o.modified + self.hold_for for d, o in self.chunks.items() if d not in self.live
                 and o.modified >= self.young] + [o.modified + self.hold_for for o in self.trashed.values()
                                                  if o.modified >= self.young])

    def plan(self, ledger: Ledger, expired: list[int], stale_forks: list[str], missing: list[str]) -> Plan:
        """What to move to the trash, put back and purge (the trash's two steps, in the module's docstring)."""
        live, young = self.live, self.young
        return Plan(
            ledger, expired,
            trash=[o for d, o in self.chunks.items() if d not in live and o.modified < young],
            restore=[d for d in live if d not in self.chunks and d in self.trashed],
            purge=[o for d, o in self.trashed.items() if o.modified < young and (d not in live or d in self.chunks)],
            missing=missing,
            stale_forks=stale_forks,
        )


class Collector:
    """One garbage-collection pass over a bucket; ``now`` is injected (S3's clock stamps the objects)."""

    def __init__(self, bucket: Bucket, *, retention: float, grace: float, now: Callable[[], float] = time.time,
                 max_versions: int = 2000, max_deletes: int = 20_000, budget: float | None = None,
                 jobs: Bucket | None = None, stall: float | None = None) -> None:
        """``jobs``: the bucket of claim-checked payloads when it is not ``bucket`` (SRDB_STATUS_BUCKET).
        ``stall``: a pass that has run this long when it writes its ledger stands down (a quarter of the grace)."""
        self.bucket, self.retention, self.grace, self.now = bucket, retention, grace, now
        self.stall = grace / 4 if stall is None else stall
        self.jobs = jobs or bucket
        self.max_versions, self.max_deletes, self.budget = max_versions, max_deletes, budget

    def collect(self) -> GcReport:
        """Every database (in a random order, so a bounded run starves none), then payloads and staging."""
        report = GcReport()
        started = self.now()
        names = [n for n in self.bucket.folders(DATABASES_PREFIX) if DATABASE_RE.fullmatch(n)]
        random.shuffle(names)
        for name in names:
            if self.budget is not None and self.now() - started > self.budget:
                report.behind.append(name)
                continue
            try:
                self.collect_database(name, report)
            except (StorageError, DatabaseDamaged) as exc:
                log.warning("garbage collection of %s: %s", name, exc)
                report.skipped.append(name)
        report.payloads_deleted += self._delete_older(self.jobs, PAYLOADS_PREFIX, ORPHAN_AGE)
        report.payloads_deleted += self._delete_older(self.bucket, STAGING_PREFIX, ORPHAN_AGE)
        return report

    def collect_database(self, database: str, report: GcReport) -> None:
        started = self.now()
        found = current_manifest(self.bucket, database)
        if found is None:
            if not self._collect_dropped(database, report):
                report.skipped.append(database)  # being created, or damaged: nothing here is garbage
            return
        current = found[0]
        stored = self.bucket.get(gc_state_key(database))
        ledger = Ledger.from_bytes(stored.body) if stored else Ledger()
        rules = [self.retention, self.grace]
        if (ledger.through == current.version and ledger.writer == current.writer and ledger.rules == rules
                and (ledger.due is None or started < ledger.due)):
            report.idle += 1  # nothing committed and nothing due since the last pass
            return
        if not self._same_history(database, current, ledger):
            ledger = Ledger()  # the database was dropped and made again: its old ledger means nothing
        ledger.rules = rules
        plan = self._plan(database, current, ledger)
        report.databases += 1
        if plan.ledger.through < current.version:
            report.behind.append(database)
        if not self._claim(database, stored, plan.ledger, started, report):
            report.skipped.append(database)
            return
        self._apply(database, plan, report)

    def _claim(self, database: str, stored: Blob | None, ledger: Ledger, started: float, report: GcReport) -> bool:
        """Write the pass's ledger over the one it read (``stored``), so that no other collector acts on the same
        view; False when another did, or when this pass has run too long to act on what it saw. A pass that
        stops for being slow leaves the ledger due at once: what it planned is still to do, and a ledger that
        says nothing is due would leave an expired version (and the chunks only it names) until the next
        commit."""
        key = gc_state_key(database)
        try:
            written = (self.bucket.put_if_none_match(key, ledger.to_bytes(), content_type=JSON) if stored is None
                       else self.bucket.put_if_match(key, ledger.to_bytes(), stored.etag, content_type=JSON))
            if written is not None and self.now() - started > self.stall:
                ledger.due = 0.0
                self.bucket.put_if_match(key, ledger.to_bytes(), written, content_type=JSON)
                report.stalled.append(database)
                return False
        except StorageError:
            return False  # dropped meanwhile (If-Match on a missing key), or no answer: touch nothing
        return written is not None

    def _same_history(self, database: str, current: Manifest, ledger: Ledger) -> bool:
        """Whether the ledger's last counted version is still this database's (by its writer id)."""
        if ledger.through == 0 or ledger.through > current.version:
            return ledger.through == 0
        if ledger.through == current.version:
            return ledger.writer == current.writer
        entry = self.bucket.get(version_key(database, ledger.through))
        return entry is None or Manifest.from_bytes(entry.body).writer == ledger.writer

    def _plan(self, database: str, current: Manifest, ledger: Ledger) -> Plan:
        versions = _numbered(self.bucket.objects(versions_prefix(database)), versions_prefix(database))
        if current.version not in versions:  # its commit stood but S3 did not take its history entry
            put_version(self.bucket, database, current, current.to_bytes())
        pending = sorted(v for v in versions if ledger.through < v < current.version)
        counted: Manifest | None = None
        for version in pending[:self.max_versions]:
            entry = self.bucket.get(version_key(database, version))
            if entry is not None:  # expired by another pass meanwhile: nothing of it needs counting
                counted = Manifest.from_bytes(entry.body)
                ledger.count(counted)
        ledger.count(current)
        caught_up = len(pending) <= self.max_versions
        if caught_up:
            ledger.through, ledger.writer = current.version, current.writer
        else:
            ledger.through = pending[self.max_versions - 1]
            ledger.writer = counted.writer if counted is not None and counted.version == ledger.through else ""

        # Versions are written in order, so the expired ones are the oldest: a prefix of the history.
        cutoff = self.now() - self.retention
        expired: list[int] = []
        for version in sorted(versions):
            if version >= current.version or versions[version].modified >= cutoff:
                break
            expired.append(version)
        oldest = min([v for v in versions if v not in set(expired)] + [current.version])
        ledger.last_ref = {d: v for d, v in ledger.last_ref.items() if v >= oldest}
        ledger.due = 0.0
        if not caught_up:
            return Plan(ledger, expired, [], [], [], [])

        forks = fork_view(self.bucket, database, now=self.now(), grace=self.grace, max_versions=self.max_versions)
        # What forks name counts as live too; a fork being made keeps everything until its chunks are known.
        live = {*forks.live, *ledger.last_ref}
        stock = self._stock(database, live, hold=forks.hold)
        waiting = stock.waiting + [versions[v].modified + self.retention for v in sorted(versions)
                                   if v not in set(expired) and v < current.version][:1]
        absent = [d for d in ledger.last_ref if d not in stock.chunks and d not in stock.trashed]
        plan = stock.plan(ledger, expired, forks.stale, self._missing(current, absent))
        if plan.trash:
            waiting.append(self.now() + self.grace)  # what this pass moves to the trash
        if plan.restore or len(expired) + len(plan.trash) + len(plan.purge) > self.max_deletes:
            waiting.append(self.now())  # the trash copies of restored chunks; what the bound left over
        ledger.due = min(waiting, default=None)
        return plan

    def _stock(self, database: str, live: set[str], *, hold: bool) -> Stock:
        """The database's chunks and trash as they are now. ``hold``: a fork is being made, so no object is old
        enough to touch (its chunks are not known yet)."""
        return Stock({o.key[len(chunks_prefix(database)):]: o for o in self.bucket.objects(chunks_prefix(database))},
                     {o.key[len(trash_prefix(database)):]: o for o in self.bucket.objects(trash_prefix(database))},
                     live, float("-inf") if hold else self.now() - self.grace - STAMP, self.grace + STAMP)

    def _collect_dropped(self, database: str, report: GcReport) -> bool:
        """A database dropped while forks named its chunks (shared/snapshot/catalog.py keeps those, and the forks'
        markers): whatever no fork names any more goes, through the same trash, and the markers of forks that are
        gone with it; once nothing is left, its ledger too. False when there is nothing to collect here: a
        database being created, or one whose history has no manifest (damaged), is never touched."""
        started = self.now()
        if any(self.bucket.list(versions_prefix(database), limit=1)):
            return False
        forks = fork_view(self.bucket, database, now=self.now(), grace=self.grace, max_versions=self.max_versions)
        stock = self._stock(database, forks.live, hold=forks.hold)
        stored = self.bucket.get(gc_state_key(database))
        if not forks.forks and not forks.stale and not forks.hold and not stock.chunks and not stock.trashed:
            if stored is not None:  # the last pass emptied it
                self._delete([gc_state_key(database)])
            return False
        plan = stock.plan(Ledger(), [], forks.stale, [])
        if not self._claim(database, stored, plan.ledger, started, report):  # one collector at a time
            return False
        report.databases += 1
        self._apply(database, plan, report)
        return True

    def _missing(self, current: Manifest, absent: list[str]) -> list[str]:
        """Live chunks in neither chunks/ nor trash/: a fork's may be its origins' (snapshot/fork.py)."""
        for origin in current.origins if absent else []:
            found = {o.key.rsplit("/", 1)[1] for prefix in (chunks_prefix(origin), trash_prefix(origin))
                     for o in self.bucket.objects(prefix)}
            absent = [d for d in absent if d not in found]
        return absent

    def _apply(self, database: str, plan: Plan, report: GcReport) -> None:
        self._delete(plan.stale_forks)
        budget = self.max_deletes
        expired = [version_key(database, v) for v in plan.expired[:budget]]
        self._delete(expired)
        report.versions_deleted += len(expired)
        budget -= len(expired)
        for digest in plan.restore:
            if self.bucket.copy(trash_key(database, digest), f"{chunks_prefix(database)}{digest}"):
                report.chunks_restored += 1
        moved = [o for o in plan.trash[:max(0, budget)]
                 if self.bucket.copy(o.key, trash_key(database, o.key.rsplit("/", 1)[1]))]
        self._delete([o.key for o in moved])
        report.chunks_trashed += len(moved)
        budget -= len(moved)
        purged = plan.purge[:max(0, budget)]
        self._delete([o.key for o in purged])
        report.trash_deleted += len(purged)
        report.bytes_freed += sum(o.size for o in purged)
        if plan.missing:
            log.error("database %s: %d live chunk(s) are in neither chunks/ nor trash/, e.g. %s",
                      database, len(plan.missing), plan.missing[0])
            report.missing.append(database)

    def _delete_older(self, bucket: Bucket, prefix: str, age: float) -> int:
        cutoff = self.now() - age
        old = [o.key for o in bucket.objects(prefix) if o.modified < cutoff][:self.max_deletes]
        self._delete(old, bucket)
        return len(old)

    def _delete(self, keys: Sequence[str], bucket: Bucket | None = None) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            (bucket or self.bucket).delete_many(keys[start:start + DELETE_BATCH])


def _numbered(objects: Iterable[ObjectInfo], prefix: str) -> dict[int, ObjectInfo]:
    """Version entries by number (``<prefix>000000000042.json``); other keys are not versions."""
    found = {}
    for item in objects:
        name = item.key[len(prefix):].removesuffix(".json")
        if name.isdigit():
            found[int(name)] = item
    return found
