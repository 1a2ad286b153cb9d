"""Schema migrations, as wrangler's ``d1 migrations`` and every ORM's: numbered SQL files in a folder
(``migrations/0001_create_users.sql``), each applied to a database once, in order, as one job — its
statements and the row that records it commit together or not at all. The record is the database's own
table ``srdb_migrations`` (name, checksum, time), so a second ``apply`` running at the same moment fails on
its unique name instead of applying a file twice.

    >>> from producer.migrations import Migrations
    >>> Migrations(client, "migrations").apply("shop")
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ClientSideError, JobFailed
from shared.job.model import Job
from shared.job.result import JobState
from shared.job.script import statements_of

if TYPE_CHECKING:
    from producer.client import Client

TABLE = "srdb_migrations"
CREATE_TABLE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                "checksum TEXT NOT NULL, applied_at TEXT NOT NULL)")
RECORD = f"INSERT INTO {TABLE} (name, checksum, applied_at) VALUES (?, ?, ?)"
FILE_NAME = re.compile(r"(\d{4,})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    """One file of the folder: ``0003_add_orders.sql`` is number 3, name ``0003_add_orders``."""

    number: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8-sig")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    name: str
    state: str  # applied | pending | changed (applied, and its file differs now) | missing (applied, no file)
    applied_at: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"migration": self.name, "state": self.state, "applied_at": self.applied_at}


class Migrations:
    def __init__(self, client: Client | None, folder: Path | str = "migrations", *,
                 timeout: float | None = 600.0) -> None:
        """``client``: the stack to apply to (None to only create and read files)."""
        self._client, self.folder, self.timeout = client, Path(folder), timeout

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ClientSideError("reading or applying migrations needs a client of the stack")
        return self._client

    def files(self) -> list[Migration]:
        """The folder's migration files in order; a file named otherwise is an error, not skipped."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.iterdir()):
            if path.suffix != ".sql":
                continue
            match = FILE_NAME.fullmatch(path.name)
            if match is None:
                raise ClientSideError(f"{path}: a migration is named NNNN_name.sql (digits, then lower-case "
                                      "letters, digits and _)")
            found.append(Migration(int(match.group(1)), path.stem, path))
        numbers = [m.number for m in found]
        if len(set(numbers)) != len(numbers):
            raise ClientSideError(f"two migrations in {self.folder} share a number: give each its own")
        return found

    def create(self, name: str) -> Path:
        """A new empty migration file, numbered after the last one; its path."""
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        if not slug:
            raise ClientSideError(f"{name!r} gives a migration no name: use letters or digits")
        number = max((m.number for m in self.files()), default=0) + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{number:04d}_{slug}.sql"
        header = f"-- Migration {number:04d}: {name}\n-- Its statements run as one job: all of them or none.\n\n"
        path.write_text(header, encoding="utf-8")
        return path

    def applied(self, database: str) -> dict[str, tuple[str, str]]:
        """The migrations ``database`` records: name -> (checksum, applied at); none for a new database."""
        try:
            result = self.client.query(database, f"SELECT name, checksum, applied_at FROM {TABLE} ORDER BY id",
                                       timeout=self.timeout)
        except JobFailed as exc:
            if "no such table" in str(exc.error.get("message", "")) or exc.error.get("type") == "DatabaseNotFound":
                return {}
            raise
        return {str(name): (str(checksum), str(at)) for name, checksum, at in self.client.store.iter_rows(result)}

    def status(self, database: str) -> list[MigrationStatus]:
        return self._status(self.applied(database))

    def _status(self, applied: dict[str, tuple[str, str]]) -> list[MigrationStatus]:
        files = {m.name: m for m in self.files()}
        states = []
        for name, (checksum, at) in applied.items():
            migration = files.get(name)
            state = "missing" if migration is None else "applied" if migration.checksum == checksum else "changed"
            states.append(MigrationStatus(name, state, at))
        states += [MigrationStatus(m.name, "pending") for m in files.values() if m.name not in applied]
        return states

    def apply(self, database: str) -> list[str]:
        """Apply every pending migration in order, each as one job; the names applied. The first that fails
        stops the run (nothing of it applied; the ones before it stay applied) and raises its error. A file
        changed since it was applied is refused before anything runs."""
        applied = self.applied(database)  # one read job, for the check and the run
        changed = [s.name for s in self._status(applied) if s.state == "changed"]
        if changed:
            raise ClientSideError(f"migration {changed[0]} was applied to {database} and its file has changed since: "
                                  "restore the file, and put the change in a new migration")
        done: list[str] = []
        for migration in self.files():
            if migration.name in applied:
                continue
            statements = statements_of(migration.text)
            if not statements:
                raise ClientSideError(f"{migration.path} holds no statement")
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            record = (RECORD, [migration.name, migration.checksum, now])
            job = Job.create(database, statements=[(CREATE_TABLE, None), record, *[(sql, None) for sql in statements]])
            result = self.client.wait(self.client.submit_job(job), self.timeout)
            if result.state is not JobState.SUCCEEDED:
                error = dict(result.error or {"type": result.state.value, "message": "the job did not run"})
                error["message"] = f"migration {migration.name}: {error.get('message', '')}"
                raise JobFailed(result.job_id, error)
            done.append(migration.name)
        return done


