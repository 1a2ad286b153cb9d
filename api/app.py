"""The HTTP API's routes: JSON in and out, every failure a ``4xx``/``5xx`` with ``{"error": {"type",
"message"}}`` and nothing queued; an SQL error is the job's FAILED state, as everywhere else.

| request | answer |
| --- | --- |
| ``POST /v1/databases/{database}/query`` | the job's document once final within ``wait`` s (200), else 202 |
| ``GET /v1/jobs/{job_id}?wait=N&page=K`` | the job's document (long-polled), or page K of its rows |
| ``DELETE /v1/jobs/{job_id}`` | cancels it; the document |
| ``GET /v1/databases``, ``GET /v1/databases/{database}/history`` | what ``srdb databases`` / ``history`` show |
| ``POST /v1/databases/{database}/restore`` | ``{"version": N}``: what ``srdb restore`` does |
| ``POST /v1/databases/{database}/fork`` | ``{"name": NEW, "as_of"?}``: what ``srdb fork`` does |
| ``GET /`` | the console (api/console.html) |

Big results are never truncated and never one unbounded response: a document holds the inline rows
and, per further part, its row count, ``/v1/jobs/{id}?page=K`` and a presigned URL of the part.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from http import HTTPStatus
from importlib import resources
from typing import Any

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response

from producer.client import Client
from shared.errors import (
    DatabaseNotFound,
    Forbidden,
    InfrastructureError,
    InvalidJob,
    JobNotFound,
    SrdbError,
    UserError,
    VersionNotFound,
    WaitTimeout,
)
from shared.grants import GrantStore
from shared.job.classify import is_read_job
from shared.job.model import Job
from shared.job.result import JobResult, JobState
from shared.job.status import parse_part
from shared.names import check_database
from shared.s3 import Bucket

MAX_BODY = 6 * 1024 * 1024  # a Lambda function URL's request payload limit
DEFAULT_WAIT, MAX_WAIT = 10.0, 30.0
PART_URL_SECONDS = 3600
JSON = "application/json; charset=utf-8"
_QUERY_FIELDS = {"sql", "params", "statements", "as_of", "job_id", "wait", "label", "timeout"}
# Every route, by its path pattern and methods: a known path asked with another method is a 405.
ROUTES = {
    re.compile(r"/"): ("GET",),
    re.compile(r"/v1/databases"): ("GET",),
    re.compile(r"/v1/databases/[^/]+/query"): ("POST",),
    re.compile(r"/v1/databases/[^/]+/history"): ("GET",),
    re.compile(r"/v1/databases/[^/]+/restore"): ("POST",),
    re.compile(r"/v1/databases/[^/]+/fork"): ("POST",),
    re.compile(r"/v1/jobs/[^/]+"): ("GET", "DELETE"),
}


class HttpError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, headers or {}


def _status_of(exc: SrdbError) -> int:
    if isinstance(exc, (JobNotFound, DatabaseNotFound, VersionNotFound)):
        return HTTPStatus.NOT_FOUND
    if isinstance(exc, Forbidden):
        return HTTPStatus.FORBIDDEN
    if isinstance(exc, InfrastructureError):
        return HTTPStatus.SERVICE_UNAVAILABLE
    if isinstance(exc, UserError):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.BAD_REQUEST if exc.exit_code == 2 else HTTPStatus.SERVICE_UNAVAILABLE


def answer(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status, JSON, json.dumps(doc, ensure_ascii=False, separators=(",", ":")), headers or {})


def error_body(kind: str, message: str) -> str:
    """What every refusal answers, here and from api/server.py before a request reaches the handler."""
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False, separators=(",", ":"))


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status, JSON, error_body(kind, message), headers or {})


TOO_LARGE = error_body("PayloadTooLarge", f"the request body is over {MAX_BODY:,} bytes")


class Api:
    """The routes over one client. ``caller()`` names the IAM principal of the request (None when the
    request carries no IAM identity: ``srdb serve``, which runs with its user's own credentials);
    ``grants`` checks that principal's access to a database, as the worker checks a queue sender's."""

    def __init__(self, client: Client, *, grants: GrantStore | None = None, console: bool = True) -> None:
        self.client, self.grants, self.console = client, grants, console
        self.app = LambdaFunctionUrlResolver()
        app = self.app
        app.get("/")(self.page)
        app.get("/v1/databases")(self.databases)
        app.post("/v1/databases/<database>/query")(self.query)
        app.get("/v1/databases/<database>/history")(self.history)
        app.post("/v1/databases/<database>/restore")(self.restore)
        app.post("/v1/databases/<database>/fork")(self.fork)
        app.get("/v1/jobs/<job_id>")(self.job)
        app.delete("/v1/jobs/<job_id>")(self.cancel)
        app.not_found(self.not_found)
        app.exception_handler(HttpError)(lambda e: error(e.status, e.kind, str(e), e.headers))
        app.exception_handler(SrdbError)(lambda e: error(_status_of(e), e.type, str(e)))

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """A function URL event in, its response out. A body over MAX_BODY is refused before it is read."""
        body = event.get("body") or ""
        if len(body) > MAX_BODY * (4 / 3 if event.get("isBase64Encoded") else 1):
            return {"statusCode": HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "headers": {"Content-Type": JSON},
                    "isBase64Encoded": False, "body": TOO_LARGE}
        return self.app.resolve(event, context)

    # -- routes ---------------------------------------------------------------------------------

    def page(self) -> Response[str]:
        if not self.console:
            raise HttpError(HTTPStatus.NOT_FOUND, "NotFound", "this server has no console")
        html = resources.files("api").joinpath("console.html").read_text(encoding="utf-8")
        return Response(HTTPStatus.OK, "text/html; charset=utf-8", html, {"Cache-Control": "no-store"})

    def databases(self) -> Response[str]:
        return answer(HTTPStatus.OK, {"databases": [
            {"name": d.name, "size": d.size, "version": d.version, "last_write": _iso(d.last_write),
             "forked_from": d.forked_from}
            for d in self.client.databases() if self._may_see(d.name)]})

    def history(self, database: str) -> Response[str]:
        self._check(_database(database), writes=False)
        limit = _number(self._param("limit"), "limit", 1, 1000, 50)
        return answer(HTTPStatus.OK, {"database": database, "versions": [
            {"version": m.version, "time": _iso(m.created_at), "size": m.file_size, "jobs": m.jobs,
             "labels": m.labels, "restored_from": m.restored_from}
            for m in self.client.history(database, int(limit))]})

    def restore(self, database: str) -> Response[str]:
        self._check(_database(database), writes=True)
        doc = self._body()
        version = doc.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise HttpError(HTTPStatus.BAD_REQUEST, "InvalidRequest", "restore takes {\"version\": N}")
        made = self.client.restore(database, version)
        return answer(HTTPStatus.OK, {"database": database, "version": made.version,
                                      "restored_from": made.restored_from})

    def fork(self, database: str) -> Response[str]:
        doc = self._body()
        new, as_of = doc.get("name"), doc.get("as_of")
        if not isinstance(new, str) or (as_of is not None and (isinstance(as_of, bool)
                                                               or not isinstance(as_of, (int, str)))):
            raise HttpError(HTTPStatus.BAD_REQUEST, "InvalidRequest",
                            'fork takes {"name": NEW, "as_of": VERSION or ISO 8601 time (optional)}')
        self._check(_database(database), writes=False)
        self._check(_database(new), writes=True)
        made = self.client.fork(database, new, as_of=as_of)
        return answer(HTTPStatus.CREATED, {"database": new, "forked_from": made.forked_from,
                                           "version": made.version, "size": made.file_size})

    def query(self, database: str) -> Response[str]:
        doc = self._body()
        job = self._job(_database(database), doc)
        wait = _number(doc.get("wait"), "wait", 0, MAX_WAIT, DEFAULT_WAIT)
        self._check(job.database, writes=not is_read_job(job))
        self.client.submit_job(job)
        return self._document(job.job_id, wait)

    def job(self, job_id: str) -> Response[str]:
        page = self._param("page")
        if page is not None:
            return self._page(job_id, int(_number(page, "page", 1, 1_000_000, 1)))
        return self._document(job_id, _number(self._param("wait"), "wait", 0, MAX_WAIT, 0))

    def cancel(self, job_id: str) -> Response[str]:
        self.client.cancel(job_id)
        return answer(HTTPStatus.OK, self._view(self._status(job_id)))

    def not_found(self, exc: Exception) -> Response[str]:
        path = self.app.current_event.path
        method = self.app.current_event.http_method
        allowed = next((methods for pattern, methods in ROUTES.items() if pattern.fullmatch(path)), None)
        if allowed is not None:
            return error(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed",
                         f"{method} is not allowed on {path}; use {', '.join(allowed)}", {"Allow": ", ".join(allowed)})
        return error(HTTPStatus.NOT_FOUND, "NotFound", f"no such endpoint: {method} {path}")

    # -- helpers --------------------------------------------------------------------------------

    def _status(self, job_id: str) -> JobResult:
        result = self.client.status(job_id)
        if result.state is JobState.NOT_FOUND:
            raise JobNotFound(f"job {job_id} was never submitted")
        return result

    def _document(self, job_id: str, wait: float) -> Response[str]:
        result = self._status(job_id)
        if not result.state.final and wait > 0:
            try:
                result = self.client.wait(job_id, wait)
            except WaitTimeout:
                result = self.client.status(job_id)
        if result.state.final:
            return answer(HTTPStatus.OK, self._view(result))
        return answer(HTTPStatus.ACCEPTED, self._view(result), {"Location": f"/v1/jobs/{job_id}"})

    def _view(self, result: JobResult) -> dict[str, Any]:
        doc: dict[str, Any] = {"job_id": result.job_id, "state": result.state.value, "database": result.database,
                               "label": result.label}
        if result.state is JobState.QUEUED and result.waiting:
            doc["waiting"] = result.waiting
        if result.state is JobState.RUNNING:
            doc["started_at"] = result.started_at
        if not result.state.final:
            return doc
        doc.update(columns=result.columns, types=result.types, rows=result.rows, rowcount=result.rowcount,
                   lastrowid=result.lastrowid, error=result.error)
        timings = result.timings
        doc["meta"] = {"duration_ms": timings.get("total_ms"), "run_ms": timings.get("run_ms"),
                       "queued_ms": timings.get("queued_ms"), "version": result.version,
                       "rows": result.total_rows, "submitted_at": result.submitted_at,
                       "finished_at": result.finished_at}
        doc["pages"] = [{"page": k, "rows": part.rows, "href": f"/v1/jobs/{result.job_id}?page={k}",
                         "url": self._part_url(part.key)} for k, part in enumerate(result.parts, start=1)]
        return doc

    def _page(self, job_id: str, page: int) -> Response[str]:
        result = self._status(job_id)
        if not 1 <= page <= len(result.parts):
            raise HttpError(HTTPStatus.NOT_FOUND, "NotFound",
                            f"job {job_id} has {len(result.parts)} page(s) beyond its inline rows; no page {page}")
        rows = list(parse_part(self.client.store.get_bytes(result.parts[page - 1].key)))
        more = f"/v1/jobs/{job_id}?page={page + 1}" if page < len(result.parts) else None
        return answer(HTTPStatus.OK, {"job_id": job_id, "page": page, "columns": result.columns, "rows": rows,
                                      "next": more})

    def _part_url(self, key: str) -> str:
        bucket: Bucket = self.client.store.bucket
        url: str = self.client.s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket.name, "Key": key}, ExpiresIn=PART_URL_SECONDS)
        return url

    def _job(self, database: str, doc: dict[str, Any]) -> Job:
        unknown = sorted(set(doc) - _QUERY_FIELDS)
        if unknown:
            raise HttpError(HTTPStatus.BAD_REQUEST, "InvalidRequest", f"unknown field(s): {', '.join(unknown)}")
        if ("sql" in doc) == ("statements" in doc):
            raise HttpError(HTTPStatus.BAD_REQUEST, "InvalidRequest", "give exactly one of sql and statements")
        fields: dict[str, Any] = {"job_id": doc.get("job_id"), "as_of": doc.get("as_of"), "label": doc.get("label"),
                                  "timeout": doc.get("timeout")}
        try:
            if "statements" in doc:
                statements = doc["statements"]
                if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
                    raise InvalidJob('statements must be a list of {"sql", "params"} objects')
                return Job.create(database, statements=[(s.get("sql"), s.get("params")) for s in statements],
                                  **fields)
            return Job.create(database, doc["sql"], doc.get("params"), read_only=doc.get("as_of") is not None,
                              **fields)
        except InvalidJob:
            raise
        except (TypeError, ValueError) as exc:
            raise InvalidJob(str(exc)) from None

    def _body(self) -> dict[str, Any]:
        event = self.app.current_event
        try:
            text = event.decoded_body or ""
            doc = json.loads(text) if text.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, "MalformedJSON", f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "InvalidRequest", "the body must be a JSON object")
        return doc

    def _param(self, name: str) -> str | None:
        params = self.app.current_event.query_string_parameters or {}
        value = params.get(name)
        return None if value is None else str(value)

    def caller(self) -> str | None:
        context = self.app.current_event.raw_event.get("requestContext") or {}
        iam = (context.get("authorizer") or {}).get("iam") or {}
        return str(iam.get("userId")) if iam.get("userId") else None

    def _check(self, database: str, *, writes: bool) -> None:
        caller = self.caller()
        if self.grants is not None and caller is not None:
            self.grants.current().check_caller(caller, database, writes)

    def _may_see(self, database: str) -> bool:
        try:
            self._check(database, writes=False)
        except Forbidden:
            return False
        return True


def _database(name: str) -> str:
    try:
        return check_database(name)
    except InvalidJob as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, "InvalidDatabaseName", str(exc)) from None


def _number(raw: Any, name: str, low: float, high: float, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not low <= value <= high:
        raise HttpError(HTTPStatus.BAD_REQUEST, "InvalidRequest", f"{name} must be a number from {low:g} to {high:g}")
    return value


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
