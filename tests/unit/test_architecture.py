"""The import contracts of pyproject.toml hold, and break when an import crosses one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.argv[0] = 'lint-imports'; lint_imports_command()", "--no-cache"]


def lint(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(LINT, cwd=folder, env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def copy_tree(tmp_path: Path) -> Path:
    for name in ("producer", "worker", "reaper", "shared", "api"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contracts_hold(tmp_path: Path) -> None:
    result = lint(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_across_a_contract_breaks_it(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    with open(tree / "shared" / "job" / "model.py", "a") as f:
        f.write("\nimport shared.snapshot.manifest  # noqa\n")
    with open(tree / "producer" / "client.py", "a") as f:
        f.write("\nimport worker.batch  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "the storage engine and the job protocol do not import each other BROKEN" in result.stdout
    assert "the client library and the HTTP API do not import the worker or the reaper BROKEN" in result.stdout


MAX_MODULE_LINES = 450


def long_modules(root: Path) -> dict[str, int]:
    """The modules of srdb's packages (and the bench) longer than MAX_MODULE_LINES."""
    found = {}
    for name in ("producer", "worker", "reaper", "shared", "api", "bench"):
        for path in sorted((root / name).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                found[str(path.relative_to(root))] = lines
    return found


def test_no_module_is_longer_than_450_lines() -> None:
    """One concept per module: a module past 450 lines holds more than one; split it by concept."""
    assert long_modules(ROOT) == {}


def test_the_length_check_finds_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "worker" / "small.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    assert long_modules(tmp_path) == {"worker/big.py": MAX_MODULE_LINES + 1}
