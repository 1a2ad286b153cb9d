from __future__ import annotations

import pytest

from shared.errors import ResultTooLarge
from shared.job.status import parse_part
from worker.results import ResultSink


def test_small_results_stay_inline() -> None:
    stored: dict[str, bytes] = {}
    sink = ResultSink("j", stored.__setitem__, inline_limit=1000, max_bytes=10_000)
    sink.add([[1, "a"], [2, "b"]])
    assert sink.finish() == ([[1, "a"], [2, "b"]], [])
    assert stored == {}


def test_large_results_spill_to_parts_in_order() -> None:
    stored: dict[str, bytes] = {}
    sink = ResultSink("j", stored.__setitem__, inline_limit=100, max_bytes=10_000_000, part_bytes=1000)
    rows = [[i, "x" * 10] for i in range(500)]
    for start in range(0, 500, 7):
        sink.add(rows[start:start + 7])
    inline, parts = sink.finish()
    assert inline == []
    assert len(parts) > 1
    assert [p.key for p in parts] == sorted(stored)
    assert [row for p in parts for row in parse_part(stored[p.key])] == rows
    assert sum(p.rows for p in parts) == 500


def test_results_over_the_limit_fail_clearly() -> None:
    sink = ResultSink("j", lambda k, b: None, inline_limit=100, max_bytes=1000)
    with pytest.raises(ResultTooLarge, match="SRDB_MAX_RESULT_BYTES"):
        sink.add([[i, "y" * 50] for i in range(100)])
