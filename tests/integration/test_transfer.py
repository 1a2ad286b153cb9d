"""``srdb pull`` and ``srdb push``: a database out as a plain SQLite file (any version), and a SQLite file in
as a database or its next version — a commit like any other."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from producer.client import Client
from shared.errors import ClientSideError, DatabaseNotFound, VersionNotFound
from tests.unit.test_transaction import rows
from worker.batch import Worker


def test_pull_writes_any_version_as_a_file_sqlite3_opens(client: Client, serving: Worker, tmp_path: Path) -> None:
    client.query("out", "CREATE TABLE t (n INTEGER, s TEXT)")
    client.query("out", "INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    client.query("out", "DELETE FROM t WHERE n = 1")
    now = client.pull("out", tmp_path / "now.sqlite")
    assert now.version == 3 and rows(tmp_path / "now.sqlite", "SELECT n, s FROM t") == [(2, "two")]
    before = client.pull("out", tmp_path / "v2.sqlite", as_of=2)
    assert before.version == 2 and rows(tmp_path / "v2.sqlite", "SELECT n FROM t ORDER BY n") == [(1,), (2,)]
    assert rows(tmp_path / "now.sqlite", "PRAGMA integrity_check") == [("ok",)]
    with pytest.raises(DatabaseNotFound):
        client.pull("never", tmp_path / "never.sqlite")
    with pytest.raises(VersionNotFound):
        client.pull("out", tmp_path / "later.sqlite", as_of=9)
    assert not (tmp_path / "never.sqlite").exists() and not (tmp_path / "later.sqlite").exists()


def test_push_makes_a_file_a_database_then_its_next_version(client: Client, serving: Worker, tmp_path: Path,
                                                             drain: Callable[..., int]) -> None:
    source = tmp_path / "local.sqlite"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE cities (name TEXT PRIMARY KEY, people INTEGER)")
    conn.execute("INSERT INTO cities VALUES ('Lyon', 522000), ('Oslo', 709000)")  # still in the WAL: conn is open
    first = client.push(source, "cities")
    assert (first.version, first.labels) == (1, ["push of local.sqlite"])
    assert client.query("cities", "SELECT name FROM cities ORDER BY name").values() == [["Lyon"], ["Oslo"]]
    client.query("cities", "INSERT INTO cities VALUES ('Quito', 2800000)")  # the worker writes on top: version 2
    conn.execute("UPDATE cities SET people = people + 1")
    conn.close()
    second = client.push(source, "cities", label="nightly import")
    assert second.version == 3 and client.history("cities")[0].labels == ["nightly import"]
    assert client.query("cities", "SELECT name, people FROM cities ORDER BY name").values() == [
        ["Lyon", 522001], ["Oslo", 709001]]  # the file replaced the database, as a restore would
    assert client.query("cities", "SELECT count(*) FROM cities", as_of=2).values() == [[3]]  # history kept
    pulled = tmp_path / "back.sqlite"
    client.pull("cities", pulled)
    assert rows(pulled, "SELECT name, people FROM cities ORDER BY name") == [("Lyon", 522001), ("Oslo", 709001)]


def test_push_refuses_what_is_not_a_sound_sqlite_file(client: Client, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ClientSideError, match="is not a SQLite database"):
        client.push(text, "notes")
    with pytest.raises(ClientSideError, match="no such file"):
        client.push(tmp_path / "missing.sqlite", "notes")
    broken = tmp_path / "broken.sqlite"
    good = sqlite3.connect(broken)
    good.execute("CREATE TABLE t (a)")
    good.executemany("INSERT INTO t VALUES (?)", [[i] for i in range(5000)])
    good.commit()
    good.close()
    data = bytearray(broken.read_bytes())
    data[4096:4096 + 12] = b"\xff" * 12  # the b-tree header of page 2: no such page type
    broken.write_bytes(bytes(data))
    with pytest.raises(ClientSideError, match=r"damaged|cannot be read"):
        client.push(broken, "notes")
    with pytest.raises(DatabaseNotFound):
        client.history("notes")  # nothing was committed
