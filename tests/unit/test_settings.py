from __future__ import annotations

from pathlib import Path

import pytest

from shared import profiles
from shared.errors import ClientSideError, NotConfigured
from shared.settings import Settings, duration_seconds, write_env_file


def test_arguments_beat_environment_beat_defaults(tmp_path: Path) -> None:
    env = {"SRDB_BUCKET": "from-env", "SRDB_LOCK_TTL": "90", "SRDB_QUEUE_URL": "q"}
    settings = Settings.load(env, tmp_path, bucket="from-arg")
    assert settings.bucket == "from-arg"
    assert settings.lock_ttl == 90.0
    assert settings.queue_url == "q"
    assert settings.chunk_size == 256 * 1024


def test_local_env_file_stands_in_when_no_srdb_variable_is_set(tmp_path: Path) -> None:
    write_env_file(tmp_path / ".srdb" / "local.env", {"SRDB_BUCKET": "local", "SRDB_CHUNK_SIZE": "4096"})
    assert Settings.load({}, tmp_path).bucket == "local"
    assert Settings.load({}, tmp_path).chunk_size == 4096
    assert Settings.load({"SRDB_BUCKET": "real"}, tmp_path).chunk_size == 256 * 1024


def test_to_env_round_trips(tmp_path: Path) -> None:
    settings = Settings(bucket="b", queue_url="q", lock_ttl=12.5)
    assert Settings.load(settings.to_env(), tmp_path) == settings


def test_bad_values_and_missing_settings_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ClientSideError, match="SRDB_LOCK_TTL='soon' is not a number"):
        Settings.load({"SRDB_LOCK_TTL": "soon"}, tmp_path)
    with pytest.raises(NotConfigured, match="SRDB_BUCKET, SRDB_QUEUE_URL"):
        Settings.load({"SRDB_REGION": "eu-west-1"}, tmp_path).require("bucket", "queue_url")
    with pytest.raises(ClientSideError, match="unknown setting"):
        Settings.load({}, tmp_path, colour="blue")


def test_reply_to_allow_list() -> None:
    settings = Settings(callback_queue_url="https://q/cb", reply_to_allowed="https://q/a, https://q/b")
    assert settings.allowed_reply_to() == {"https://q/cb", "https://q/a", "https://q/b"}


def test_retention_and_grace_are_durations() -> None:
    settings = Settings.load({"SRDB_RETENTION": "12h", "SRDB_GC_GRACE": "30m"})
    assert (settings.retention_seconds(), settings.gc_grace_seconds()) == (43_200, 1_800)
    assert Settings.load({}).retention_seconds() == 7 * 86_400  # the default: 7d
    assert [duration_seconds(t) for t in ("0", "90", "90s", "1.5h", "2w")] == [0, 90, 90, 5_400, 1_209_600]
    for bad in ("", "x", "7 days", "-1d", "nan", "inf"):
        with pytest.raises(ClientSideError, match="is not a duration"):
            duration_seconds(bad, "retention")
    with pytest.raises(ClientSideError, match="SRDB_RETENTION='7days'"):
        Settings.load({"SRDB_RETENTION": "7days"}).retention_seconds()


def test_profiles_follow_the_user_and_yield_to_what_names_a_stack_here(tmp_path: Path) -> None:
    home, project, elsewhere = tmp_path / "home", tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"HOME": str(home)}
    write_env_file(home / ".config" / "srdb" / "profiles" / "prod.env",
                   {"SRDB_BUCKET": "prod-bucket", "SRDB_QUEUE_URL": "prod-q", "SRDB_STATUS_BUCKET": "prod-status",
                    "SRDB_DATABASE": "shop"})
    write_env_file(project / ".srdb" / "local.env", {"SRDB_BUCKET": "local", "SRDB_QUEUE_URL": "local-q"})
    assert Settings.load(env, elsewhere).bucket == ""  # no profile in use yet
    profiles.use("prod", env)
    used = Settings.load(env, elsewhere)
    assert (used.bucket, used.status_bucket, used.database) == ("prod-bucket", "prod-status", "shop")
    assert Settings.sources(env, elsewhere)["bucket"] == "profile prod (SRDB_BUCKET)"
    # Where local.env names the stack, only the profile's preferences (the default database) come along.
    (project / "sub").mkdir()
    here = Settings.load(env, project / "sub")
    assert (here.bucket, here.status_bucket, here.database) == ("local", "", "shop")
    named = Settings.load({**env, "SRDB_BUCKET": "b", "SRDB_DATABASE": "mine"}, elsewhere)
    assert (named.bucket, named.queue_url, named.database) == ("b", "", "mine")
    # A profile named for one call beats local.env and the environment.
    chosen = Settings.load({**env, "SRDB_BUCKET": "b"}, project, profile_name="prod")
    assert (chosen.bucket, chosen.status_bucket) == ("prod-bucket", "prod-status")
    with pytest.raises(ClientSideError, match="no profile nope"):
        profiles.use("nope", env)
    assert profiles.names(env) == ["prod"] and profiles.current(env) == "prod"
    assert Settings.load({}, elsewhere).bucket == ""  # an environment without HOME reads no profile
