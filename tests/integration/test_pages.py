"""Pages on demand (worker/pages.py, worker/page_writes.py): a read, a write or a transaction's statement on a
worker with an empty cache fetches only the chunks it touches and copies nothing, reads as of old versions
materialize nothing, the chunk cache stays within its bound, an S3 failure under a read or a write retries it
instead of failing it, and results over the VFS are SQLite's own."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producer.client import Client
from shared.job.model import Job
from shared.job.result import JobState
from shared.job.values import encode_value
from shared.settings import Settings
from tests.faults import FaultyClient
from worker.batch import Record, Worker

from ..conftest import queued, serve
from ..unit.test_transaction import rows

CHUNK = 64 * 1024


@pytest.fixture
def small_chunks(settings: Settings) -> Settings:
    return settings.replace(chunk_size=CHUNK)


def fresh(settings: Settings, aws: Any, name: str, s3: Any = None, **changes: Any) -> Worker:
    """A worker with an empty cache: a new Lambda container."""
    return Worker(settings.replace(cache_dir=f"{settings.cache_dir}-{name}", **changes), s3 or aws.s3, aws.sqs, aws.ec2)


def seed(client: Client, drain: Callable[..., int], rows: int = 4000) -> None:
    client.submit("big", "CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)")
    client.submit_many("big", "INSERT INTO t VALUES (?, ?)", [[i, f"{i:0500d}"] for i in range(rows)])
    drain()


def test_a_cold_point_read_fetches_only_the_chunks_it_touches(small_chunks: Settings, aws: Any,
                                                              drain: Callable[..., int]) -> None:
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    writer = fresh(small_chunks, aws, "writer")
    seed(client, lambda: drain(writer))
    size = client.history("big")[0].file_size
    cold = fresh(small_chunks, aws, "cold")
    job = client.submit("big", "SELECT pad FROM t WHERE id = ?", [2345])
    drain(cold)
    assert client.wait(job, 5).values() == [[f"{2345:0500d}"]]
    assert size > 2_000_000 and cold.store.stats.bytes_down < 5 * CHUNK + 4096  # a few chunks, and the manifest
    assert not any((Path(cold.store.cache_dir) / "big").glob("*.sqlite"))  # no local copy was made
    client.submit("big", "INSERT INTO t VALUES (-1, 'one more')")
    drain(writer)
    old = client.submit("big", "SELECT count(*) FROM t", as_of=1)
    drain(cold)
    assert client.wait(old, 5).values() == [[4000]]
    assert not (Path(cold.store.cache_dir) / "big" / "versions").exists()  # nothing materialized


def test_the_chunk_cache_stays_within_its_bound_through_a_scan(small_chunks: Settings, aws: Any,
                                                               drain: Callable[..., int]) -> None:
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    seed(client, lambda: drain(fresh(small_chunks, aws, "writer")))
    bounded = fresh(small_chunks, aws, "bounded", cache_bytes=4 * CHUNK)
    job = client.submit("big", "SELECT count(*), sum(length(pad)) FROM t")
    drain(bounded)
    assert client.wait(job, 5).values() == [[4000, 2_000_000]]
    cached = [p for p in (Path(bounded.store.cache_dir) / ".chunks").iterdir() if not p.name.startswith(".")]
    assert sum(p.stat().st_size for p in cached) <= 4 * CHUNK
    assert bounded.pages is not None and bounded.pages.cache.size <= 4 * CHUNK


@pytest.mark.parametrize(("sql", "expected"), [("SELECT pad FROM t WHERE id = 7", [[f"{7:0500d}"]]),
                                             ("INSERT INTO t VALUES (-7, 'once') RETURNING id", [[-7]])])
def test_an_s3_failure_under_a_job_retries_it_instead_of_failing_it(small_chunks: Settings, aws: Any,
                                                                    drain: Callable[..., int], sql: str,
                                                                    expected: list[list[Any]]) -> None:
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    seed(client, lambda: drain(fresh(small_chunks, aws, "writer")))
    s3 = FaultyClient(aws.s3)
    s3.fail("get_object", code="InternalError", when=lambda kw: "/chunks/" in kw.get("Key", ""))
    flaky = fresh(small_chunks, aws, "flaky", s3=s3)
    job = Job.create("big", sql)
    body = queued(aws.s3, small_chunks.bucket, job)
    assert flaky.process([Record("m1", body)]) == ["m1"]  # back to SQS, to run again
    assert client.status(job.job_id).state is JobState.QUEUED
    again = fresh(small_chunks, aws, "again")
    assert again.process([Record("m1", body, 2)]) == [] and again.process([Record("m1", body, 3)]) == []
    assert client.status(job.job_id).values() == expected
    assert values(client, "SELECT count(*) FROM t WHERE id = -7", lambda: drain(again)) == [[int("INSERT" in sql)]]


QUERIES = [
    "SELECT count(*), sum(n), min(r), max(r), avg(n) FROM t",
    "SELECT n, s FROM t WHERE n BETWEEN 100 AND 200 ORDER BY n, id",
    "SELECT s, count(*) FROM t GROUP BY s ORDER BY 2 DESC, 1 LIMIT 7",
    "SELECT id, hex(b) FROM t WHERE b IS NOT NULL ORDER BY id LIMIT 20",
    "SELECT a.id, b.id FROM t a JOIN t b ON a.n = b.n AND a.id < b.id ORDER BY 1, 2 LIMIT 30",
    "SELECT id FROM t WHERE s LIKE 'k%' ORDER BY id",
    "SELECT typeof(n), typeof(r), typeof(s), typeof(b), count(*) FROM t GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    "SELECT value FROM t, json_each(t.j) WHERE t.id < 50 ORDER BY t.id, value",
    "SELECT id, n FROM t WHERE id IN (SELECT id FROM t ORDER BY r DESC LIMIT 10) ORDER BY id",
]


def test_results_over_the_vfs_are_sqlites_own(client: Client, serving: Worker, tmp_path: Path) -> None:
    rng = random.Random(11)
    client.query("prop", "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, r REAL, s TEXT, b BLOB, j TEXT)")
    rows = [[i, rng.choice([None, rng.randint(-10**12, 10**12), rng.randint(0, 300)]),
             rng.choice([None, rng.uniform(-1e6, 1e6)]), rng.choice([None, "", "kiwi", "k" * rng.randint(1, 900),
                                                                     f"x{rng.random()}"]),
             rng.choice([None, rng.randbytes(rng.randint(0, 3000))]),
             f"[{rng.randint(0, 9)}, {rng.randint(0, 9)}]"] for i in range(3000)]
    client.wait(client.submit_many("prop", "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
                                   [[encode_value(v) for v in row] for row in rows]), 60)
    client.pull("prop", tmp_path / "prop.sqlite")
    local = sqlite3.connect(tmp_path / "prop.sqlite")
    try:
        for sql in QUERIES:
            expected = [list(row) for row in local.execute(sql)]
            assert list(client.results(client.submit("prop", sql), 30)) == expected, sql
    finally:
        local.close()


def test_a_write_reuses_the_chunks_the_workers_reads_fetched(small_chunks: Settings, aws: Any,
                                                             drain: Callable[..., int]) -> None:
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    seed(client, lambda: drain(fresh(small_chunks, aws, "writer")))
    worker = fresh(small_chunks, aws, "both")
    scan = client.submit("big", "SELECT count(*) FROM t WHERE pad LIKE '%7%'")
    drain(worker)
    assert client.wait(scan, 5).state is JobState.SUCCEEDED
    fetched = worker.store.stats.bytes_down
    write = client.submit("big", "INSERT INTO t VALUES (-5, 'five')")
    drain(worker)
    assert client.wait(write, 5).state is JobState.SUCCEEDED
    assert fetched > 2_000_000 and worker.store.stats.bytes_down - fetched < CHUNK  # its copy came from the cache


def test_a_cold_write_fetches_only_the_chunks_it_touches(small_chunks: Settings, aws: Any, tmp_path: Path,
                                                         drain: Callable[..., int]) -> None:
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    seed(client, lambda: drain(fresh(small_chunks, aws, "writer")))
    cold = fresh(small_chunks, aws, "cold")
    job = client.submit("big", "UPDATE t SET pad = 'changed' WHERE id = ?", [2345])
    drain(cold)
    assert client.wait(job, 5).rowcount == 1
    # The header's chunk and the B-tree's path to the row, down and up; never the 2 MB database.
    assert cold.store.stats.bytes_down < 5 * CHUNK + 8192 and cold.store.stats.bytes_up < 5 * CHUNK + 8192
    assert not (Path(cold.store.cache_dir) / "big" / "db.sqlite").exists()  # no local copy was made
    check = client.submit("big", "SELECT count(*), sum(pad = 'changed'), sum(id = 2345) FROM t")
    drain(fresh(small_chunks, aws, "check"))
    assert client.wait(check, 5).values() == [[4000, 1, 1]]
    client.pull("big", tmp_path / "big.sqlite")  # and stock SQLite finds the file whole
    assert rows(tmp_path / "big.sqlite", "PRAGMA integrity_check") == [("ok",)]


def test_a_cold_transaction_copies_nothing(small_chunks: Settings, aws: Any, drain: Callable[..., int]) -> None:
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    seed(client, lambda: drain(fresh(small_chunks, aws, "writer")))
    cold = fresh(small_chunks, aws, "cold")
    with serve(small_chunks, aws, cold), client.transaction("big", timeout=30) as tx:
        assert tx.execute("UPDATE t SET pad = 'mine' WHERE id = 17").rowcount == 1
        assert tx.execute("INSERT INTO t VALUES (-1, 'new') RETURNING id").values() == [[-1]]
        assert tx.execute("SELECT pad FROM t WHERE id IN (-1, 17) ORDER BY id").values() == [["new"], ["mine"]]
        assert cold.store.stats.bytes_down < 8 * CHUNK  # three statements, their chunks: not the database
        assert not (Path(cold.store.cache_dir) / ".scratch").exists()
    assert values(client, "SELECT count(*), sum(pad = 'mine') FROM t", lambda: drain(cold)) == [[4001, 1]]


def values(client: Client, sql: str, run: Callable[[], object]) -> list[list[Any]]:
    job = client.submit("big", sql)
    run()
    return client.wait(job, 5).values()


def test_an_empty_result_names_its_columns_on_reads_and_writes(small_chunks: Settings, aws: Any,
                                                               drain: Callable[..., int]) -> None:
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    worker = fresh(small_chunks, aws, "worker")
    seed(client, lambda: drain(worker), rows=10)
    read = client.submit("big", "SELECT id, pad AS p FROM t WHERE id < 0")
    write = client.submit("big", "DELETE FROM t WHERE id < 0 RETURNING id")
    drain(worker)
    assert (client.wait(read, 5).columns, client.wait(read, 5).rows) == (["id", "p"], [])
    assert (client.wait(write, 5).columns, client.wait(write, 5).rows) == (["id"], [])


def test_a_database_a_whole_copy_worker_wrote_takes_writes_on_pages(small_chunks: Settings, aws: Any,
                                                                    drain: Callable[..., int]) -> None:
    # What upgrading a stack looks like: its databases were written on whole copies, in WAL mode.
    client = Client(small_chunks, s3=aws.s3, sqs=aws.sqs)
    seed(client, lambda: drain(fresh(small_chunks, aws, "before", read_pages=0)), rows=100)
    assert fresh(small_chunks, aws, "check", read_pages=0).store.sync("big").path.read_bytes()[18:20] == b"\x02\x02"
    worker = fresh(small_chunks, aws, "after")
    write = client.submit("big", "INSERT INTO t VALUES (-1, 'on pages')")
    drain(worker)
    assert client.wait(write, 5).state is JobState.SUCCEEDED
    assert values(client, "SELECT count(*) FROM t", lambda: drain(worker)) == [[101]]


def test_a_fifo_writes_manifest_is_read_beside_its_status_document(settings: Settings, aws: Any) -> None:
    """On a FIFO queue a write's database is its message group, which no other worker writes meanwhile: its
    manifest is read as soon as the message is, beside the job's status document rather than after it (a round
    trip off the write's path). Here the status read waits for the manifest read to begin, which without the
    read ahead would come only after it. A standard queue's write reads the manifest after taking the lock."""
    s3 = FaultyClient(aws.s3)
    manifest_asked = threading.Event()
    overlapped: list[bool] = []
    s3.fail("get_object", times=100, when=lambda kw: kw.get("Key") == "db/ahead/manifest.json",
            before=manifest_asked.set)
    s3.fail("get_object", when=lambda kw: str(kw.get("Key", "")).startswith("results/"),
            before=lambda: overlapped.append(manifest_asked.wait(5)))
    fifo_job = create_through(settings, aws, s3, "ahead", "srdb-jobs.fifo")
    assert overlapped == [True]

    s3 = FaultyClient(aws.s3)
    asked: list[str] = []
    s3.fail("get_object", when=lambda kw: asked.append(str(kw.get("Key", ""))) is not None)  # records; never fires
    standard_job = create_through(settings, aws, s3, "locked", "srdb-jobs")
    assert [k for k in asked if k.startswith("results/") or k.endswith("/manifest.json")][:2] == [
        f"results/{standard_job}.json", "db/locked/manifest.json"]
    client = Client(settings, s3=aws.s3, sqs=aws.sqs)
    assert [client.status(j).state for j in (fifo_job, standard_job)] == [JobState.SUCCEEDED] * 2


def test_a_read_ahead_that_fails_is_made_again_and_fails_no_job(settings: Settings, aws: Any) -> None:
    """A manifest read ahead that S3 fails (once here) is asked again by the write that needs it: the job
    succeeds in its batch instead of going back to the queue."""
    s3 = FaultyClient(aws.s3)
    failed = s3.fail("get_object", when=lambda kw: kw.get("Key") == "db/again/manifest.json")
    job = create_through(settings, aws, s3, "again", "srdb-jobs.fifo")
    assert failed.fired == 1
    assert Client(settings, s3=aws.s3, sqs=aws.sqs).status(job).state is JobState.SUCCEEDED


def create_through(settings: Settings, aws: Any, s3: Any, database: str, queue: str) -> str:
    """``CREATE TABLE`` on ``database``, its message from the queue named ``queue``, run by a new worker on
    ``s3``; the job's id."""
    worker = fresh(settings, aws, database, s3)
    try:
        job = Job.create(database, "CREATE TABLE t (a)")
        source = f"arn:aws:sqs:{settings.region}:123456789012:{queue}"
        assert worker.process([Record(job.job_id, queued(aws.s3, settings.bucket, job), source=source)]) == []
    finally:
        worker.close()
    return job.job_id
