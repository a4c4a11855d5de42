"""gflow-shell transcripts (tests/e2e/transcripts/*.txt), each against a fresh daemon.

Each transcript runs as `gflow-shell --transcript FILE` (the installed command, in a
subprocess), so ids start at 1. Format and matching rules: gflow/shell/transcript.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"

# transcript -> the tool module it needs (skipped, with the reason, when it is missing)
NEEDS = {"reservations.txt": "gflow.cli.gctl"}


def _names() -> list[str]:
    return sorted(p.name for p in TRANSCRIPTS.glob("*.txt"))


def test_there_are_transcripts_for_every_area():
    assert {"jobs.txt", "errors.txt", "reservations.txt", "shell.txt"} <= set(_names())


@pytest.mark.parametrize("name", _names())
def test_transcript(daemon_factory, name):
    module = NEEDS.get(name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} needs {module}, which this checkout does not have yet")
    d = daemon_factory(fake_gpus="2", extra_env={"GFLOW_TIMEZONE": "UTC", "TZ": "UTC",
                                                 "COLUMNS": "100"})
    d.start()
    res = d.run("gflow-shell", "--transcript", TRANSCRIPTS / name, timeout=120)
    assert res.returncode == 0, f"{name} did not match:\n{res.stderr}\n{res.stdout}"
    assert res.stdout.strip() == f"ok {TRANSCRIPTS / name}"
