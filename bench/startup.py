"""How fast the command line starts: ``srdb --help`` and friends beside ``python -c pass`` (the interpreter
alone), each the median of several runs in fresh processes. The CLI imports only what a command needs
(producer/cli: commands import their modules inside), so help costs little more than Python itself."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "srdb --version": [sys.executable, "-m", "producer.cli", "--version"],
    "srdb --help": [sys.executable, "-m", "producer.cli", "--help"],
    "srdb query --help": [sys.executable, "-m", "producer.cli", "query", "--help"],
}


def startup(runs: int = 7) -> dict[str, Any]:
    figures: dict[str, Any] = {"scenario": "startup", "runs": runs}
    for name, command in COMMANDS.items():
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        figures[f"{name} s"] = round(statistics.median(times), 3)
    base = figures["python -c pass s"]
    figures["srdb --help over python -c pass s"] = round(figures["srdb --help s"] - base, 3)
    return figures
