"""The skips CI allows, and the gate that fails a run on any other.

A skipped test proves nothing, so in CI (`CI=true`, or `GFLOW_STRICT_SKIPS=1` anywhere)
every skip must match an entry of ALLOWED below: a node-id pattern (fnmatch), a pattern
its reason must contain (regular expression), and why skipping it there is acceptable.
Any other skip makes the run fail (exit status 1) even if every test passed. Every run,
strict or not, ends with a summary: how many tests skipped, and each skip with its reason,
marked "allowed" or "UNEXPECTED".

`.ci/run` installs what the skipping tests need (a C compiler for the NVML stub, systemd
for `systemd-analyze`); CI runs as root, so the multi-user and tmpfs tests run too. To see
the gate locally: `GFLOW_STRICT_SKIPS=1 .venv/bin/python -m pytest -q`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Allowed:
    nodeid: str          # fnmatch pattern on the test's node id
    reason: str          # regular expression searched in the skip reason
    why: str             # why this skip is acceptable in CI


ALLOWED: list[Allowed] = [
    # Nothing is skipped in CI today: .ci/run installs gcc and systemd, CI is root (accounts,
    # tmpfs mounts) and reaches PyPI (runqd 0.4.13 for the compat tests). Add an entry only
    # with the reason the test cannot run on CI's machine, e.g.
    # Allowed("tests/x/test_y.py::test_z", r"needs an NVIDIA driver", "CI has no GPU"),
    Allowed("tests/integration/test_gpu_insight_live.py::test_real_nvidia_gpu",
            r"no NVIDIA driver|NVML sees no GPU|libcuda\.so\.1 not loadable",
            "CI has no GPU; the same checks run on simulated GPUs and the NVML stub "
            "(test_simulated_gpus, test_nvml_stub), and on a GPU machine this one runs"),
    Allowed("tests/integration/test_slurm_*",
            r"Slurm could not be installed by \.ci/run",
            ".ci/run could not install Slurm's Debian packages (registry out of reach) and "
            "said so loudly; a cluster that installed but did not start fails CI instead"),
]


def strict_skips(env=None) -> bool:
    env = os.environ if env is None else env
    return env.get("CI") == "true" or env.get("GFLOW_STRICT_SKIPS") == "1"


def skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def allowed_by(nodeid: str, reason: str, allowed=None):
    for entry in ALLOWED if allowed is None else allowed:
        if fnmatch.fnmatchcase(nodeid, entry.nodeid) and re.search(entry.reason, reason):
            return entry
    return None


class SkipGate:
    """Collects every skip (tests and whole modules); in strict mode an unexpected one sets
    the exit status to 1. Registered by tests/conftest.py."""

    def __init__(self, strict: bool, allowed=None):
        self.strict = strict
        self.allowed = ALLOWED if allowed is None else allowed
        self.skips: list[tuple[str, str]] = []

    def _record(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.append((report.nodeid, skip_reason(report)))

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "setup" or report.when == "call":
            self._record(report)

    def pytest_collectreport(self, report) -> None:
        self._record(report)

    def unexpected(self) -> list[tuple[str, str]]:
        return [(n, r) for n, r in self.skips if allowed_by(n, r, self.allowed) is None]

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if self.strict and self.unexpected() and session.exitstatus == 0:
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter) -> None:
        unexpected = self.unexpected()
        tr = terminalreporter
        mode = "strict: unexpected skips fail the run" if self.strict else (
            "not strict; CI=true or GFLOW_STRICT_SKIPS=1 makes unexpected skips fail")
        tr.write_sep("-", f"skips: {len(self.skips)} ({len(self.skips) - len(unexpected)} "
                          f"allowed, {len(unexpected)} unexpected; {mode})")
        for nodeid, reason in self.skips:
            entry = allowed_by(nodeid, reason, self.allowed)
            mark = f"allowed ({entry.why})" if entry else "UNEXPECTED"
            tr.write_line(f"{mark}: {nodeid}: {reason}")
        if self.strict and unexpected:
            tr.write_line(f"FAILED: {len(unexpected)} unexpected skip(s); install what they "
                          "need or add them to tests/skips.py with the reason")
