"""Collecting a job's rows: inline in the status document while small, gzip JSON Lines parts when large."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shared.errors import ResultTooLarge
from shared.job.keys import result_part_key
from shared.job.result import ResultPart
from shared.job.values import encode_row
from worker.memory import ENCODING_FACTOR, RowMemory

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


def _encode_taking(rows: list[Any], index: int) -> list[Any]:
    """Encode a row and drop the list's reference to it, so the row is freed once it is encoded."""
    row, rows[index] = rows[index], None
    return encode_row(row)


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
        memory: RowMemory | None = None,
    ) -> None:
        self.job_id, self.put = job_id, put
        self.inline_limit, self.max_bytes, self.part_bytes = inline_limit, max_bytes, part_bytes
        self.memory = memory
        self.rows: list[list[Any]] = []
        self.parts: list[ResultPart] = []
        self.total_bytes = 0
        self._admitted = 0
        self._part: Any = None  # the zlib stream of the part being written, once the result spilled
        self._chunks: list[bytes] = []
        self._part_rows = 0
        self._buffer_bytes = 0
        self._spilled = False

    def admit(self, row: Sequence[Any], deadline: float = float("inf"), *, wait: bool = True) -> bool:
        """Measure a fetched row before it is encoded: refuse it when the result would pass the limit
        with it, and reserve what encoding it holds in the worker's memory. Without ``wait``, answer
        False instead of waiting for other jobs' rows to leave (the caller then encodes what it holds
        and asks again, waiting)."""
        size = estimated_bytes(row)
        if self.total_bytes + self._admitted + size > self.max_bytes:
            self._too_large()
        if self.memory is not None:
            need = ENCODING_FACTOR * size
            if wait:
                self.memory.take(need, deadline)
            elif not self.memory.try_take(need):
                return False
        self._admitted += size
        return True

    def add_values(self, rows: list[Any]) -> None:
        """Add rows of SQLite values, encoding each and letting go of it at once, then give back the
        memory they were admitted with."""
        try:
            self.add(self._encoded(rows))
        finally:
            rows.clear()
            self.release()

    def release(self) -> None:
        """Give back the memory of rows admitted and not added (a job that failed while it fetched): what
        ``admit`` reserved for them, ENCODING_FACTOR times their size."""
        if self.memory is not None and self._admitted:
            self.memory.give(ENCODING_FACTOR * self._admitted)
        self._admitted = 0

    @staticmethod
    def _encoded(rows: list[Any]) -> Iterable[list[Any]]:
        for index in range(len(rows)):
            yield _encode_taking(rows, index)

    def add(self, rows: Iterable[list[Any]]) -> None:
        """Add rows already encoded for JSON."""
        for row in rows:
            line = json.dumps(row, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            self.total_bytes += len(line) + 1
            if self.total_bytes > self.max_bytes:
                self._too_large()
            if not self._spilled and self.total_bytes > self.inline_limit:
                self._spilled = True
                for kept in self.rows:
                    self._write(json.dumps(kept, separators=(",", ":"), ensure_ascii=False))
                self.rows = []
            if self._spilled:
                del row
                self._write(line)
                del line
            else:
                self.rows.append(row)

    def finish(self) -> tuple[list[list[Any]], list[ResultPart]]:
        if self._part_rows:
            self._flush()
        return self.rows, self.parts

    @property
    def count(self) -> int:
        return len(self.rows) + sum(p.rows for p in self.parts) + self._part_rows

    def _write(self, line: str) -> None:
        """Compress a line into the part being written (gzip, as the client reads it): a part is held
        compressed, never as its lines."""
        if self._part is None:
            self._part = zlib.compressobj(5, zlib.DEFLATED, 31)
        data = (line + "\n").encode()
        self._chunks.append(self._part.compress(data))
        self._buffer_bytes += len(data)
        self._part_rows += 1
        if self._buffer_bytes >= self.part_bytes:
            self._flush()

    def _too_large(self) -> None:
        raise ResultTooLarge(f"result is larger than the limit of {self.max_bytes} bytes "
                             "(SRDB_MAX_RESULT_BYTES); add a LIMIT or aggregate")

    def _flush(self) -> None:
        key = result_part_key(self.job_id, len(self.parts))
        self._chunks.append(self._part.flush())
        self.put(key, b"".join(self._chunks))
        self.parts.append(ResultPart(key, self._part_rows))
        self._part, self._chunks, self._part_rows, self._buffer_bytes = None, [], 0, 0
