"""``srdb worker`` processes, started the one way ``srdb local``, the benchmarks and the tests all use:
the settings in the environment (no other ``SRDB_*`` variable leaks in), a cache folder of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from shared.settings import ENV_PREFIX, Settings

WORKER_COMMAND = [sys.executable, "-m", "producer.cli", "worker"]


def worker_env(settings: Settings, cache_dir: Path | str, **extra: str) -> dict[str, str]:
    """This process's environment without its ``SRDB_*`` variables, plus ``settings`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**env, **settings.to_env(), "SRDB_CACHE_DIR": str(cache_dir), **extra}


def spawn_worker(settings: Settings, cache_dir: Path | str, *args: str, output: IO[bytes] | int | None = None,
                 cwd: Path | None = None, **extra_env: str) -> subprocess.Popen[bytes]:
    """Start one ``srdb worker`` (``args``: its options); its output goes to ``output`` (a file, DEVNULL)."""
    return subprocess.Popen([*WORKER_COMMAND, *args], env=worker_env(settings, cache_dir, **extra_env),
                            stdout=output, stderr=subprocess.STDOUT if output is not None else None, cwd=cwd)


def stop_all(processes: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM each, then SIGKILL whatever has not ended within ``timeout``."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
