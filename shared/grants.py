"""Per-database grants: which access group may read or write which databases.

An access group is the set of clients that may send to some job queues: who may send is IAM's
to say (each queue's policy, or the senders' own IAM policies), and SQS stamps every message with
the queue it came through (the record's ``eventSourceARN``) and the principal that sent it
(``SenderId``), neither of which a sender can forge. The worker maps that pair to a group and
checks the job against the group's grants, so a client that may send only to a reader's queue
cannot write, whatever its SQL says.

The grants live in the bucket, ``config/grants.json``, written by ``srdb grant`` / ``srdb revoke``
with If-Match on the ETag they read (two administrators never lose each other's change)::

    {"groups": {"analysts": {"queues": ["arn:aws:sqs:…:srdb-readers"], "senders": ["AROA…:*"],
                             "databases": {"sales": "read", "scratch_*": "write"}}}}

No document, or one with no group: every queue may read and write every database (srdb before
grants). Once a group exists, a message from a queue in no group is refused. ``senders``, when
given, are patterns the SenderId must match (an IAM role's id is ``AROA…:<session>``). Database
names match ``fnmatch`` patterns; of the groups that match a message, the widest access wins.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ClientSideError, Forbidden, StorageError
from shared.s3 import UNCHANGED, Blob, Bucket

GRANTS_KEY = "config/grants.json"
ACCESS = ("read", "write")
JSON = "application/json"


@dataclass
class Group:
    queues: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    databases: dict[str, str] = field(default_factory=dict)

    def access(self, database: str) -> str | None:
        """The widest access any of the group's patterns gives ``database``."""
        found = [a for pattern, a in self.databases.items() if fnmatch.fnmatchcase(database, pattern)]
        return max(found, key=ACCESS.index, default=None)

    def admits(self, sender: str) -> bool:
        return not self.senders or any(fnmatch.fnmatchcase(sender, p) for p in self.senders)


@dataclass
class Grants:
    groups: dict[str, Group] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return not self.groups

    def check(self, source: str, sender: str, database: str, writes: bool) -> None:
        """Forbidden, naming what was refused, unless a group of ``source``'s gives ``sender`` the access."""
        if self.open:
            return
        queue = source.rsplit(":", 1)[-1] or "(unknown)"
        mine = {name: g for name, g in self.groups.items() if source in g.queues}
        if not mine:
            raise Forbidden(f"queue {queue} belongs to no access group, so its jobs may reach no database "
                            "(an administrator adds it with `srdb grant --queue`)")
        admitted = {name: g for name, g in mine.items() if g.admits(sender)}
        if not admitted:
            raise Forbidden(f"sender {sender or '(unknown)'} is not among the senders of access group(s) "
                            f"{', '.join(sorted(mine))} that queue {queue} serves")
        _decide(admitted, database, writes)

    def check_caller(self, caller: str, database: str, writes: bool) -> None:
        """The HTTP API's check (api/): Forbidden unless a group that names ``caller`` among its senders (an
        IAM principal's id, as SQS stamps it on a message: ``AROA…:<session>``) gives it the access. A
        group without senders is defined by who may send to its queues, which an HTTP caller is not."""
        if self.open:
            return
        admitted = {name: g for name, g in self.groups.items() if g.senders and g.admits(caller)}
        if not admitted:
            raise Forbidden(f"caller {caller or '(unknown)'} is among the senders of no access group "
                            "(an administrator adds it with `srdb grant --sender`)")
        _decide(admitted, database, writes)

    def grant(self, group: str, *, database: str | None = None, access: str = "read",
              queues: list[str] | None = None, senders: list[str] | None = None) -> None:
        if access not in ACCESS:
            raise ClientSideError(f"access must be read or write, not {access!r}")
        entry = self.groups.setdefault(group, Group())
        entry.queues = sorted(set(entry.queues) | set(queues or []))
        entry.senders = sorted(set(entry.senders) | set(senders or []))
        if database is not None:
            entry.databases[database] = access

    def revoke(self, group: str, database: str | None = None) -> None:
        if group not in self.groups:
            raise ClientSideError(f"there is no access group {group}")
        if database is None:
            del self.groups[group]
        elif self.groups[group].databases.pop(database, None) is None:
            raise ClientSideError(f"access group {group} has no grant on {database}")

    def to_bytes(self) -> bytes:
        doc = {"groups": {name: {"queues": g.queues, "senders": g.senders, "databases": g.databases}
                          for name, g in sorted(self.groups.items())}}
        return json.dumps(doc, indent=2).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Grants:
        try:
            doc: Any = json.loads(data)
            groups = {str(name): Group([str(q) for q in g.get("queues", [])], [str(s) for s in g.get("senders", [])],
                                       {str(d): str(a) for d, a in g.get("databases", {}).items()})
                      for name, g in doc["groups"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"{GRANTS_KEY} does not parse ({type(exc).__name__}: {exc}): no job runs until it "
                               "is mended") from exc
        bad = [a for g in groups.values() for a in g.databases.values() if a not in ACCESS]
        if bad:
            raise StorageError(f"{GRANTS_KEY} grants {bad[0]!r}; access is read or write")
        return cls(groups)


def _decide(admitted: dict[str, Group], database: str, writes: bool) -> None:
    """Forbidden unless one of the ``admitted`` groups gives ``database`` the access a job needs."""
    access = {name: g.access(database) for name, g in admitted.items()}
    if ("write" in access.values()) if writes else any(access.values()):
        return
    names = ", ".join(sorted(admitted))
    if any(access.values()):
        raise Forbidden(f"access group {names} may only read database {database}; this job writes")
    raise Forbidden(f"access group {names} has no grant on database {database}")


class GrantStore:
    """The grants document in the bucket: read by the worker once a batch (a conditional GET, so an
    unchanged document costs a 304), edited by administrators."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self._lock = threading.Lock()
        self._cached: tuple[Grants, str | None] = (Grants(), None)

    def current(self) -> Grants:
        """The grants in force now; StorageError when S3 cannot say (a job is never run on a guess)."""
        with self._lock:
            found = self.bucket.get_if_changed(GRANTS_KEY, self._cached[1])
            if isinstance(found, Blob):
                self._cached = (Grants.from_bytes(found.body), found.etag)
            elif found is not UNCHANGED:
                self._cached = (Grants(), None)
            return self._cached[0]

    def read(self) -> Grants:
        """The stored grants, read now."""
        found = self.bucket.get(GRANTS_KEY)
        return Grants.from_bytes(found.body) if found else Grants()

    def edit(self, change: Callable[[Grants], None]) -> Grants:
        """Apply ``change`` to the stored grants and write them back over the version read; a
        concurrent edit makes it read and apply again."""
        for _ in range(10):
            found = self.bucket.get(GRANTS_KEY)
            grants = Grants.from_bytes(found.body) if found else Grants()
            change(grants)
            body = grants.to_bytes()
            if found is None:
                written = self.bucket.put_if_none_match(GRANTS_KEY, body, content_type=JSON)
            else:
                written = self.bucket.put_if_match(GRANTS_KEY, body, found.etag, content_type=JSON)
            if written is not None:
                return grants
        raise StorageError(f"{GRANTS_KEY} kept changing under this edit; try again")
