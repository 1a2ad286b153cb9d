"""Which objects a load may read. The worker reads a load's files with its own role, which also reads
srdb's own objects — every database's chunks, other jobs' payloads, results and staged files, the grants
— so what a load names is checked before it is opened: a load reads what its sender could have given
it, never what the worker holds for others.

- In srdb's bucket: the load's own staged files (``staging/<its job id>/``) and any prefix that is not
  srdb's (a user's ``incoming/``, ``exports/``); never ``db/``, ``jobs/``, ``results/``, ``config/``,
  ``locks/`` nor another job's ``staging/``. Nothing at all in a separate status bucket.
- Elsewhere: only what ``SRDB_LOAD_SOURCES`` allows (``s3://bucket/prefix*`` globs, comma-separated);
  by default nothing outside srdb's bucket.
"""

from __future__ import annotations

import fnmatch

from shared.errors import Forbidden
from shared.job.keys import staging_prefix
from shared.load.spec import Source

SRDB_PREFIXES = ("db/", "jobs/", "results/", "config/", "locks/", "staging/")


class SourcePolicy:
    def __init__(self, bucket: str, status_bucket: str, allowed: str) -> None:
        self.bucket, self.status_bucket = bucket, status_bucket
        self.allowed = [p.strip() for p in allowed.split(",") if p.strip()]

    def check(self, source: Source, job_id: str) -> None:
        """Forbidden, naming the source and the rule, unless the load may read it."""
        where = f"s3://{source.bucket}/{source.key}"
        if source.bucket == self.bucket:
            own = staging_prefix(job_id)
            key = source.key
            if key.startswith(own) or not any(key.startswith(p) for p in SRDB_PREFIXES):
                return
            raise Forbidden(f"{source.name}: {where} is srdb's own data (db/, jobs/, results/, config/, locks/ and "
                            "other loads' staging/): a load may read its own staged file or your objects under any "
                            "other prefix")
        if self.status_bucket and source.bucket == self.status_bucket:
            raise Forbidden(f"{source.name}: {where} is in srdb's status bucket; no load may read it")
        if any(fnmatch.fnmatchcase(where, pattern) for pattern in self.allowed):
            return
        raise Forbidden(f"{source.name}: {where} is outside srdb's bucket, and this deployment allows loads from "
                        "there only when SRDB_LOAD_SOURCES (the loadSources deploy parameter) names it, e.g. "
                        f"s3://{source.bucket}/*")
