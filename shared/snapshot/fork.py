"""Forks: a new database whose first version names its source's chunks, made in a few requests whatever the
size, and independent from then on.

Chunks never change, so a fork copies none: its manifest lists the source version's chunks and names the
source among its ``origins``, where a reader looks for a chunk its own prefix lacks. Its writes put new
chunks under its own prefix, so neither database ever sees the other's writes.

What keeps a fork readable is the source's collector (reaper/gc.py), which must not free a chunk a fork
still names. So before the fork's manifest exists, a marker ``db/<origin>/forks/<fork>.json`` is written
into its source and into each of the source's own origins; a collector that finds a marker counts the
chunks of that fork's retained versions as live, and a marker whose fork has no manifest yet (it is being
made) keeps the collector from freeing anything until it is older than the grace period. Dropping a
database that forks still name keeps its chunks (shared/snapshot/catalog.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from shared.errors import ClientSideError
from shared.names import check_database
from shared.s3 import Bucket
from shared.snapshot.history import History
from shared.snapshot.keys import fork_marker_key, versions_prefix
from shared.snapshot.manifest import Manifest, to_millis
from shared.snapshot.store import current_manifest, put_manifest, put_version

JSON = "application/json"


def fork(bucket: Bucket, source: str, new: str, *, as_of: int | str | datetime | None = None,
         now: Callable[[], float] = time.time) -> Manifest:
    """Make ``new`` a fork of ``source`` (its current version, or the one ``as_of``); its first manifest."""
    check_database(new)
    if new == source:
        raise ClientSideError("a fork needs a name of its own")
    history = History(bucket, now=now)
    current, _ = history.current(source)
    base = current if as_of is None else history.resolve(source, as_of, current)
    if current_manifest(bucket, new) is not None or any(bucket.list(versions_prefix(new), limit=1)):
        raise ClientSideError(f"database {new} exists already: a fork makes a new database (drop {new} first)")
    origins = [source, *[o for o in base.origins if o != new]]
    writer = uuid.uuid4().hex
    marker = json.dumps({"fork": new, "writer": writer, "at": now()}).encode()
    for origin in origins:  # before the manifest: a collector that sees the fork's chunks named sees this first
        bucket.put(fork_marker_key(origin, new), marker, content_type=JSON)
    made = replace(base, version=1, created_at=to_millis(now()), jobs=[], writer=writer, restored_from=None,
                   labels=[f"fork of {source} at version {base.version}"], origins=origins,
                   forked_from={"database": source, "version": base.version})
    body = made.to_bytes()
    put_manifest(bucket, new, made, body, None)  # If-None-Match: a database made meanwhile wins
    put_version(bucket, new, made, body)
    return made
