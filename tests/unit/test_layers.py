"""DESIGN.md §3's layer rule, checked by import-linter's contracts in `.importlinter`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / ".importlinter"),
                           "--no-cache"], cwd=package_parent, env=env,
                          capture_output=True, text=True, timeout=120)


def test_layer_contracts_hold():
    assert LINT_IMPORTS.exists(), "import-linter is a test extra: pip install -e '.[test]'"
    res = lint_imports(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 kept, 0 broken" in res.stdout


def test_a_client_importing_flask_breaks_the_contract(tmp_path):
    # The contract must be able to fail: a copy of the package whose client imports flask.
    shutil.copytree(ROOT / "gflow", tmp_path / "gflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    client = tmp_path / "gflow" / "client.py"
    client.write_text(client.read_text() + "\nimport flask  # deliberate violation\n")
    res = lint_imports(tmp_path)
    assert res.returncode != 0
    assert "gflow.client is not allowed to import flask" in res.stdout, res.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "gflow", tmp_path / "gflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    models = tmp_path / "gflow" / "models.py"
    models.write_text(models.read_text() + "\nimport gflow.scheduler.policy  # violation\n")
    res = lint_imports(tmp_path)
    assert res.returncode != 0
    assert "gflow.models -> gflow.scheduler.policy" in res.stdout, res.stdout
