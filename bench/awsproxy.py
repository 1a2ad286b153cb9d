"""A model of an AWS Region at the network level: an HTTP proxy in front of the moto server.

Every process that talks to "AWS" through it — the bench's clients, in-process workers and
``srdb worker`` processes alike — pays what a request costs in a Region: a round trip by service
and operation (S3 GET/HEAD ~15 ms, PUT ~30 ms; SQS ~10 ms; EC2 CreateSecurityGroup ~150 ms,
DeleteSecurityGroup ~120 ms, other EC2 ~80 ms), bodies paced at ~100 MB/s per connection, and
EC2's API throttle: a token bucket per action, shared by every caller as it is per account and
Region (CreateSecurityGroup and DeleteSecurityGroup refill at 5 a second with a burst of 50,
CreateTags 10/100, DescribeSecurityGroups 20/100); an empty bucket answers 503
``RequestLimitExceeded`` as EC2 does.

``python -m bench.awsproxy --target http://127.0.0.1:PORT --port N`` runs it in a process of its
own (so its sleeps and copies take no CPU from the bench); ``bench --aws-network`` starts it.
"""

from __future__ import annotations

import argparse
import http.client
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BYTES_PER_SECOND = 100e6
ROUND_TRIP = {"s3.read": 0.015, "s3.write": 0.030, "sqs": 0.010, "ec2.CreateSecurityGroup": 0.150,
              "ec2.DeleteSecurityGroup": 0.120, "ec2": 0.080}
EC2_BUCKETS = {"CreateSecurityGroup": (5.0, 50.0), "DeleteSecurityGroup": (5.0, 50.0), "CreateTags": (10.0, 100.0),
               "DescribeSecurityGroups": (20.0, 100.0)}
_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([a-z0-9-]+)/aws4_request")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate", "content-length"}
COUNT_PATH = "/__awsproxy__/requests"
THROTTLED = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
             b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>proxy</RequestID></Response>")


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class Region:
    """What the proxy charges: the model, and EC2's buckets shared by every connection."""

    def __init__(self, target: str) -> None:
        parsed = urllib.parse.urlsplit(target)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.buckets = {action: TokenBucket(*limits) for action, limits in EC2_BUCKETS.items()}
        self.local = threading.local()
        self.throttled = 0
        self.forwarded = 0
        self._counting = threading.Lock()

    def count(self) -> None:
        with self._counting:
            self.forwarded += 1

    def connection(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        return conn


def operation(method: str, headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(service, action) of a signed request."""
    found = _SERVICE.search(headers.get("authorization", ""))
    service = found.group(1) if found else "s3"
    if service == "s3":
        return service, "read" if method in ("GET", "HEAD") else "write"
    target = headers.get("x-amz-target", "")
    if target:
        return service, target.rsplit(".", 1)[-1]
    action = urllib.parse.parse_qs(body.decode("latin-1")).get("Action", [""])[0]
    return service, action


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    region: Region

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.forward()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def forward(self) -> None:
        body = self._body()
        if self.path == COUNT_PATH:
            self._answer(200, [("Content-Type", "text/plain")], str(self.region.forwarded).encode())
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        service, action = operation(self.command, headers, body)
        cost = ROUND_TRIP.get(f"{service}.{action}", ROUND_TRIP.get(service, 0.0)) + len(body) / BYTES_PER_SECOND
        bucket = self.region.buckets.get(action) if service == "ec2" else None
        if bucket is not None and not bucket.take():
            self.region.throttled += 1
            time.sleep(cost)
            self._answer(503, [("Content-Type", "text/xml")], THROTTLED)
            return
        started = time.monotonic()
        self.region.count()
        conn = self.region.connection()
        try:
            conn.request(self.command, self.path, body=body or None,
                         headers={k: v for k, v in self.headers.items() if k.lower() not in _HOP})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.region.local.conn = None
            self._answer(502, [("Content-Type", "text/plain")], b"proxy: the moto server did not answer")
            return
        cost += len(data) / BYTES_PER_SECOND
        time.sleep(max(0.0, cost - (time.monotonic() - started)))
        length = int(response.getheader("Content-Length") or 0) if self.command == "HEAD" else len(data)
        self._answer(response.status, [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP],
                     b"" if self.command == "HEAD" else data, length)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if body:
            self.wfile.write(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="the moto server's URL")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    Handler.region = Region(args.target)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
