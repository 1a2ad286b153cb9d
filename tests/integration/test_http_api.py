"""The HTTP API (api/) through a real HTTP client against its server, over a worker serving the queue:
queries answered synchronously or by job id, paging, cancel, databases and history, and every error path a
``4xx`` with ``{"error": {"type", "message"}}`` and nothing queued."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from api.app import MAX_BODY, Api
from api.server import ApiServer
from producer.client import Client
from shared.grants import GrantStore
from shared.s3 import Bucket
from shared.settings import Settings
from worker.batch import Worker


def call(base: str, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """One request; the status, the headers and the JSON answer (the text, for a page that is not JSON)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    is_json = response.getheader("Content-Type", "").startswith("application/json")
    return response.status, dict(response.getheaders()), json.loads(text) if is_json else text


@pytest.fixture
def server(client: Client) -> Iterator[str]:
    api = ApiServer(Api(client), "127.0.0.1", 0)
    api.start()
    yield api.url
    api.shutdown()
    api.server_close()


def test_a_query_is_answered_with_its_rows_types_and_meta(server: str, serving: Worker) -> None:
    status, _, made = call(server, "POST", "/v1/databases/web/query",
                           {"statements": [{"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, raw BLOB)"},
                                           {"sql": "INSERT INTO t VALUES (?, ?, ?)",
                                            "params": [1, "ünï", {"$blob": "AAE="}]}]})
    assert status == 200 and made["state"] == "SUCCEEDED", made
    status, _, doc = call(server, "POST", "/v1/databases/web/query",
                          {"sql": "SELECT id, name, raw FROM t WHERE id = ?", "params": [1], "label": "one row"})
    assert status == 200
    assert (doc["state"], doc["columns"], doc["types"]) == ("SUCCEEDED", ["id", "name", "raw"],
                                                            ["INTEGER", "TEXT", "BLOB"])
    assert doc["rows"] == [[1, "ünï", {"$blob": "AAE="}]] and doc["rowcount"] == 1 and doc["error"] is None
    assert doc["label"] == "one row" and doc["pages"] == []
    assert doc["meta"]["version"] == 1 and doc["meta"]["duration_ms"] > 0 and doc["meta"]["rows"] == 1
    status, _, failed = call(server, "POST", "/v1/databases/web/query", {"sql": "SELECT * FROM nowhere"})
    assert status == 200 and failed["state"] == "FAILED"  # an SQL error is the job's state, as everywhere
    assert failed["error"]["type"] == "SqlError" and "no such table: nowhere" in failed["error"]["message"]


def test_a_job_not_final_within_wait_is_a_202_to_poll_and_can_be_cancelled(server: str, client: Client) -> None:
    """No worker serves the queue here: the job stays QUEUED."""
    status, headers, doc = call(server, "POST", "/v1/databases/slow/query", {"sql": "SELECT 1", "wait": 0})
    assert status == 202 and doc["state"] == "QUEUED"
    assert headers["Location"] == f"/v1/jobs/{doc['job_id']}"
    status, _, still = call(server, "GET", f"/v1/jobs/{doc['job_id']}?wait=1")
    assert status == 202 and still["state"] == "QUEUED"
    status, _, cancelled = call(server, "DELETE", f"/v1/jobs/{doc['job_id']}")
    assert status == 200 and cancelled["state"] == "CANCELLED"
    assert client.status(doc["job_id"]).state.value == "CANCELLED"


def test_every_bad_request_is_a_4xx_naming_its_cause_and_queues_nothing(server: str, client: Client) -> None:
    cases = [
        ("POST", "/v1/databases/web/query", b"{not json", 400, "MalformedJSON"),
        ("POST", "/v1/databases/web/query", b"[1, 2]", 400, "InvalidRequest"),
        ("POST", "/v1/databases/web/query", b"{}", 400, "InvalidRequest"),
        ("POST", "/v1/databases/web/query", b'{"sql": "SELECT 1", "colour": "red"}', 400, "InvalidRequest"),
        ("POST", "/v1/databases/web/query", b'{"sql": "SELECT 1", "wait": 99}', 400, "InvalidRequest"),
        ("POST", "/v1/databases/web/query", b'{"sql": 7}', 400, "InvalidJob"),
        ("POST", "/v1/databases/web/query", b'{"sql": "SELECT ?", "params": [1, [2]]}', 400, "InvalidJob"),
        ("POST", "/v1/databases/Bad%20Name/query", b'{"sql": "SELECT 1"}', 400, "InvalidDatabaseName"),
        ("POST", "/v1/databases/web/query", b" " * (MAX_BODY + 1), 413, "PayloadTooLarge"),
        ("GET", "/v1/databases/web/query", None, 405, "MethodNotAllowed"),
        ("PUT", "/v1/jobs/x", None, 405, "MethodNotAllowed"),
        ("GET", "/v1/nothing", None, 404, "NotFound"),
        ("GET", "/v1/jobs/01NEVERSUBMITTED0000000000", None, 404, "JobNotFound"),
        ("DELETE", "/v1/jobs/01NEVERSUBMITTED0000000000", None, 404, "JobNotFound"),
        ("GET", "/v1/databases/never/history", None, 404, "DatabaseNotFound"),
    ]
    for method, path, raw, expected, kind in cases:
        status, headers, doc = call(server, method, path, raw=raw)
        assert (status, doc["error"]["type"]) == (expected, kind), (method, path, doc)
        assert doc["error"]["message"], (method, path)
        if status == 405:
            assert headers["Allow"] in ("POST", "GET, DELETE")
    assert client.jobs(since=0, limit=100) == []  # none of them queued a job


def test_a_big_result_is_paged_never_truncated(server: str, serving: Worker) -> None:
    sql = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000) "
           "SELECT n, printf('%0100d', n) AS padded FROM c")
    status, _, doc = call(server, "POST", "/v1/databases/big/query", {"sql": sql, "wait": 30})
    assert status == 200 and doc["state"] == "SUCCEEDED", doc
    assert doc["rowcount"] == 100_000 and len(doc["pages"]) >= 1
    seen = [row[0] for row in doc["rows"]]
    for page in doc["pages"]:
        status, _, rows = call(server, "GET", page["href"])
        assert status == 200 and len(rows["rows"]) == page["rows"]
        seen += [row[0] for row in rows["rows"]]
        with urllib.request.urlopen(page["url"]) as presigned:  # the same rows, straight from S3
            assert len(gzip.decompress(presigned.read()).splitlines()) == page["rows"]
    assert seen == list(range(1, 100_001))
    status, _, beyond = call(server, "GET", f"/v1/jobs/{doc['job_id']}?page={len(doc['pages']) + 1}")
    assert status == 404 and beyond["error"]["type"] == "NotFound"


def test_databases_history_restore_and_the_console(server: str, serving: Worker) -> None:
    for sql in ("CREATE TABLE t (a)", "INSERT INTO t VALUES (1)"):
        assert call(server, "POST", "/v1/databases/hist/query", {"sql": sql})[2]["state"] == "SUCCEEDED"
    status, _, listed = call(server, "GET", "/v1/databases")
    assert status == 200 and [d["name"] for d in listed["databases"]] == ["hist"]
    assert listed["databases"][0]["forked_from"] is None
    assert listed["databases"][0]["version"] == 2
    status, _, history = call(server, "GET", "/v1/databases/hist/history")
    assert [(v["version"], v["labels"]) for v in history["versions"]] == [
        (2, ["INSERT INTO t VALUES (1)"]), (1, ["CREATE TABLE t (a)"])]
    status, _, restored = call(server, "POST", "/v1/databases/hist/restore", {"version": 1})
    assert (status, restored["version"], restored["restored_from"]) == (200, 3, 1)
    status, _, forked = call(server, "POST", "/v1/databases/hist/fork", {"name": "hist-copy", "as_of": 2})
    assert (status, forked["forked_from"]) == (201, {"database": "hist", "version": 2})
    assert call(server, "POST", "/v1/databases/hist-copy/query", {"sql": "SELECT * FROM t"})[2]["rows"] == [[1]]
    status, _, again = call(server, "POST", "/v1/databases/hist/fork", {"name": "hist-copy"})
    assert status == 400 and "exists already" in again["error"]["message"]
    assert call(server, "POST", "/v1/databases/hist/fork", {"name": 5})[0] == 400
    status, headers, page = call(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and "srdb console" in page
    assert "http://" not in page.replace("http://www.w3.org", "")  # no asset from outside: it works offline


def test_two_hundred_concurrent_clients_are_served_without_an_error(server: str, serving: Worker) -> None:
    assert call(server, "POST", "/v1/databases/many/query", {"sql": "CREATE TABLE t (a)"})[0] == 200
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        status, _, doc = call(server, "POST", "/v1/databases/many/query", {"sql": "SELECT ?", "params": [n]})
        with lock:
            answers.append((status, doc.get("state", "") if isinstance(doc, dict) else ""))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 200 and all(status in (200, 202) and state for status, state in answers), answers


def test_a_server_beyond_this_machine_needs_a_token_and_checks_it(client: Client) -> None:
    with pytest.raises(ValueError, match="needs --token"):
        ApiServer(Api(client), "0.0.0.0", 0)
    guarded = ApiServer(Api(client), "127.0.0.1", 0, token="s3cret")
    guarded.start()
    try:
        status, headers, doc = call(guarded.url, "GET", "/v1/databases")
        assert status == 401 and doc["error"]["type"] == "Unauthorized" and headers["WWW-Authenticate"] == "Bearer"
        assert call(guarded.url, "GET", "/v1/databases", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(guarded.url, "GET", "/v1/databases", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert call(guarded.url, "GET", "/")[0] == 200  # the page itself; it asks for the token
    finally:
        guarded.shutdown()
        guarded.server_close()


def signed_event(method: str, path: str, body: Any, user_id: str) -> dict[str, Any]:
    """What a function URL with AuthType AWS_IAM hands the Lambda after SigV4 checked the caller."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": path, "sourceIp": "10.0.0.1"},
                               "authorizer": {"iam": {"userId": user_id, "userArn": "arn:aws:sts::1:assumed-role/x/y",
                                                      "accountId": "123456789012"}},
                               "requestId": "r", "routeKey": "$default", "stage": "$default"},
            "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False}


def test_grants_apply_to_the_iam_caller_of_the_function_url(client: Client, settings: Settings, aws: Any,
                                                            serving: Worker) -> None:
    grants = GrantStore(Bucket(aws.s3, settings.bucket))
    api = Api(client, grants=grants)
    assert json.loads(api.handle(signed_event("POST", "/v1/databases/sales/query",
                                              {"sql": "CREATE TABLE t (a)"}, "AROAALICE:alice"))["body"])[
        "state"] == "SUCCEEDED"  # no group yet: every caller may, as before grants
    queue = aws.sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])
    # The API submits as itself: its queue's group may write everywhere, and the API checks each caller.
    grants.edit(lambda g: g.grant("api", queues=[queue["Attributes"]["QueueArn"]], database="*", access="write"))
    grants.edit(lambda g: g.grant("analysts", senders=["AROAALICE:*"], database="sales", access="read"))
    read = api.handle(signed_event("POST", "/v1/databases/sales/query", {"sql": "SELECT count(*) FROM t"},
                                   "AROAALICE:alice"))
    assert read["statusCode"] == 200 and json.loads(read["body"])["rows"] == [[0]]
    write = api.handle(signed_event("POST", "/v1/databases/sales/query", {"sql": "INSERT INTO t VALUES (1)"},
                                    "AROAALICE:alice"))
    assert write["statusCode"] == 403
    assert json.loads(write["body"])["error"]["message"] == (
        "access group analysts may only read database sales; this job writes")
    stranger = api.handle(signed_event("GET", "/v1/databases/sales/history", None, "AROAMALLORY:m"))
    assert stranger["statusCode"] == 403 and "among the senders of no access group" in stranger["body"]
    listed = json.loads(api.handle(signed_event("GET", "/v1/databases", None, "AROAMALLORY:m"))["body"])
    assert listed["databases"] == []  # a caller sees only the databases it may read
