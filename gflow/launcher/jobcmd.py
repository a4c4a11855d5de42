"""How a job's process is started: its command line and its environment."""

from __future__ import annotations

import os
import re
from typing import Optional

from gflow.launcher import direct

PARAM_RE = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
# Variables that describe the submitter's session, not the job: never copied into it.
_SESSION_VARS = {"GFLOW_JOB_ID", "GFLOW_ARRAY_TASK_ID", "CUDA_VISIBLE_DEVICES",
                 "CUDA_DEVICE_ORDER"}


class LaunchError(Exception):
    pass


def substitute_parameters(command: str, parameters: dict) -> str:
    missing = sorted({m for m in PARAM_RE.findall(command) if m not in parameters})
    if missing:
        raise LaunchError("missing parameter values: " + ", ".join(missing))
    return PARAM_RE.sub(lambda m: parameters[m.group(1)], command)


def build_argv(spec: dict) -> list[str]:
    """How the job's process is started (shebang scripts directly, else through bash)."""
    script = spec.get("script")
    if script:
        argv = ["bash", script]
        try:
            with open(script, "rb") as f:
                shebang = f.read(2) == b"#!"
            if shebang and os.access(script, os.X_OK):
                argv = [script]
        except OSError:
            pass  # bash reports the missing file into the job's log
    else:
        command = spec.get("command") or ""
        if spec.get("parameters"):
            command = substitute_parameters(command, spec["parameters"])
        argv = ["bash", "-c", command]
    conda = spec.get("conda_env")
    if conda:
        # A failed activation fails the job loudly (0.4.13 ran it in the base env).
        activate = ('command -v "${CONDA_EXE:-conda}" >/dev/null 2>&1 '
                    '|| { echo "gflow: conda not found (--conda-env $1)" >&2; exit 127; }; '
                    'eval "$("${CONDA_EXE:-conda}" shell.bash hook 2>/dev/null)" '
                    '&& conda activate "$1" '
                    '|| { echo "gflow: conda activate $1 failed" >&2; exit 127; }; '
                    'shift; exec "$@"')
        argv = ["bash", "-c", activate, "gflow-conda", conda] + argv
    return argv


def build_env(spec: dict, base: dict) -> dict:
    env = dict(spec["env"]) if spec.get("env") is not None else dict(base)
    for key in _SESSION_VARS:
        env.pop(key, None)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.get("gpu_ids") or ())
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["GFLOW_ARRAY_TASK_ID"] = str(spec.get("task_id") or 0)
    env["GFLOW_JOB_ID"] = str(spec["id"])
    return env


def direct_words(argv: list) -> Optional[list]:
    """The words to exec without `bash -c` when `argv` runs one plain command through it
    (direct.py; the monitor still decides), else None."""
    if len(argv) == 3 and argv[:2] == ["bash", "-c"]:
        return direct.plain_words(argv[2])
    return None
