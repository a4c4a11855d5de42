"""The skip gate of tests/skips.py: in strict mode a skip that is not on the allow-list
fails an otherwise green run, and the summary names every skip with its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import skips
from skips import Allowed, SkipGate, strict_skips

def pytest_configure(config):
    allowed = [Allowed("test_demo.py::test_allowed", "no widget here", "demo")]
    config.pluginmanager.register(SkipGate(strict_skips(), allowed), "gate")
"""

DEMO = """
import pytest

def test_passes():
    pass

def test_allowed():
    pytest.skip("no widget here")

def test_other():
    pytest.skip("module frob is missing")
"""


def run_demo(tmp_path, env_extra, *, with_other=True):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    demo = DEMO if with_other else DEMO.replace('pytest.skip("module frob is missing")', "pass")
    (tmp_path / "test_demo.py").write_text(demo)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GFLOW_STRICT_SKIPS")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("env", [{"CI": "true"}, {"GFLOW_STRICT_SKIPS": "1"}])
def test_unexpected_skip_fails_a_strict_run(tmp_path, env):
    res = run_demo(tmp_path, env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "skips: 2 (1 allowed, 1 unexpected; strict" in res.stdout
    assert "UNEXPECTED: test_demo.py::test_other: module frob is missing" in res.stdout
    assert "allowed (demo): test_demo.py::test_allowed: no widget here" in res.stdout
    assert "1 passed, 2 skipped" in res.stdout


def test_allowed_skips_pass_a_strict_run(tmp_path):
    res = run_demo(tmp_path, {"CI": "true"}, with_other=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "skips: 1 (1 allowed, 0 unexpected; strict" in res.stdout


@pytest.mark.parametrize("env", [{"CI": "1"}])
def test_outside_ci_skips_are_listed_but_do_not_fail(tmp_path, env):
    res = run_demo(tmp_path, env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "skips: 2 (1 allowed, 1 unexpected; not strict" in res.stdout
