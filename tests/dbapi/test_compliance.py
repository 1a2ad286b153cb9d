"""The DB-API 2.0 compliance suite (PyPI: dbapi-compliance), run against a live local stack."""

from __future__ import annotations

from typing import Any, ClassVar

import dbapi20  # type: ignore[import-untyped]
import pytest

import producer.dbapi
from producer.client import Client
from shared.settings import Settings


class TestCompliance(dbapi20.DatabaseAPI20Test):  # type: ignore[misc]
    driver = producer.dbapi
    connect_args = ()
    connect_kw_args: ClassVar[dict[str, Any]] = {}

    @pytest.fixture(autouse=True)
    def _stack(self, settings: Settings, aws: Any, serving: Any) -> None:
        # A bucket and queue of this test's own, served by a background worker.
        self.connect_kw_args = {"database": "compliance", "client": Client(settings, s3=aws.s3, sqs=aws.sqs)}

    def test_nextset(self) -> None:
        # SQLite has no stored procedures, so no statement returns several result sets.
        assert not hasattr(self._connect().cursor(), "nextset")

    def test_setoutputsize(self) -> None:
        # Results arrive whole (or in parts read on demand); there is no output buffer to size.
        cur = self._connect().cursor()
        cur.setoutputsize(1000)
        cur.setoutputsize(2000, 0)
