"""A real ``srdb local`` for each e2e module, and the srdb command run against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SRDB = [sys.executable, "-m", "producer.cli"]
# The user's config folder (srdb's profiles) for every command these tests run: never the runner's own.
CONFIG_HOME = tempfile.mkdtemp(prefix="srdb-config-")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("local")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDB_")}
    process = subprocess.Popen([*SRDB, "local", "--workers", "2", "--visibility-timeout", "20"], cwd=folder,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    ready = process.stdout.readline()
    assert "srdb local ready at http://127.0.0.1:" in ready, ready
    assert (folder / ".srdb" / "local.env").is_file()
    yield folder
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "srdb local stopped" in process.stdout.read()
    assert not (folder / ".srdb" / "local.env").exists()


def srdb_env() -> dict[str, str]:
    """This environment without SRDB_* variables: the command finds .srdb/local.env, as a user's would. A wide
    screen, whatever the runner's: a table wider than the screen is printed a record at a time. Profiles in a
    config folder of the tests' own (CONFIG_HOME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDB_")}
    return {**env, "COLUMNS": "200", "LINES": "50", "XDG_CONFIG_HOME": CONFIG_HOME}


def srdb(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SRDB, *args], cwd=folder, env=srdb_env(), capture_output=True, text=True, timeout=120)
