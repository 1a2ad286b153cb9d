"""Migrations: numbered files applied once each, in order, each as one job recorded in the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.client import Client
from producer.migrations import Migrations
from shared.errors import ClientSideError, JobFailed
from worker.batch import Worker


def test_pending_files_apply_once_in_order_and_a_failing_one_applies_nothing(
        client: Client, serving: Worker, tmp_path: Path) -> None:
    migrations = Migrations(client, tmp_path / "migrations", timeout=30)
    first = migrations.create("create users")
    first.write_text(first.read_text() + "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n")
    second = migrations.create("Add orders!")
    second.write_text("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER);\n"
                      "CREATE INDEX orders_user ON orders (user_id);\n")
    assert [p.name for p in (first, second)] == ["0001_create_users.sql", "0002_add_orders.sql"]
    assert [(s.name, s.state) for s in migrations.status("app")] == [("0001_create_users", "pending"),
                                                                    ("0002_add_orders", "pending")]
    assert migrations.apply("app") == ["0001_create_users", "0002_add_orders"]
    assert migrations.apply("app") == []  # applied once
    assert [s.state for s in migrations.status("app")] == ["applied", "applied"]
    broken = migrations.create("half")
    broken.write_text("CREATE TABLE half (a);\nINSERT INTO nowhere VALUES (1);\n")
    with pytest.raises(JobFailed, match=r"migration 0003_half: .*no such table: nowhere"):
        migrations.apply("app")
    tables = client.query("app", "SELECT name FROM sqlite_schema WHERE type = 'table' "
                                  "AND substr(name, 1, 6) != '_srdb_' ORDER BY name").values()
    assert tables == [["orders"], ["srdb_migrations"], ["users"]]  # nothing of the failed one
    assert [s.state for s in migrations.status("app")] == ["applied", "applied", "pending"]
    first.write_text(first.read_text() + "-- changed after it was applied\n")
    assert [s.state for s in migrations.status("app")] == ["changed", "applied", "pending"]
    with pytest.raises(ClientSideError, match="0001_create_users was applied to app and its file has changed"):
        migrations.apply("app")


def test_a_file_not_named_as_a_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "create_users.sql").write_text("CREATE TABLE users (id);\n")
    with pytest.raises(ClientSideError, match=r"NNNN_name\.sql"):
        Migrations(None, tmp_path).files()
