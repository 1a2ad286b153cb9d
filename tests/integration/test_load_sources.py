"""A load reads only what its sender could have given it: never srdb's own objects (another database's
manifest or chunks, other jobs' payloads, results or staged files, the grants), and nothing outside srdb's
bucket unless SRDB_LOAD_SOURCES allows it. Each hostile load fails alone beside other clients' jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from producer.client import Client
from shared.job.model import Job
from shared.job.result import JobState
from shared.load.spec import LoadSpec, Source
from shared.settings import Settings
from worker.batch import Record, Worker

from ..conftest import queued


def load_of(bucket: str, key: str, fmt: str = "jsonl", job_id: str | None = None) -> Job:
    return Job.create("tenant1", load=LoadSpec("stolen", (Source(bucket, key, key),), format=fmt), job_id=job_id)


@pytest.mark.parametrize("key", [
    "db/secret/manifest.json", "db/secret/versions/1.json", "results/{victim}.json", "jobs/{victim}/payload.json",
    "config/grants.json", "locks/secret.json", "staging/{victim}/data.csv", "db/", "results/",
])
def test_a_load_cannot_read_srdbs_own_objects(key: str, settings: Settings, aws: Any, worker: Worker,
                                              client: Client, drain: Callable[..., int]) -> None:
    client.submit("secret", "CREATE TABLE s (pin TEXT)")
    victim = client.submit("secret", "INSERT INTO s VALUES ('1234')")
    aws.s3.put_object(Bucket=settings.bucket, Key=f"staging/{victim}/data.csv", Body=b"pin\n1234\n")
    aws.s3.put_object(Bucket=settings.bucket, Key="locks/secret.json", Body=b'{"pin": "1234"}')
    drain()
    hostile = load_of(settings.bucket, key.format(victim=victim), "jsonl" if key.endswith(".json") else "csv")
    own = Job.create("tenant1", "CREATE TABLE mine (a)")
    other = Job.create("secret", "SELECT pin FROM s")
    records = [Record(j.job_id, queued(aws.s3, settings.bucket, j)) for j in (own, hostile, other)]
    assert worker.process(records) == []
    error = client.status(hostile.job_id).error or {}
    assert error.get("type") == "Forbidden" and "srdb's own data" in error.get("message", ""), error
    assert client.status(own.job_id).state is JobState.SUCCEEDED
    assert client.status(other.job_id).values() == [["1234"]]


def test_a_load_reads_its_own_staged_file_and_the_users_prefixes(settings: Settings, aws: Any, worker: Worker,
                                                                 client: Client) -> None:
    job = Job.create("tenant1", load=LoadSpec("a", (Source(settings.bucket, "x", "x"),)))
    staged = Job.create("tenant1", load=LoadSpec("a", (Source(settings.bucket, f"staging/{job.job_id}/a.csv",
                                                              "a.csv"),)), job_id=job.job_id)
    aws.s3.put_object(Bucket=settings.bucket, Key=f"staging/{job.job_id}/a.csv", Body=b"n\n1\n")
    aws.s3.put_object(Bucket=settings.bucket, Key="incoming/b.csv", Body=b"n\n2\n")
    mine = Job.create("tenant1", load=LoadSpec("b", (Source(settings.bucket, "incoming/b.csv", "b.csv"),)))
    assert worker.process([Record(j.job_id, queued(aws.s3, settings.bucket, j)) for j in (staged, mine)]) == []
    assert client.status(staged.job_id).values() == [[1, 0, 4, None]]
    assert client.status(mine.job_id).state is JobState.SUCCEEDED


def test_a_load_from_another_bucket_needs_the_deployments_allow_list(settings: Settings, aws: Any,
                                                                     client: Client) -> None:
    aws.s3.create_bucket(Bucket=f"{settings.bucket}-lake")
    aws.s3.put_object(Bucket=f"{settings.bucket}-lake", Key="sales/day1.csv", Body=b"n\n5\n")
    job = load_of(f"{settings.bucket}-lake", "sales/day1.csv", "csv")
    refused = Worker(settings, aws.s3, aws.sqs, aws.ec2)
    allowed = Worker(settings.replace(load_sources=f"s3://{settings.bucket}-lake/sales/*"), aws.s3, aws.sqs,
                     aws.ec2)
    try:
        body = queued(aws.s3, settings.bucket, job)
        assert refused.process([Record("m0", body)]) == []
        error = client.status(job.job_id).error or {}
        assert error.get("type") == "Forbidden" and "SRDB_LOAD_SOURCES" in error.get("message", ""), error
        again = load_of(f"{settings.bucket}-lake", "sales/day1.csv", "csv")
        assert allowed.process([Record("m1", queued(aws.s3, settings.bucket, again))]) == []
        assert client.status(again.job_id).rowcount == 1
    finally:
        refused.close()
        allowed.close()
