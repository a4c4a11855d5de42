"""The real single-node Slurm that `.ci/slurm.sh up` starts (spec/slurm.md), for the Slurm executor's tests.

Tests share the one cluster (ports 6817/6818 are fixed) and never start or stop it,
except the controller-restart test, which stops and starts slurmctld alone through
`.ci/slurm.sh ctld-stop|ctld-start` (its state is kept). Job ids repeat across CI runs
(the state is wiped at `up`): tests never assert on their values.

GFLOW_SLURM_TESTS (set by .ci/run): "require", a missing cluster fails the test;
"unavailable: <why>", .ci/run could not install Slurm (the Debian registry could not be
reached), the tests skip with that reason (on tests/skips.py's allow-list); unset, they
skip as any missing tool does, which CI's skip gate refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SLURM_SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "slurm.sh"


def slurm_available(timeout: float = 5.0) -> tuple[bool, str]:
    if not shutil.which("sbatch") or not shutil.which("scontrol"):
        return False, "slurm client commands not installed"
    try:
        p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode != 0 or " is UP" not in p.stdout:
            return False, "slurmctld not reachable: " + (p.stdout + p.stderr).strip()[:200]
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "slurm command timed out"
    if not set(p.stdout.split()) & {"idle", "mixed", "allocated", "completing"}:
        return False, f"no usable slurm node: {p.stdout.strip() or p.stderr.strip()}"
    return True, ""


@pytest.fixture(scope="session")
def slurm_cluster():
    wanted = os.environ.get("GFLOW_SLURM_TESTS", "")
    if wanted.startswith("unavailable"):
        pytest.skip("Slurm could not be installed by .ci/run: " + wanted)
    ok, why = slurm_available()
    if not ok:
        if wanted == "require":
            pytest.fail("Slurm required (GFLOW_SLURM_TESTS=require) but unavailable: " + why)
        pytest.skip("no Slurm cluster (run `bash .ci/slurm.sh up` as root): " + why)
    return True


def slurm_records(key: str) -> list[dict]:
    """`scontrol show -o job KEY`, parsed (gflow's own parser is what is under test, so
    this one is separate and simple: every Key=Value up to the next ` Key=`)."""
    import re
    res = subprocess.run(["scontrol", "show", "-o", "job", key], capture_output=True,
                         text=True, timeout=15)
    out = []
    for line in res.stdout.splitlines():
        marks = list(re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=", line))
        rec = {}
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
            rec[m.group(1)] = line[m.end():end].strip()
        if rec:
            out.append(rec)
    return out


def squeue_all() -> list[dict]:
    res = subprocess.run(["squeue", "--json"], capture_output=True, text=True, timeout=15)
    return json.loads(res.stdout).get("jobs", [])


def controller(action: str) -> None:
    """Stop or start slurmctld alone (its state kept): `.ci/slurm.sh ctld-stop|start`."""
    subprocess.run(["bash", str(SLURM_SCRIPT), f"ctld-{action}"], check=True, timeout=60)
