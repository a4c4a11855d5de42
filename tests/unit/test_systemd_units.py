"""The systemd units pass `systemd-analyze verify` (where it exists) and keep jobs alive on stop."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def parse(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNITS / name)
    return cp


@pytest.mark.parametrize("name", ["gflowd.service", "gflowd@.service",
                                  "gflowd-system.service"])
def test_unit_shape(name):
    unit = parse(name)
    service = unit["Service"]
    assert "gflowd up --foreground" in service["ExecStart"]
    assert service["KillMode"] == "process"       # stopping the daemon leaves jobs running
    assert service["ExecReload"].endswith("-HUP $MAINPID")
    if name.startswith("gflowd@"):
        assert service["User"] == "%i"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
@pytest.mark.parametrize("name", ["gflowd.service", "gflowd@.service",
                                  "gflowd-system.service"])
def test_systemd_analyze_verify(name, tmp_path):
    target = tmp_path / (name.replace("@.", "@lab.") if "@" in name else name)
    shutil.copy(UNITS / name, target)
    if "@" in name:
        shutil.copy(UNITS / name, tmp_path / name)
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)],
                         capture_output=True, text=True, timeout=60)
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if str(target.name) in line or name in line]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr


def test_service_install_writes_the_contrib_unit():
    """`gflowd service install` renders contrib/systemd/gflowd.service (ExecStart aside)."""
    from gflow.cli import systemd_unit
    assert systemd_unit.render("/usr/bin/env gflowd") == (UNITS / "gflowd.service").read_text()


def test_service_install_system_writes_the_contrib_unit():
    """`gflowd service install --system` renders contrib/systemd/gflowd-system.service."""
    from gflow.cli import systemd_unit
    assert systemd_unit.render("/usr/bin/env gflowd", system=True) == (
        UNITS / "gflowd-system.service").read_text()
    service = parse("gflowd-system.service")["Service"]
    assert "GFLOW_DAEMON_SOCKET=/run/gflow/gflowd.sock" in service["Environment"]
    assert "User" not in service                   # root, so jobs can run as submitters


def test_exec_start_quoting():
    from gflow.cli.systemd_unit import _quote
    assert _quote("/opt/venv/bin/gflowd") == "/opt/venv/bin/gflowd"
    assert _quote("/home/a b/bin/gflowd") == '"/home/a b/bin/gflowd"'
    assert _quote("/x/100%/$HOME") == "/x/100%%/$$HOME"
