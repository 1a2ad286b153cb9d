"""SRDB_STATUS_BUCKET: what each job sends and gets back (status documents, result parts, claim-checked
bodies) in a bucket of its own — an S3 Express One Zone directory bucket on AWS, a second bucket here —
while the databases stay where they are."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from producer.aio import AsyncClient
from producer.client import Client
from producer.local.poller import Poller
from reaper.reaper import Reaper
from shared.job.keys import PAYLOADS_PREFIX
from shared.job.result import JobState
from shared.s3 import Bucket
from shared.settings import Settings
from worker.batch import Worker
from worker.handler import run_batch


@pytest.fixture
def split(settings: Settings, aws: Any) -> Settings:
    name = f"{settings.bucket}-jobs"
    aws.s3.create_bucket(Bucket=name)
    return settings.replace(status_bucket=name, inline_result_bytes=2_000)


def keys(aws: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in aws.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_jobs_live_in_the_status_bucket_and_databases_in_the_data_bucket(split: Settings, aws: Any) -> None:
    worker = Worker(split, aws.s3, aws.sqs, aws.ec2)
    client = Client(split, s3=aws.s3, sqs=aws.sqs)
    poller = Poller(aws.sqs, split.queue_url, lambda e, c: run_batch(worker, e), region=split.region, wait_seconds=0)
    rows = [[random.randbytes(200).hex()] for _ in range(2_000)]  # a claim-checked body: no room in a message
    jobs = [client.submit("sb", "CREATE TABLE t (v TEXT)"), client.submit_many("sb", "INSERT INTO t VALUES (?)", rows)]
    assert keys(aws, split.status_bucket, PAYLOADS_PREFIX)
    while poller.poll_once():
        pass
    assert [client.wait(j, 5).state for j in jobs] == [JobState.SUCCEEDED] * 2
    read = client.submit("sb", "SELECT v FROM t ORDER BY rowid")
    poller.poll_once()
    assert client.wait(read, 5).parts  # paged: the parts are in the status bucket too
    assert [r[0] for r in client.results(read)] == [r[0] for r in rows]
    assert {j.job_id for j in client.jobs()} == {*jobs, read}

    async def waited() -> list[list[Any]]:
        async with AsyncClient(split) as aclient:
            return [row async for row in aclient.results(read)]

    assert [r[0] for r in asyncio.run(waited())] == [r[0] for r in rows]
    assert keys(aws, split.bucket, "results/") == keys(aws, split.bucket, PAYLOADS_PREFIX) == []
    assert keys(aws, split.status_bucket, "db/") == []
    assert keys(aws, split.bucket, "db/sb/manifest.json") == ["db/sb/manifest.json"]
    later = time.time() + 15 * 24 * 3600  # the reaper sweeps old payloads where they are
    report = Reaper.for_settings(split, ec2=aws.ec2, s3=aws.s3, now=lambda: later).run()
    assert report.gc is not None and report.gc.payloads_deleted >= 1
    assert keys(aws, split.status_bucket, PAYLOADS_PREFIX) == []
    worker.close()


def test_a_directory_bucket_is_listed_in_key_order(settings: Settings, aws: Any) -> None:
    """S3 Express lists a directory bucket in no order and without StartAfter: srdb orders it itself."""
    bucket = Bucket(aws.s3, settings.bucket)
    for key in ("results/c.json", "results/a.json", "results/d.json", "results/b.json"):
        bucket.put(key, b"{}")
    bucket.directory = True  # what a bucket named *--x-s3 is; moto cannot serve one
    assert list(bucket.list("results/", start_after="results/a.json", limit=2)) == ["results/b.json",
                                                                                     "results/c.json"]
