"""The layering is a test: import contracts (import-linter) and function lengths.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); these tests show
they hold on the tree and that they catch a forbidden import when one is added.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "channels", "routing", "storage")
LINT = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, before the installed (editable) tree.
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=where, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("channels/telegram/sneak.py", "import hub.ingest", "channels see only"),
        ("channels/email/sneak.py", "from storage import Database", "channels see only"),
        ("routing/sneak.py", "import sqlite3", "routing is pure"),
        ("storage/sneak.py", "import hub.kernel.types", "storage imports neither"),
        ("hub/desk/sneak.py", "import channels.telegram", "only hub.app wires"),
        ("hub/kernel/sneak.py", "import hub.config", "hub.kernel is the leaf"),
        ("hub/jobs/sneak.py", "import hub.ingest", "the rooms of hub"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = _copy(tmp_path)
    (root / module).write_text(f'"""A forbidden import."""\n\n{line}\n')
    result = _lint(root)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith(" BROKEN")]
    assert any(row.startswith(contract) for row in broken), result.stdout


def _long_functions(*args: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "scripts" / "long_functions.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def test_function_lengths_fail_only_above_the_limit(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (tmp_path / "code.py").write_text(
        f"def long_one() -> None:\n{body}\n\n\ndef short() -> None:\n    pass\n"
    )
    listed = _long_functions("--limit", "80", str(tmp_path))
    assert listed.returncode == 0
    assert "71 lines  long" in listed.stdout and "long_one" in listed.stdout
    assert "short" not in listed.stdout
    failed = _long_functions("--limit", "70", str(tmp_path))
    assert failed.returncode == 1 and "TOO LONG" in failed.stdout


def test_migrations_are_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(100))
    (folder / "m.py").write_text(f"def upgrade() -> None:\n{body}\n")
    assert _long_functions(str(tmp_path)).returncode == 0
