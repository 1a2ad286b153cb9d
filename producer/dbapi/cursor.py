"""The cursor: execute, executemany, executescript, fetch, description."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from producer.dbapi.errors import ProgrammingError
from producer.dbapi.types import job_params
from shared.job.result import JobResult, JobState
from shared.job.script import statements_of
from shared.job.values import SqlValue, decode_row

if TYPE_CHECKING:
    from producer.dbapi.connection import Connection

class Cursor:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self.closed = False
        self._result: JobResult | None = None
        self._rows: Iterator[list[Any]] = iter(())

    # -- PEP 249 attributes --------------------------------------------------------------------

    @property
    def description(self) -> tuple[tuple[str, str | None, None, None, None, None, None], ...] | None:
        result = self._result
        if result is None or not result.columns:
            return None
        types = result.types or [""] * len(result.columns)
        return tuple((name, kind.upper() or None, None, None, None, None, None)
                     for name, kind in zip(result.columns, types, strict=True))

    @property
    def rowcount(self) -> int:
        return -1 if self._result is None or not self._result.state.final else self._result.rowcount

    @property
    def lastrowid(self) -> int | None:
        return None if self._result is None else self._result.lastrowid

    @property
    def job_id(self) -> str | None:
        """The id of the job the last execute ran (srdb extension)."""
        return self._result.job_id if self._result is not None else None

    @property
    def version(self) -> int | None:
        """The snapshot version the last execute read or committed (srdb extension)."""
        return self._result.version if self._result is not None else None

    # -- execute -------------------------------------------------------------------------------

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        self._check_open()
        self._set(self.connection.run(sql, job_params(parameters)))
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterator[Any] | Sequence[Any]) -> Cursor:
        self._check_open()
        sets = [job_params(p) for p in seq_of_parameters]
        if not sets:
            self._set(JobResult("", JobState.SUCCEEDED))
            return self
        self._set(self.connection.run(sql, [], many=sets))
        return self

    def executescript(self, script: str) -> Cursor:
        """Run every statement of ``script`` as one atomic job (srdb's ``statements``)."""
        self._check_open()
        statements = statements_of(script)
        if not statements:
            return self
        if self.connection.in_transaction:
            for sql in statements:
                self.connection.run(sql, [])
            self._set(JobResult("", JobState.QUEUED))
        else:
            self._set(self.connection.run_statements([(sql, []) for sql in statements]))
        return self

    def _set(self, result: JobResult) -> None:
        self._result = result
        store = self.connection.client.store
        self._rows = store.iter_rows(result) if result.state is JobState.SUCCEEDED else iter(())

    # -- fetch ---------------------------------------------------------------------------------

    def fetchone(self) -> tuple[SqlValue, ...] | None:
        self._check_result()
        row = next(self._rows, None)
        return None if row is None else tuple(decode_row(row))

    def fetchmany(self, size: int | None = None) -> list[tuple[SqlValue, ...]]:
        self._check_result()
        out = []
        for _ in range(self.arraysize if size is None else size):
            row = next(self._rows, None)
            if row is None:
                break
            out.append(tuple(decode_row(row)))
        return out

    def fetchall(self) -> list[tuple[SqlValue, ...]]:
        self._check_result()
        return [tuple(decode_row(row)) for row in self._rows]

    def __iter__(self) -> Iterator[tuple[SqlValue, ...]]:
        return self

    def __next__(self) -> tuple[SqlValue, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def setinputsizes(self, sizes: Any) -> None:
        self._check_open()

    def setoutputsize(self, size: int, column: int | None = None) -> None:
        self._check_open()

    def close(self) -> None:
        self._check_open()
        self.closed = True
        self._rows = iter(())

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ProgrammingError("the cursor is closed")
        self.connection._check_open()

    def _check_result(self) -> None:
        self._check_open()
        if self._result is None:
            raise ProgrammingError("no statement has been executed")
        if not self._result.state.final:
            raise ProgrammingError("statements in a transaction block have no results until the block ends")
        if not self._result.columns:
            raise ProgrammingError("the last statement returned no rows to fetch")


