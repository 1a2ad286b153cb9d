"""The seed design, for comparison: per job, take the lock, download the whole file, run the SQL,
upload the whole file unconditionally, release the lock. (It also classed writes by keyword and
reported every error as success; the baseline keeps only its data path, which is what is timed.)"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from shared.job.model import Job
from shared.job.result import JobResult, JobState
from shared.job.status import StatusStore
from shared.lock.security_group import SecurityGroupLock
from shared.s3 import Bucket
from shared.settings import Settings


class SeedWorker:
    def __init__(self, settings: Settings, s3: Any, ec2: Any) -> None:
        self.s3, self.bucket = s3, settings.bucket
        self.lock = SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=settings.lock_ttl)
        self.status = StatusStore(Bucket(s3, settings.bucket))
        self.folder = Path(tempfile.mkdtemp(prefix="srdb-seed-"))

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        for record in event["Records"]:
            self.run(Job.from_text(record["body"]))
        return {"batchItemFailures": []}

    def run(self, job: Job) -> None:
        key = f"seed/{job.database}.sqlite"
        path = self.folder / f"{job.job_id}.sqlite"
        handle = self.lock.acquire(job.database, 60)
        try:
            with contextlib.suppress(ClientError):  # a new database has no file yet
                path.write_bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            conn = sqlite3.connect(path)
            with conn:
                for statement in job.statements:
                    conn.executemany(statement.sql, statement.decoded())
            conn.close()
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
        finally:
            self.lock.release(handle)
            path.unlink(missing_ok=True)
        self.status.put(JobResult(job.job_id, JobState.SUCCEEDED, database=job.database,
                                  finished_at=datetime.now(UTC).isoformat(timespec="milliseconds")))
