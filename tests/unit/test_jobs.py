from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from shared.errors import InvalidJob
from shared.job.model import MAX_SQL_CHARS, Job, TxStep
from shared.job.values import decode_value, encode_value
from shared.names import check_database, new_job_id


def base(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "job_id": "j1", "database": "sales", "sql": "SELECT 1"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize("job", [
    Job.create("sales", "SELECT ?", [1]),
    Job.create("sales", "SELECT :a", {"a": "x"}),
    Job.create("sales", statements=[("INSERT INTO t VALUES (?)", [1]), ("DELETE FROM t", None)]),
    Job.create("sales", "INSERT INTO t VALUES (?)", param_sets=[[1], [2], [{"$blob": "AAE="}]]),
    Job.create("sales", "SELECT 1", job_id="my-id", reply_to="https://sqs/q", read_only=True, timeout=2.5),
])
def test_every_shape_survives_the_queue(job: Job) -> None:
    assert Job.from_text(job.to_text()) == job


def test_executemany_decodes_blobs_for_sqlite() -> None:
    job = Job.create("db", "INSERT INTO t VALUES (?)", param_sets=[[{"$blob": "AAE="}], [None]])
    assert job.statements[0].decoded() == [[b"\x00\x01"], [None]]


@pytest.mark.parametrize(("doc", "message"), [
    ([1, 2], "must be a JSON object"),
    (base(extra=1), "unknown field(s): extra"),
    (base(v=2), "unsupported schema version 2"),
    (base(v=None), "unsupported schema version None"),
    ({"v": 1, "database": "d", "sql": "SELECT 1"}, "missing field: job_id"),
    ({"v": 1, "job_id": "j", "sql": "SELECT 1"}, "missing field: database"),
    (base(sql=None), "exactly one of: sql, statements"),
    (base(statements=[{"sql": "SELECT 1"}]), "exactly one of: sql, statements"),
    (base(database="../etc"), "database name"),
    (base(database="Sales"), "database name"),
    (base(database="a" * 64), "database name"),
    (base(database="a/b"), "database name"),
    (base(database=7), "database name"),
    (base(job_id="../../x"), "job id"),
    (base(job_id="a" * 129), "job id"),
    (base(job_id=""), "job id"),
    (base(sql="   "), "sql must be a non-empty string"),
    (base(sql=12), "sql must be a non-empty string"),
    (base(sql="x" * (MAX_SQL_CHARS + 1)), "longer than"),
    (base(params="1"), "params must be a list"),
    (base(params=[[1]]), "is not an integer, real, text, null or tagged blob"),
    (base(params=[{"$blob": "!!"}]), "not valid base64"),
    (base(params=[2**64]), "does not fit SQLite's 64 bits"),
    (base(params={"a b": 1}), "not a valid SQL parameter name"),
    (base(param_sets=[]), "param_sets must be a list of 1 to"),
    (base(params=[1], param_sets=[[1]]), "not both"),
    (base(timeout=0), "timeout must be"),
    (base(timeout=True), "timeout must be"),
    (base(timeout=10_000), "timeout must be"),
    (base(read_only="yes"), "read_only must be"),
    (base(reply_to="file:///etc/passwd"), "reply_to must be an SQS queue URL"),
    (base(submitted_at=5), "submitted_at"),
    ({"v": 1, "job_id": "j", "database": "d", "statements": []}, "statements must be a list of 1 to"),
    ({"v": 1, "job_id": "j", "database": "d", "statements": [{"sql": "SELECT 1", "x": 1}]}, "statements[0]"),
    ({"v": 1, "job_id": "j", "database": "d", "statements": [{"sql": ""}]}, "statements[0].sql"),
])
def test_invalid_jobs_name_their_fault(doc: Any, message: str) -> None:
    with pytest.raises(InvalidJob) as raised:
        Job.from_json(doc)
    assert message in str(raised.value)


@pytest.mark.parametrize("text", ["", "{", "nul", "[" * 100_000, '{"v": 1,}'])
def test_malformed_json_is_an_invalid_job(text: str) -> None:
    with pytest.raises(InvalidJob, match=r"not valid JSON|must be a JSON object"):
        Job.from_text(text)


def test_job_ids_are_ulids_that_sort_by_time() -> None:
    first, second = new_job_id(now=1_000.0), new_job_id(now=1_000.001)
    assert len(first) == 26 and first < second
    assert set(first) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_database_names() -> None:
    assert check_database("a") == "a"
    assert check_database("sales_2026-q1") == "sales_2026-q1"


@pytest.mark.parametrize("value", [None, 0, -(2**63), 2**63 - 1, 1.5, "", "héllo ✓", b"", b"\x00\xff"])
def test_values_keep_their_sqlite_type_through_json(value: Any) -> None:
    assert decode_value(json.loads(json.dumps(encode_value(value)))) == value


def test_booleans_become_integers() -> None:
    assert decode_value(True) == 1


def test_the_digest_names_what_a_job_does_not_when_it_was_sent() -> None:
    from datetime import UTC, datetime

    one = Job.create("d", "INSERT INTO t VALUES (:a, :b)", {"a": 1, "b": "x"}, job_id="j",
                     now=datetime(2026, 1, 1, tzinfo=UTC))
    again = Job.create("d", "INSERT INTO t VALUES (:a, :b)", {"b": "x", "a": 1}, job_id="j",
                       now=datetime(2026, 6, 1, tzinfo=UTC))
    other = Job.create("d", "INSERT INTO t VALUES (:a, :b)", {"a": 2, "b": "x"}, job_id="j")
    assert one.digest() == again.digest() != other.digest()
    assert Job.from_text(one.to_text()) == one
    assert Job.from_text(one.to_text()).submitted_at == "2026-01-01T00:00:00.000+00:00"


@pytest.mark.parametrize(("transaction", "extra", "message"), [
    ({"base": None, "preview": False}, {}, "a transaction's commit names its base version"),
    ({"base": -1, "preview": True}, {}, "transaction.base must be a snapshot version"),
    ({"base": True, "preview": True}, {}, "transaction.base must be a snapshot version"),
    ({"base": 1}, {}, "transaction must be an object with preview"),
    ({"base": 1, "preview": "yes"}, {}, "transaction.preview must be true or false"),
    ({"base": 1, "preview": True, "extra": 1}, {}, "transaction must be an object"),
    ([], {}, "transaction must be an object"),
    ({"base": 1, "preview": True}, {"as_of": 1}, "a transaction's job has no load, as_of or read_only"),
    ({"base": 1, "preview": True}, {"read_only": True}, "a transaction's job has no load, as_of or read_only"),
])
def test_a_malformed_transaction_step_is_refused(transaction: Any, extra: dict[str, Any], message: str) -> None:
    doc = {"v": 1, "job_id": "j1", "database": "d", "sql": "SELECT 1", "transaction": transaction, **extra}
    with pytest.raises(InvalidJob, match=message):
        Job.from_json(doc)


def test_statements_with_parameter_sets_round_trip_and_one_set_keeps_the_old_digest() -> None:
    job = Job.create("d", statement_sets=[("INSERT INTO t VALUES (?)", [[1], [2]]), ("SELECT ?", [[3]])],
                     transaction=TxStep(4, preview=True))
    assert Job.from_text(job.to_text()) == job
    assert job.to_json()["statements"] == [{"sql": "INSERT INTO t VALUES (?)", "param_sets": [[1], [2]]},
                                           {"sql": "SELECT ?", "params": [3]}]
    plain = Job.create("d", statements=[("SELECT ?", [3])], job_id="same")
    again = Job.create("d", statement_sets=[("SELECT ?", [[3]])], job_id="same")
    assert plain.digest() == again.digest()


@pytest.mark.parametrize("v", [True, 1.0, "1"])
def test_the_schema_version_is_the_integer_one(v: Any) -> None:
    with pytest.raises(InvalidJob, match="unsupported schema version"):
        Job.from_json({"v": v, "job_id": "j", "database": "d", "sql": "SELECT 1"})


def test_deeply_nested_json_is_an_invalid_job_not_an_internal_error() -> None:
    from shared.job.envelope import open_envelope
    nested = "[" * 100_000 + "]" * 100_000
    text = '{"v": 1, "job_id": "j", "database": "d", "sql": "SELECT ?", "params": [' + nested + "]}"
    assert open_envelope(text).job_text == text
    # The parse recurses to the interpreter's limit: a collection then would run other tests' finalizers at that
    # depth, where they can only fail (an unraisable RecursionError, seen once). Collect first, then not at all.
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(InvalidJob, match="not valid JSON"):
            Job.from_text(text)
    finally:
        gc.enable()


@pytest.mark.parametrize(("dest", "given", "fmt"), [("out.csv", None, "csv"), ("out.jsonl.gz", None, "jsonl"),
                                                    ("out", None, "csv"), ("out.xyz", "jsonl", "jsonl")])
def test_an_export_takes_its_format_from_its_name_or_says_it_cannot(dest: str, given: str | None, fmt: str) -> None:
    from producer.bulk import export_format
    assert export_format(dest, given) == fmt


def test_an_export_to_a_name_of_no_known_format_is_refused() -> None:
    from producer.bulk import export_format
    from shared.errors import ClientSideError
    with pytest.raises(ClientSideError, match="--output-format"):
        export_format("out.xyz", None)


def test_a_non_finite_real_travels_tagged_never_as_bare_json_nan() -> None:
    import math
    job = Job.create("d", "SELECT ?, ?, ?", [math.nan, math.inf, 1.5])
    text = job.to_text()
    assert "NaN" not in text.replace('"NaN"', "") and '{"$real":"Infinity"}' in text.replace(" ", "")
    decoded = Job.from_text(text).statements[0].decoded()[0]
    assert math.isnan(decoded[0]) and decoded[1:] == [math.inf, 1.5]
    many = Job.create("d", "INSERT INTO t VALUES (:x)", param_sets=[{"x": -math.inf}, {"x": 2.0}])
    assert json.loads(many.to_text())["param_sets"] == [{"x": {"$real": "-Infinity"}}, {"x": 2.0}]


@pytest.mark.parametrize(("text", "value"), [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
                                             ("1.5", 1.5), ('{"$real": "NaN"}', {"$real": "NaN"}), ("abc", "abc")])
def test_a_command_line_param_is_text_unless_json_says_otherwise(text: str, value: Any) -> None:
    from producer.cli import parse_param
    assert parse_param(text) == value


def test_a_job_is_summed_up_by_its_label_else_its_sqls_first_line() -> None:
    assert Job.create("d", "SELECT 1", label="nightly count").summary == "nightly count"
    assert Job.create("d", "\n\n  SELECT a,\n  b FROM t").summary == "SELECT a,"
    assert Job.create("d", statements=[("CREATE TABLE t (a)", None), ("INSERT INTO t VALUES (1)", None)]
                      ).summary == "CREATE TABLE t (a) (+1 more)"
    assert Job.create("d", "INSERT INTO t VALUES (?)", param_sets=[[1], [2], [3]]).summary == \
        "INSERT INTO t VALUES (?) (x3)"
    long = Job.create("d", "SELECT '" + "x" * 200 + "'").summary
    assert len(long) == 80 and long.endswith("…")
    for bad in ("", "   ", "x" * 201, 7):
        with pytest.raises(InvalidJob, match="label must be text"):
            Job.from_json({**Job.create("d", "SELECT 1").to_json(), "label": bad})
