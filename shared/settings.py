"""Configuration, read once at the edge: arguments beat ``SRDB_*`` variables, which beat defaults.

When no ``SRDB_*`` variable names a stack, ``.srdb/local.env`` in the current folder or one above it
(written by ``srdb local``) stands in for the environment, so a second terminal just works; without
one, the profile ``srdb config use`` chose (shared.profiles). ``Settings._gather`` orders the layers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shared import profiles
from shared.errors import ClientSideError, NotConfigured

LOCAL_ENV_FILE = Path(".srdb") / "local.env"
ENV_PREFIX = "SRDB_"


@dataclass(frozen=True)
class Settings:
    """Every knob of srdb. Each field ``name`` is read from ``SRDB_<NAME>``."""

    bucket: str = ""
    # What each job sends and gets back — status documents and result parts (results/), claim-checked
    # bodies (jobs/) — may live in a bucket of their own, e.g. an S3 Express One Zone directory bucket
    # (its requests cost a fifth of S3 Standard's and answer in single-digit ms). Empty: ``bucket``.
    status_bucket: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    callback_queue_url: str = ""
    # A queue only this client reads, which the worker may send to: waits listen there instead of
    # polling S3 per job (producer/waiter.py). Empty: waits poll results/<id>.json.
    wait_queue_url: str = ""
    reply_to_allowed: str = ""
    # Where loads may read outside srdb's bucket: ``s3://bucket/prefix*`` globs, comma-separated
    # (worker/sources.py). Empty: nowhere outside it.
    load_sources: str = ""
    vpc_id: str = ""
    region: str = "us-east-1"
    endpoint_url: str = ""
    # The HTTP API (api/): srdb local's own server, `srdb serve`, or the deployed function URL (output HttpUrl).
    http_url: str = ""
    profile: str = ""  # a named profile of ~/.aws/config (boto3's AWS_PROFILE works too)
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    lock_prefix: str = "srdb"
    lock_backend: str = "security-group"  # or "s3": see shared/lock/
    # A lock expires this long after it was taken or last renewed; a worker renews the locks its
    # batches use a third of the way through (worker/keeper.py), so this bounds how long a crashed
    # or frozen holder keeps others waiting, not how long a batch may run.
    lock_ttl: float = 30.0
    # Seconds a worker keeps a database's lock after a batch, for the next batch (0: release at once).
    # It must outlast the time between two batches of a busy worker, or the lock is given back and
    # taken again each batch (bench many-databases: 1 s kept 12% of the turns, 5 s 88%).
    lock_linger: float = 5.0
    lock_wait: float = 60.0
    # Seconds a worker waits for a lock another worker holds (having marked it wanted, so the holder lets
    # go after its batch) before it hands that database's jobs back to the queue for a moment and runs the
    # rest of its batch (worker/keeper.py). A batch never waits out lock_wait on one busy database.
    lock_handoff: float = 2.0
    job_timeout: float = 30.0
    # The longest budget a job may ask for, and the time a batch has when no Lambda context says
    # (the local poller): both below the worker's own timeout (serverless.yml: 120 s).
    max_job_timeout: float = 100.0
    worker_timeout: float = 120.0
    chunk_size: int = 256 * 1024
    cache_dir: str = "/tmp/srdb-cache"
    inline_result_bytes: int = 256 * 1024
    max_result_bytes: int = 256 * 1024 * 1024
    max_receive_count: int = 5
    read_concurrency: int = 8
    # Jobs open a version straight from its chunks, fetching only what their statements touch (worker/pages.py;
    # writes on an overlay, worker/overlay.py); 0: every job works on a local copy of the whole file. The chunks
    # fetched are kept up to cache_bytes.
    read_pages: int = 1
    cache_bytes: int = 256 * 1024 * 1024
    transfer_concurrency: int = 16
    io_concurrency: int = 32
    # Bytes SQLite may hold in a worker process, all its jobs together; 0: half the Lambda's memory
    # (AWS_LAMBDA_FUNCTION_MEMORY_SIZE), or 512 MiB where there is no Lambda.
    sqlite_heap_limit: int = 0
    row_memory: int = 0
    # The database a command names when it is given no --db (srdb's CLI).
    database: str = ""
    # Garbage collection (reaper/gc.py): old versions stay readable this long (time travel, restore);
    # "0": only the current version. A duration: 90s, 30m, 12h, 7d, 2w.
    retention: str = "7d"
    # How long a chunk nothing names yet is left alone (a commit in flight), and how long a collected
    # chunk waits in the trash: longer than any commit or restore takes.
    gc_grace: str = "1h"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None, profile_name: str | None = None,
             **overrides: Any) -> Settings:
        """Build settings from ``overrides``, then the environment (or ``.srdb/local.env``, or a profile), then
        defaults. ``profile_name``: a profile of the user's config folder, chosen for this call (shared.profiles)."""
        values, _ = cls._gather(environ, cwd, overrides, profile_name)
        return cls(**values)

    @classmethod
    def sources(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                profile_name: str | None = None, **overrides: Any) -> dict[str, str]:
        """Where each setting :meth:`load` would use comes from: an argument, a variable, a file, a default."""
        _, origin = cls._gather(environ, cwd, overrides, profile_name)
        return {f.name: origin.get(f.name, "default") for f in fields(cls)}

    @classmethod
    def _gather(cls, environ: Mapping[str, str] | None, cwd: Path | None, overrides: Mapping[str, Any],
                profile_name: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """The layers, lowest first: defaults; the current profile (``srdb config use``) — only its
        preferences (SRDB_DATABASE) when something else names the stack; ``.srdb/local.env`` here or in
        a folder above; ``SRDB_*`` variables; a profile named for this call (``--profile``); arguments."""
        env = dict(os.environ if environ is None else environ)
        origins = dict.fromkeys(env, "environment")
        chosen = profile_name or profiles.current(env)
        saved = read_env_file(profiles.profile_path(chosen, env)) if chosen else {}
        from_profile = f"profile {chosen}"
        if profile_name:
            env.update(saved)
            origins.update(dict.fromkeys(saved, from_profile))
        else:
            beneath: dict[str, str] = {}
            here, named = cwd or Path.cwd(), names_a_stack(env)
            found = None if named else find_local_env(here)
            local = read_env_file(found) if found else {}
            stack_named = named or names_a_stack(local)
            kept = {k: v for k, v in saved.items() if not stack_named or k in PREFERENCES}
            beneath.update(kept)
            origins.update({k: from_profile for k in kept if k not in env})
            if found:
                where = str(LOCAL_ENV_FILE) if found.parent.parent == here else str(found)
                beneath.update(local)
                origins.update({k: where for k in local if k not in env})
            env = {**beneath, **env}
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if env.get(name) and "region" not in values:
                values["region"], origin["region"] = env[name], f"environment ({name})"
        for f in fields(cls):
            variable = ENV_PREFIX + f.name.upper()
            raw = env.get(variable)
            if raw is not None and raw != "":
                values[f.name], origin[f.name] = _convert(f.name, raw, f.type), f"{origins[variable]} ({variable})"
        kinds = {f.name: f.type for f in fields(cls)}
        # Overrides may be text too (a URL's query string): numbers are converted as the environment's are.
        given = {k: _convert(k, v, kinds[k]) if isinstance(v, str) and k in kinds else v
                 for k, v in overrides.items() if v is not None}
        values.update(given)
        origin.update(dict.fromkeys(given, "argument"))
        unknown = set(values) - set(kinds)
        if unknown:
            raise ClientSideError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return values, origin

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def require(self, *names: str) -> None:
        """Fail with a clear message when a setting this command needs is empty."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise NotConfigured(f"missing setting(s) {env}: set them, or run `srdb local` in this folder (or one "
                                "above it) first")

    def heap_limit_bytes(self, environ: Mapping[str, str] | None = None) -> int:
        """What SQLite may hold in a worker: ``SRDB_SQLITE_HEAP_LIMIT``, or half the worker's memory."""
        if self.sqlite_heap_limit > 0:
            return self.sqlite_heap_limit
        return worker_memory_bytes(environ) // 2

    def row_memory_bytes(self, environ: Mapping[str, str] | None = None) -> int:
        """What a worker may hold of result rows being encoded, all jobs together: ``SRDB_ROW_MEMORY``, or a
        quarter of the worker's memory."""
        if self.row_memory > 0:
            return self.row_memory
        return worker_memory_bytes(environ) // 4

    @property
    def jobs_bucket(self) -> str:
        """The bucket of status documents, result parts and payloads."""
        return self.status_bucket or self.bucket

    def retention_seconds(self) -> float:
        return duration_seconds(self.retention, "retention")

    def gc_grace_seconds(self) -> float:
        return duration_seconds(self.gc_grace, "gc_grace")

    def allowed_reply_to(self) -> set[str]:
        allowed = {u.strip() for u in self.reply_to_allowed.split(",") if u.strip()}
        if self.callback_queue_url:
            allowed.add(self.callback_queue_url)
        return allowed

    def to_env(self) -> dict[str, str]:
        """The non-default settings as ``SRDB_*`` variables (what ``srdb local`` writes)."""
        default = Settings()
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    tmp.replace(path)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(text: str, name: str = "duration") -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` or a plain number of seconds ("0": none), in seconds."""
    raw = text.strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in _UNITS else (raw, "s")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ClientSideError(f"{ENV_PREFIX}{name.upper()}={text!r} is not a duration: write e.g. 7d, 12h, 30m, "
                              "90s or 0")
    return value


def setting_variable(key: str) -> tuple[str, str]:
    """A setting named as a user would (``database``, ``queue-url``, ``SRDB_QUEUE_URL``): its field and its
    variable. ClientSideError for a name that is no setting."""
    name = key.strip().lower().removeprefix(ENV_PREFIX.lower()).replace("-", "_")
    if name not in {f.name for f in fields(Settings)}:
        raise ClientSideError(f"{key} is not a setting: `srdb config` lists them")
    return name, ENV_PREFIX + name.upper()


def checked_value(name: str, raw: str) -> str:
    """``raw`` as the setting ``name`` takes it (a number where it must be); ClientSideError otherwise."""
    _convert(name, raw, {f.name: f.type for f in fields(Settings)}[name])
    return raw


def _convert(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
    except ValueError:
        raise ClientSideError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a number") from None
    return raw


def worker_memory_bytes(environ: Mapping[str, str] | None = None) -> int:
    """The worker's memory: its Lambda's memory size, or 1,024 MiB (the stack's default) elsewhere."""
    lambda_mib = (os.environ if environ is None else environ).get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    return (int(lambda_mib) if lambda_mib.isdigit() else 1024) * 1024 * 1024


def find_local_env(folder: Path) -> Path | None:
    """``.srdb/local.env`` in ``folder`` or the nearest folder above it that has one, as git finds ``.git``:
    ``srdb`` works from any folder of the project ``srdb local`` runs in."""
    for candidate in (folder, *folder.parents):
        path = candidate / LOCAL_ENV_FILE
        if path.is_file():
            return path
    return None


# Variables that choose nothing about which stack is used: setting them still lets .srdb/local.env name it.
PREFERENCES = {ENV_PREFIX + "DATABASE"}


def names_a_stack(environ: Mapping[str, str]) -> bool:
    """Whether ``SRDB_*`` variables name the stack (then ``.srdb/local.env`` is not read)."""
    return any(k.startswith(ENV_PREFIX) and k not in PREFERENCES for k in environ)
