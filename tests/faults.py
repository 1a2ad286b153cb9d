"""Faults injected at the client boundary: wrappers around real boto3 clients, never patches of srdb."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError


class Fault:
    def __init__(self, method: str, times: int, when: Callable[[dict[str, Any]], bool],
                 before: Callable[[], None] | None, error: Exception | None, after_call: bool) -> None:
        self.method, self.times, self.when = method, times, when
        self.before, self.error, self.after_call = before, error, after_call
        self.fired = 0


class FaultyClient:
    """Delegates to a real client; chosen calls fail, or run something first, a number of times."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._faults: list[Fault] = []

    def fail(self, method: str, *, times: int = 1, when: Callable[[dict[str, Any]], bool] = lambda kw: True,
             error: Exception | None = None, code: str | None = None, after_call: bool = False,
             before: Callable[[], None] | None = None) -> Fault:
        """``code``: raise that ClientError. ``after_call``: make the call, then raise (a lost response)."""
        if code is not None:
            error = ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, method)
        if error is None and before is None:
            error = ReadTimeoutError(endpoint_url="injected")
        fault = Fault(method, times, when, before, error, after_call)
        self._faults.append(fault)
        return fault

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            fault = next((f for f in self._faults if f.method == name and f.fired < f.times and f.when(kwargs)), None)
            if fault is None:
                return attr(*args, **kwargs)
            fault.fired += 1
            if fault.before is not None:
                fault.before()
            if fault.error is None:
                return attr(*args, **kwargs)
            if fault.after_call:
                attr(*args, **kwargs)
            raise fault.error

        return call


def http_errors(client: Any, operation: str, status: int, code: str, times: int) -> list[int]:
    """Make the next ``times`` HTTP responses of ``operation`` fail with ``status``/``code``, below
    botocore's retry layer, so the client's own retry policy meets them. Returns a call counter."""
    seen = [0]

    def respond(request: Any, **kwargs: Any) -> AWSResponse | None:
        if seen[0] >= times:
            return None
        seen[0] += 1
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        raw = type("Raw", (), {"stream": lambda self, *a, **k: iter([body]), "read": lambda self, *a: body})()
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, raw)

    service = client.meta.service_model.service_name
    client.meta.events.register(f"before-send.{service}.{operation}", respond)
    return seen


class TokenBucket:
    """EC2's API throttle for one action: ``burst`` tokens, refilled at ``rate`` a second."""

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        self.rate, self.burst, self.now = rate, burst, now
        self.tokens, self.at = burst, now()

    def take(self) -> bool:
        t = self.now()
        self.tokens = min(self.burst, self.tokens + (t - self.at) * self.rate)
        self.at = t
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# The documented buckets (per account and Region): Create/DeleteSecurityGroup refill at 5 a second
# with a burst of 50, CreateTags 10 (100), DescribeSecurityGroups 20 (100).
EC2_BUCKETS = {"create_security_group": (5.0, 50.0), "delete_security_group": (5.0, 50.0),
               "create_tags": (10.0, 100.0), "describe_security_groups": (20.0, 100.0)}


class ThrottledEC2:
    """EC2 as one account sees it: each action draws on its token bucket, shared by every client that
    wraps the same instance; an empty bucket answers ``RequestLimitExceeded``, as EC2 does."""

    def __init__(self, ec2: Any, now: Callable[[], float], scale: float = 1.0) -> None:
        self._ec2 = ec2
        self._lock = threading.Lock()
        self.buckets = {name: TokenBucket(rate * scale, burst * scale, now)
                        for name, (rate, burst) in EC2_BUCKETS.items()}
        self.throttled: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ec2, name)
        bucket = self.buckets.get(name)
        if bucket is None:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                allowed = bucket.take()
                if not allowed:
                    self.throttled[name] += 1
            if not allowed:
                raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}},
                                  name)
            return attr(*args, **kwargs)

        return call
