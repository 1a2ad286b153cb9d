"""Collecting a job's rows: inline in the status document while small, gzip JSON Lines parts when large."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shared.errors import ResultTooLarge
from shared.job.keys import result_part_key
from shared.job.result import ResultPart
from shared.job.values import encode_row

PART_BYTES = 8 * 1024 * 1024


def estimated_bytes(row: Sequence[Any]) -> int:
    """A lower bound of a row's size as JSON, measured before it is encoded: a blob grows by a third
    in base64, text is at least one byte a character, every other value at least one byte."""
    size = 2
    for value in row:
        if isinstance(value, str):
            size += len(value) + 3
        elif isinstance(value, (bytes, bytearray, memoryview)):
            size += 4 * -(-len(value) // 3) + 12
        else:
            size += 2
    return size


class ResultSink:
    """Takes rows as they are fetched, so no result is ever held whole in memory."""

    def __init__(
        self,
        job_id: str,
        put: Callable[[str, bytes], None],
        *,
        inline_limit: int,
        max_bytes: int,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.job_id, self.put = job_id, put
        self.inline_limit, self.max_bytes, self.part_bytes = inline_limit, max_bytes, part_bytes
        self.rows: list[list[Any]] = []
        self.parts: list[ResultPart] = []
        self.total_bytes = 0
        self._admitted = 0
        self._buffer: list[str] = []
        self._buffer_bytes = 0
        self._spilled = False

    def admit(self, row: Sequence[Any]) -> None:
        """Refuse a fetched row before it is encoded when the result would pass the limit with it."""
        self._admitted += estimated_bytes(row)
        if self.total_bytes + self._admitted > self.max_bytes:
            self._too_large()

    def add_values(self, rows: Iterable[Sequence[Any]]) -> None:
        """Add rows of SQLite values (encoded here)."""
        self.add(encode_row(row) for row in rows)
        self._admitted = 0

    def add(self, rows: Iterable[list[Any]]) -> None:
        """Add rows already encoded for JSON."""
        for row in rows:
            line = json.dumps(row, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            self.total_bytes += len(line) + 1
            if self.total_bytes > self.max_bytes:
                self._too_large()
            if not self._spilled and self.total_bytes > self.inline_limit:
                self._spilled = True
                self._buffer = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in self.rows]
                self._buffer_bytes = sum(len(s) + 1 for s in self._buffer)
                self.rows = []
            if self._spilled:
                self._buffer.append(line)
                self._buffer_bytes += len(line) + 1
                if self._buffer_bytes >= self.part_bytes:
                    self._flush()
            else:
                self.rows.append(row)

    def finish(self) -> tuple[list[list[Any]], list[ResultPart]]:
        if self._buffer:
            self._flush()
        return self.rows, self.parts

    @property
    def count(self) -> int:
        return len(self.rows) + sum(p.rows for p in self.parts) + len(self._buffer)

    def _too_large(self) -> None:
        raise ResultTooLarge(f"result is larger than the limit of {self.max_bytes} bytes "
                             "(SRDB_MAX_RESULT_BYTES); add a LIMIT or aggregate")

    def _flush(self) -> None:
        key = result_part_key(self.job_id, len(self.parts))
        self.put(key, gzip.compress(("\n".join(self._buffer) + "\n").encode(), compresslevel=5))
        self.parts.append(ResultPart(key, len(self._buffer)))
        self._buffer, self._buffer_bytes = [], 0
