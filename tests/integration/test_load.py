"""COPY: files staged in S3 and loaded in one transaction — every value kept, all rows or none, once —
in every format a data tool reads, and results written out as files."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producer.bulk import Bulk, CsvStyle, load_job, load_spec
from producer.client import Client
from shared.errors import ClientSideError, JobFailed
from shared.job.model import Job
from shared.job.result import JobState
from shared.load.spec import LoadSpec, Source
from shared.settings import Settings
from worker.batch import Record, Worker

from ..conftest import queued


def schema(client: Client, database: str, table: str) -> str:
    return str(client.query(database, "SELECT sql FROM sqlite_schema WHERE name = ?", [table]).values()[0][0])


def test_a_load_keeps_every_value_as_written(client: Client, serving: Worker, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,zip,phone,big,sci,price,qty,note\n"
                    "1,02134,+15551234567,12345678901234567890123,1e3,2.50,3,\n"
                    "2,10001,+15550000000,7,2e3,9.5,4,\"a, b\"\n")
    report = client.load("keep", "people", str(path))
    assert (report.rows, report.rejected, report.version) == (2, 0, 1)
    assert client.query("keep", "SELECT * FROM people ORDER BY id").values() == [
        [1, "02134", "+15551234567", "12345678901234567890123", "1e3", "2.50", 3, None],
        [2, "10001", "+15550000000", "7", "2e3", "9.5", 4, "a, b"]]
    assert schema(client, "keep", "people") == ('CREATE TABLE "people" ("id" INTEGER, "zip" TEXT, "phone" TEXT, '
                                                '"big" TEXT, "sci" TEXT, "price" TEXT, "qty" INTEGER, "note" TEXT)')


def test_a_load_is_all_rows_or_none_and_names_the_line_column_and_job(client: Client, serving: Worker,
                                                                      tmp_path: Path) -> None:
    client.query("atom", "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    path = tmp_path / "dup.csv"
    path.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 1001)) + "500,again\n1001,last\n")
    with pytest.raises(JobFailed) as failed:
        client.load("atom", "t", str(path))
    message = failed.value.error["message"]
    assert "dup.csv: line 1002, column id" in message and "UNIQUE" in message and failed.value.job_id in message
    assert client.query("atom", "SELECT count(*) FROM t").values() == [[0]]  # nothing of it committed
    kept = client.load("atom", "t", str(path), max_errors=5)
    assert (kept.rows, kept.rejected) == (1001, 1) and kept.reject_key is not None
    rejects = client.store.get_bytes(kept.reject_key).decode()
    assert "dup.csv,1002,id," in rejects


def test_a_load_delivered_twice_is_applied_once(client: Client, settings: Settings, aws: Any, worker: Worker,
                                                drain: Callable[..., int], tmp_path: Path) -> None:
    path = tmp_path / "once.csv"
    path.write_text("a\n1\n2\n")
    bulk = Bulk(aws.s3, settings.bucket)
    job = load_job("once", load_spec("t", bulk.sources(str(path), "staged-once")), job_id="staged-once")
    body = queued(aws.s3, settings.bucket, job)
    assert worker.process([Record("m1", body), Record("m2", body)]) == []  # the same message twice in a batch
    assert worker.process([Record("m3", body)]) == []  # and once more later
    check = client.submit("once", "SELECT count(*), sum(a) FROM t")
    drain()
    assert client.wait(check, 5).values() == [[2, 3]]


def test_every_format_a_data_tool_reads(client: Client, serving: Worker, tmp_path: Path) -> None:
    tsv = tmp_path / "a.tsv"
    tsv.write_text("id\tname\n1\tx\n")
    assert client.load("fmt", "tsv", str(tsv)).rows == 1
    semi = tmp_path / "latin.txt"
    semi.write_bytes("id;name\n1;café\n2;NA\n".encode("latin-1"))
    client.load("fmt", "latin", str(semi), delimiter=";", encoding="latin-1", null_string="NA")
    assert client.query("fmt", "SELECT name FROM latin ORDER BY id").values() == [["café"], [None]]
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbfid,name\n1,x\n")
    client.load("fmt", "bom", str(bom))
    assert client.query("fmt", "SELECT id FROM bom").columns == ["id"]  # not "\ufeffid"
    zipped = tmp_path / "rows.data"  # gzip found by its content, not its name
    zipped.write_bytes(gzip.compress(b"1,x\n2,y\n"))
    client.load("fmt", "nohead", str(zipped), header=False)
    assert client.query("fmt", "SELECT c1, c2 FROM nohead ORDER BY c1").values() == [[1, "x"], [2, "y"]]
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"id": 1, "tags": [1, 2], "big": 12345678901234567890123}\n'
                     '{"id": 2, "ok": true, "price": 1.5}\n')
    client.load("fmt", "events", str(lines))
    assert client.query("fmt", "SELECT id, tags, big, ok, price FROM events ORDER BY id").values() == [
        [1, "[1,2]", "12345678901234567890123", None, None], [2, None, None, "true", 1.5]]


@pytest.mark.parametrize(("name", "data", "says"), [
    ("broken.csv.gz", b"\x1f\x8b\x08\x00garbage", "damaged or truncated gzip"),
    ("bad.jsonl", b'{"a": 1}\n{"a": \n', "bad.jsonl: line 2: not JSON"),
    ("bad.csv", b"a,b\n1,\xff\xfe\n", "bad.csv: not utf-8 text"),
    ("short.csv", b"a,b\n1,2\n3\n", "short.csv: line 3: 1 fields where the header has 2"),
    ("quote.csv", b'a,b\n1,"open\n', "quote.csv: line 2: not CSV"),
])
def test_malformed_input_is_one_line_naming_file_and_line_and_leaves_no_table(
        client: Client, serving: Worker, tmp_path: Path, name: str, data: bytes, says: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(JobFailed) as failed:
        client.load("junk", "t", str(path))
    assert says in failed.value.error["message"] and "\n" not in failed.value.error["message"]
    assert client.query("junk", "SELECT count(*) FROM sqlite_schema WHERE name = 't'").values() == [[0]]


def test_a_file_of_a_header_alone_makes_an_empty_table(client: Client, serving: Worker, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("id,name\n")
    assert client.load("hollow", "t", str(path)).rows == 0
    assert client.query("hollow", "SELECT count(*) FROM t").values() == [[0]]
    assert schema(client, "hollow", "t") == 'CREATE TABLE "t" ("id" TEXT, "name" TEXT)'


def test_schema_types_and_if_exists(client: Client, serving: Worker, tmp_path: Path) -> None:
    path = tmp_path / "z.csv"
    path.write_text("id,zip\n1,02134\n")
    client.load("opts", "s", str(path), schema="id INTEGER PRIMARY KEY, zip INTEGER")
    assert client.query("opts", "SELECT zip FROM s").values() == [[2134]]  # the declared type wins
    client.load("opts", "txt", str(path), types="text")
    assert client.query("opts", "SELECT typeof(id) FROM txt").values() == [["text"]]
    with pytest.raises(JobFailed, match="exists already"):
        client.load("opts", "txt", str(path), if_exists="fail")
    path.write_text("id,zip\n7,1\n8,2\n")
    assert client.load("opts", "txt", str(path), if_exists="replace").rows == 2
    assert client.query("opts", "SELECT id FROM txt ORDER BY id").values() == [[7], [8]]


def test_a_prefix_of_files_loads_together(client: Client, serving: Worker, settings: Settings, aws: Any) -> None:
    for i in range(3):
        aws.s3.put_object(Bucket=settings.bucket, Key=f"incoming/day{i}.csv", Body=f"day,n\n{i},{i * 10}\n".encode())
    report = client.load("many", "days", f"s3://{settings.bucket}/incoming/")
    assert report.rows == 3
    aws.s3.put_object(Bucket=settings.bucket, Key="incoming/odd.csv", Body=b"other,cols\n1,2\n")
    with pytest.raises(JobFailed, match="differ from the first file's"):
        client.load("many", "days2", f"s3://{settings.bucket}/incoming/")


def test_a_failing_load_beside_other_clients_jobs_fails_alone(settings: Settings, aws: Any, worker: Worker,
                                                              client: Client) -> None:
    aws.s3.put_object(Bucket=settings.bucket, Key="bad.csv", Body=b"a\n1\n2,3\n")
    bad = Job.create("side", load=LoadSpec("t", (Source(settings.bucket, "bad.csv", "bad.csv"),)))
    gone = Job.create("side", load=LoadSpec("u", (Source(settings.bucket, "missing.csv", "missing.csv"),)))
    other = Job.create("side", "CREATE TABLE o (a)")
    records = [Record(j.job_id, queued(aws.s3, settings.bucket, j)) for j in (bad, gone, other)]
    assert worker.process(records) == []
    assert client.status(other.job_id).state is JobState.SUCCEEDED
    assert client.status(bad.job_id).state is JobState.FAILED
    assert "line 3" in (client.status(bad.job_id).error or {})["message"]
    assert "missing.csv: cannot be read" in (client.status(gone.job_id).error or {})["message"]


def test_export_writes_one_file_locally_or_to_s3(client: Client, serving: Worker, settings: Settings, aws: Any,
                                                 tmp_path: Path) -> None:
    client.query("out", "CREATE TABLE t (id INTEGER, zip TEXT, price REAL)")
    client.query("out", "INSERT INTO t VALUES (1, '02134', 9.5), (2, NULL, 1e300)")
    local = tmp_path / "t.csv"
    written = client.export("out", "SELECT * FROM t ORDER BY id", str(local))
    assert local.read_text() == "id,zip,price\n1,02134,9.5\n2,,1e+300\n"
    assert written == local.stat().st_size
    written = client.export("out", "SELECT * FROM t ORDER BY id", f"s3://{settings.bucket}/exports/t.jsonl.gz")
    body = aws.s3.get_object(Bucket=settings.bucket, Key="exports/t.jsonl.gz")["Body"].read()
    assert written == len(body)  # the file's size, compressed
    assert [json.loads(line) for line in gzip.decompress(body).decode().splitlines()] == [
        {"id": 1, "zip": "02134", "price": 9.5}, {"id": 2, "zip": None, "price": 1e300}]
    back = client.load("out", "copy", f"s3://{settings.bucket}/exports/t.jsonl.gz")  # and in again
    assert back.rows == 2


def test_a_dataframe_takes_the_copy_path(client: Client, serving: Worker) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is in the test extras; the driver does not need it")
    frame = pd.DataFrame({"id": [1, 2], "zip": ["02134", "10001"], "price": [1.5, None]})
    report = client.load_frame("frames", "f", frame)
    assert report.rows == 2
    assert client.query("frames", "SELECT id, zip, price FROM f ORDER BY id").values() == [
        [1, "02134", 1.5], [2, "10001", None]]


def test_a_dry_run_shows_the_schema_the_load_would_make(client: Client, aws: Any, settings: Settings) -> None:
    bulk = Bulk(aws.s3, settings.bucket)
    data = b"id,zip,amount\n1,02134,1.5\n2,10001,2\n"
    spec = load_spec("t", [Source("local", "d.csv", "d.csv")])
    columns, types, first = bulk.preview(spec, open_source=lambda s: io.BytesIO(data))
    assert (columns, types, first[0]) == (["id", "zip", "amount"], ["INTEGER", "TEXT", "REAL"], ["1", "02134", "1.5"])
    lines = b'{"id": 1, "ok": true}\n{"id": 2, "big": 12345678901234567890123, "p": 1.5}\n'
    spec = load_spec("t", [Source("local", "d.jsonl", "d.jsonl")])
    columns, types, first = bulk.preview(spec, open_source=lambda s: io.BytesIO(lines))
    # What the load stages: every key a column, typed as the load types it.
    assert (columns, types) == (["id", "ok", "big", "p"], ["INTEGER", "TEXT", "TEXT", "REAL"])
    assert first == [[1, "true", None, None], [2, None, "12345678901234567890123", 1.5]]


def test_parquet_in_and_out_keeps_types(client: Client, serving: Worker, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="Parquet is the optional extra srdb[parquet]; make test installs it")
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64()), "zip": ["02134", None],
                             "price": [1.5, 2.0], "ok": [True, False], "tags": [[1, 2], []],
                             "raw": pa.array([b"\x00\x01", None], pa.binary())}), path)
    report = client.load("pq", "t", str(path))
    assert report.rows == 2
    assert schema(client, "pq", "t") == ('CREATE TABLE "t" ("id" INTEGER, "zip" TEXT, "price" REAL, "ok" INTEGER, '
                                         '"tags" TEXT, "raw" BLOB)')
    assert client.query("pq", "SELECT id, zip, price, ok, tags, raw FROM t ORDER BY id").values() == [
        [1, "02134", 1.5, 1, "[1,2]", b"\x00\x01"], [2, None, 2.0, 0, "[]", None]]
    out = tmp_path / "back.parquet"
    client.export("pq", "SELECT id, zip, price, raw FROM t ORDER BY id", str(out))
    back = pq.read_table(out)
    assert back.column_names == ["id", "zip", "price", "raw"]
    assert back.to_pylist() == [{"id": 1, "zip": "02134", "price": 1.5, "raw": b"\x00\x01"},
                                {"id": 2, "zip": None, "price": 2.0, "raw": None}]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(JobFailed, match=r"broken\.parquet: not a readable Parquet file"):
        client.load("pq", "u", str(broken))


def test_a_file_written_while_it_uploads_is_refused_not_loaded_torn(settings: Settings, aws: Any,
                                                                    tmp_path: Path) -> None:
    path = tmp_path / "growing.csv"
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(300_000)))
    written: list[bool] = []

    def write(_sent: int) -> None:  # another process is still writing the file while the upload reads it
        if not written:
            written.append(True)
            with open(path, "a") as f:
                f.write("300000\n30")

    bulk = Bulk(aws.s3, settings.bucket)
    with pytest.raises(ClientSideError, match="changed while it was uploaded"):
        bulk.sources(str(path), "torn-load", progress=write)
    assert aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix="staging/torn-load/")["KeyCount"] == 0


def test_a_load_that_breaks_a_foreign_key_fails_naming_it(client: Client, serving: Worker, tmp_path: Path) -> None:
    client.wait(client.submit_statements("keys", [
        ("CREATE TABLE customers (id INTEGER PRIMARY KEY)", None),
        ("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id))", None),
        ("INSERT INTO customers VALUES (1)", None)]), 30)
    path = tmp_path / "orders.csv"
    path.write_text("id,customer_id\n1,1\n2,42\n3,1\n")
    with pytest.raises(JobFailed) as failed:
        client.load("keys", "orders", str(path))
    message = failed.value.error["message"]
    assert "orders.csv: line 3" in message
    assert "FOREIGN KEY constraint failed: orders(customer_id) REFERENCES customers(id)" in message
    assert client.query("keys", "SELECT count(*) FROM orders").values() == [[0]]
    kept = client.load("keys", "orders", str(path), max_errors=1)
    assert (kept.rows, kept.rejected) == (2, 1)
    assert client.query("keys", "PRAGMA foreign_key_check").values() == []


ROUND_TRIP = [
    [1, None, None, None],
    [2, "", 0.0, 0],
    [3, 'say "hi", then go', -2.5, -9007199254740993],
    [4, "two\nlines\r\nand a tab\there", 1e-300, 2**62],
    [5, " padded ", 3.25, 7],
    [6, "\\N", float(10**20), None],
    [7, "ünï, cödé ✓", None, 0],
    [8, "NULL", 1.0, 1],
]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_export_then_load_round_trips_null_empty_quotes_newlines_and_types(
        client: Client, serving: Worker, tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="Parquet is the optional extra srdb[parquet]; make test installs it")
    database = f"trip-{fmt}"
    columns = "id INTEGER PRIMARY KEY, t TEXT, r REAL, i INTEGER"
    client.query(database, f"CREATE TABLE src ({columns})")
    client.wait(client.submit_many(database, "INSERT INTO src VALUES (?, ?, ?, ?)", ROUND_TRIP), 30)
    dest = tmp_path / f"out.{ 'csv' if fmt == 'tsv' else fmt}"
    style = CsvStyle(delimiter="\t") if fmt == "tsv" else None
    client.export(database, "SELECT * FROM src ORDER BY id", str(dest), csv=style)
    report = client.load(database, "back", str(dest), schema=columns,
                         input_format="tsv" if fmt == "tsv" else None)
    assert (report.rows, report.rejected) == (len(ROUND_TRIP), 0)
    back = client.query(database, "SELECT id, t, typeof(t), r, typeof(r), i, typeof(i) FROM back ORDER BY id")
    source = client.query(database, "SELECT id, t, typeof(t), r, typeof(r), i, typeof(i) FROM src ORDER BY id")
    assert back.values() == source.values()
    assert [row[1] for row in back.values()] == [row[1] for row in ROUND_TRIP]
