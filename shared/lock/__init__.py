"""A database's write lock: one interface, two backends (``SRDB_LOCK_BACKEND``).

- ``security-group`` (the default, as srdb was conceived): an EC2 security group named after the
  database; creating a group whose name is taken fails atomically (``shared.lock.security_group``).
- ``s3``: a lease object per database, taken with ``If-None-Match: *`` and renewed, released or
  taken over with ``If-Match`` on its ETag (``shared.lock.lease``), for accounts that outgrow EC2's API
  rate (Create/DeleteSecurityGroup refill at 5 a second per account and Region).

Either way the lock only avoids wasted work: the conditional manifest write is what guarantees that
no update is lost, so a holder that stalls past its expiry and loses the lock cannot overwrite the
snapshot of whoever took it next.

Modules, each layer importing only those below it (the ``layers`` contract in pyproject.toml):
``factory`` (the backend the settings name, for the worker and the reaper), then the backends
``security_group`` and ``lease``, then ``base`` (the interface and ``Backoff``).
"""

from __future__ import annotations

from shared.lock.base import Backoff, HeldLock, LockHandle, WriteLock

__all__ = ["Backoff", "HeldLock", "LockHandle", "WriteLock"]
