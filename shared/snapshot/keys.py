"""The database half of the S3 layout: ``db/<name>/`` holds the manifest, versions and chunks, and the
garbage collector's ledger and trash."""

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


def chunks_prefix(database: str) -> str:
    return f"db/{check_database(database)}/chunks/"


def trash_prefix(database: str) -> str:
    """Chunks the collector took out of use: kept here for a grace period, where a reader still finds them."""
    return f"db/{check_database(database)}/trash/"


def trash_key(database: str, digest: str) -> str:
    return f"{trash_prefix(database)}{digest}"


def gc_state_key(database: str) -> str:
    """The collector's ledger of the database: the last version that names each chunk."""
    return f"db/{check_database(database)}/gc.json"


def forks_prefix(database: str) -> str:
    """Markers of the databases forked from this one (or from a fork of it): their versions may name this
    database's chunks, so its collector keeps those chunks (shared/snapshot/fork.py)."""
    return f"db/{check_database(database)}/forks/"


def fork_marker_key(database: str, fork: str) -> str:
    return f"{forks_prefix(database)}{check_database(fork)}.json"
