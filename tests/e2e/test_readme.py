"""Every shell and Python block of the README runs as written, in order, against ``srdb local`` — so the
front door cannot drift from the product. A block preceded by ``<!-- not run: why -->`` is skipped (it
deploys to AWS, or starts the stack this test provides)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import srdb_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(?:<!-- not run: (?P<why>[^>]*) -->\n)?```(?P<lang>sh|python)\n(?P<code>.*?)\n```", re.S)


def readme_blocks() -> list[tuple[str, str, str | None]]:
    return [(m["lang"], m["code"], m["why"]) for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def test_the_readme_says_why_each_block_it_does_not_run_is_not_run() -> None:
    blocks = readme_blocks()
    text = (ROOT / "README.md").read_text()
    assert len(blocks) == text.count("```sh\n") + text.count("```python\n")  # none escapes the parser
    assert len([b for b in blocks if b[2] is None]) >= 5
    assert all(why.strip() for _, _, why in blocks if why is not None)


def test_every_readme_block_runs_as_written(stack: Path) -> None:
    (stack / ".venv").symlink_to(ROOT / ".venv")  # the README says .venv/bin/srdb, from the repository's folder
    env = srdb_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PAGER"] = "cat"
    for index, (lang, code, why) in enumerate(readme_blocks()):
        if why is not None:
            continue
        command = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
        ran = subprocess.run(command, cwd=stack, env=env, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
        assert ran.returncode == 0, f"README block {index} ({lang}) failed:\n{code}\n--- stdout\n{ran.stdout}" \
                                    f"\n--- stderr\n{ran.stderr}"
