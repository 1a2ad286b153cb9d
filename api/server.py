"""The HTTP API off Lambda: a threaded HTTP server that turns each request into the event a Lambda function
URL would send (payload format 2.0) and the handler's answer back into a response — as ``srdb local``'s
poller turns SQS into worker events. ``srdb serve`` and ``srdb local`` run it.

It binds 127.0.0.1 unless told otherwise, and then only with a token: every API request must carry
``Authorization: Bearer <token>`` (the console page asks for it once and keeps it in the tab).
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from api.app import JSON, MAX_BODY, TOO_LARGE, Api, error_body

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DISCARD_AT_MOST = 4 * MAX_BODY  # of a body over the limit, what is read (and dropped) before the 413


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes,
                       source_ip: str) -> dict[str, Any]:
    """The event a Lambda function URL sends for this request (payload format version 2.0)."""
    parts = urlsplit(target)
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": parts.path or "/", "rawQueryString": parts.query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "anonymous", "apiId": "srdb-serve", "domainName": headers.get("Host", "localhost"),
            "http": {"method": method, "path": parts.path or "/", "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": headers.get("User-Agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "timeEpoch": int(time.time() * 1000)},
        "isBase64Encoded": False,
    }
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if query:
        event["queryStringParameters"] = query
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # 200 clients connecting at once are queued, not refused
    allow_reuse_address = True

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        if host not in LOOPBACK and not token:
            raise ValueError(f"serving on {host} (beyond this machine) needs --token: anyone who reaches the "
                             "port would act with your credentials")
        self.api, self.token = api, token
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> threading.Thread:
        """Serve in a daemon thread (``srdb local``); ``shutdown()`` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="srdb-http", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request on stderr would drown srdb local's own output

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            # Read what was sent (up to a bound) so the client sees the answer, not a reset connection.
            left = min(length, DISCARD_AT_MOST)
            while left > 0 and (chunk := self.rfile.read(min(left, 1 << 20))):
                left -= len(chunk)
            self._too_large()
            return
        body = self.rfile.read(length) if length else b""
        if self.server.token and urlsplit(self.path).path != "/" and not self._authorized():
            self._send(HTTPStatus.UNAUTHORIZED, {"Content-Type": JSON, "WWW-Authenticate": "Bearer"},
                       error_body("Unauthorized", "this server needs Authorization: Bearer <token>").encode())
            return
        event = function_url_event(self.command, self.path, dict(self.headers.items()), body, self.client_address[0])
        response = self.server.api.handle(event)
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else str(payload).encode()
        self._send(int(response.get("statusCode", 200)), dict(response.get("headers") or {}), data)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` (curl's, for a big body): refuse a body over the limit before it is sent."""
        if int(self.headers.get("Content-Length") or 0) > MAX_BODY:
            self._too_large()
            return False
        return super().handle_expect_100()

    def _too_large(self) -> None:
        self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"Content-Type": JSON, "Connection": "close"},
                   TOO_LARGE.encode())
        self.close_connection = True

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode())

    def _send(self, status: int, headers: dict[str, Any], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = _serve
