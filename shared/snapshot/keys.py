"""The database half of the S3 layout: ``db/<name>/`` holds the manifest, versions and chunks."""

from __future__ import annotations

from shared.names import check_database

DATABASES_PREFIX = "db/"


def database_prefix(database: str) -> str:
    return f"{DATABASES_PREFIX}{check_database(database)}/"


def manifest_key(database: str) -> str:
    return f"db/{check_database(database)}/manifest.json"


def versions_prefix(database: str) -> str:
    return f"db/{check_database(database)}/versions/"


def version_key(database: str, version: int) -> str:
    return f"{versions_prefix(database)}{version:012d}.json"


def chunk_key(database: str, digest: str) -> str:
    return f"db/{check_database(database)}/chunks/{digest}"
