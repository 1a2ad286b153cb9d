"""What the forks of a database still need from it, for its collector (reaper/gc.py).

A fork names its source's chunks instead of copying them (shared/snapshot/fork.py), and leaves a marker
under the source's ``forks/`` before its first manifest is written. For each marker, the chunks that the
fork's retained versions name are live for the source, whatever the source's own history says:

- a fork that exists and names this database among its origins: its current version and every retained
  version count;
- a marker without its fork's manifest is a fork being made, until it is older than the grace period:
  then nothing is freed at all this pass (its chunks are not known yet); older, it is a fork that was
  dropped (or never made), and the marker is stale;
- a fork that no longer names this database (dropped and made again as another database): stale.

Stale markers are deleted by the pass that found them, after its ledger write succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.s3 import Bucket
from shared.snapshot.keys import forks_prefix, version_key, versions_prefix
from shared.snapshot.manifest import Manifest
from shared.snapshot.store import current_manifest

STAMP = 1.0  # S3 stamps Last-Modified to the whole second, truncated (as in reaper/gc.py)


@dataclass
class ForkView:
    live: set[str] = field(default_factory=set)
    hold: bool = False  # a fork is being made, or has more history than a pass reads: free nothing now
    stale: list[str] = field(default_factory=list)  # marker keys whose fork is gone
    forks: list[str] = field(default_factory=list)


def fork_view(bucket: Bucket, database: str, *, now: float, grace: float, max_versions: int) -> ForkView:
    view = ForkView()
    prefix = forks_prefix(database)
    for marker in bucket.objects(prefix):
        fork = marker.key[len(prefix):].removesuffix(".json")
        found = current_manifest(bucket, fork)
        if found is None:
            if marker.modified + grace + STAMP > now:
                view.hold = True  # being made: its manifest will name chunks not known yet
            else:
                view.stale.append(marker.key)
            continue
        current = found[0]
        if database not in current.origins:
            view.stale.append(marker.key)
            continue
        view.forks.append(fork)
        view.live.update(current.chunks)
        entries = [o.key for o in bucket.objects(versions_prefix(fork))]
        if len(entries) > max_versions:
            view.hold = True
            continue
        for key in entries:
            entry = bucket.get(key)
            if entry is not None and key != version_key(fork, current.version):
                older = Manifest.from_bytes(entry.body)
                if database in older.origins:
                    view.live.update(older.chunks)
    return view
