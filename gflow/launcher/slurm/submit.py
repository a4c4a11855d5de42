"""How gflow jobs become one `sbatch` call: its arguments, its environment and the batch script it reads on stdin."""

from __future__ import annotations

import math
import shlex
from typing import Optional

# The comment every gflow-submitted Slurm job carries: `gflow:<instance>:<id>@<attempt>,…`
# (one entry per array task, in task order), so that a restarted gflowd finds what it
# had submitted even when it died between sbatch's answer and its journal.
COMMENT_PREFIX = "gflow:"
# Set by the job's own environment at submit time; never copied from the submitter's.
_DROP = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "GPU_DEVICE_ORDINAL",
         "ROCR_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_ARRAY_JOB_ID",
         "SLURM_ARRAY_TASK_ID")


def comment(instance: str, specs: list) -> str:
    return COMMENT_PREFIX + instance + ":" + ",".join(
        f"{s['id']}@{s.get('attempt', 1)}" for s in specs)


def parse_comment(text: str, instance: str) -> list[tuple[int, int]]:
    """[(gflow id, attempt), …] of a comment this instance wrote; [] for any other."""
    head = COMMENT_PREFIX + instance + ":"
    if not text.startswith(head):
        return []
    out = []
    for part in text[len(head):].split(","):
        jid, _, attempt = part.partition("@")
        try:
            out.append((int(jid), int(attempt or 1)))
        except ValueError:
            return []
    return out


def dependency_arg(deps: dict) -> Optional[str]:
    """`--dependency` from the scheduler's mapping: {"conds": [[cond, slurm key], …],
    "any": bool}; afterok:1,afterany:2 (all) or afterok:1?afterany:2 (any)."""
    conds = deps.get("conds") or []
    if not conds:
        return None
    return ("?" if deps.get("any") else ",").join(f"{c}:{k}" for c, k in conds)


def time_arg(seconds: Optional[float]) -> Optional[str]:
    """Slurm counts whole minutes: a limit is rounded up (gflow still stops the job at
    its exact limit; Slurm's is the backstop should gflowd be down)."""
    if seconds is None:
        return None
    return str(max(1, math.ceil(seconds / 60.0)))


def sbatch_argv(specs: list, cfg, *, instance: str, log_path) -> list[str]:
    """The sbatch arguments for one job, or for the tasks of one array (same group,
    handed over together) as `--array=0-N%limit`."""
    first = specs[0]
    argv = [cfg.sbatch, "--parsable", "--kill-on-invalid-dep=yes", "--export=ALL",
            "--job-name=" + (first.get("run_name") or f"gflow-{first['id']}"),
            "--comment=" + comment(instance, specs),
            "--chdir=" + (first.get("run_dir") or "/")]
    if len(specs) > 1:
        limit = first.get("max_concurrent")
        argv.append(f"--array=0-{len(specs) - 1}" + (f"%{limit}" if limit else ""))
        argv.append("--output=/dev/null")     # each task appends to its own gflow log
    else:
        argv += ["--output=" + str(log_path(first["id"])),
                 "--error=" + str(log_path(first["id"])), "--open-mode=append"]
    if first.get("gpus"):
        argv.append(f"--gres=gpu:{int(first['gpus'])}")
    if first.get("memory_limit_mb"):
        argv.append(f"--mem={int(first['memory_limit_mb'])}M")
    limit = time_arg(first.get("time_limit"))
    if limit:
        argv.append("--time=" + limit)
    dep = dependency_arg(first.get("slurm_deps") or {})
    if dep:
        argv.append("--dependency=" + dep)
    if cfg.partition:
        argv.append("--partition=" + cfg.partition)
    if cfg.account:
        argv.append("--account=" + cfg.account)
    argv.extend(cfg.extra_args)
    return argv


def environment(env: dict) -> dict:
    """sbatch's environment, which `--export=ALL` hands to the job: the submitter's,
    without what Slurm sets per job (the GPUs it places the job on, above all)."""
    return {k: v for k, v in env.items() if k not in _DROP}


def _task_lines(spec: dict, argv: list, log_path, redirect: bool) -> list[str]:
    lines = []
    if redirect:
        lines.append(f"exec >>{shlex.quote(str(log_path(spec['id'])))} 2>&1")
    lines.append(f"export GFLOW_JOB_ID={int(spec['id'])} "
                 f"GFLOW_ARRAY_TASK_ID={int(spec.get('task_id') or 0)}")
    umask = spec.get("umask")
    if isinstance(umask, int):
        lines.append(f"umask {umask:04o}")
    lines.append(f"cd -- {shlex.quote(spec.get('run_dir') or '/')} || exit 1")
    lines.append("exec " + shlex.join(argv))
    return lines


def batch_script(specs: list, argvs: list, log_path) -> str:
    """The script sbatch reads on stdin. One job: its command. An array: a `case` on
    SLURM_ARRAY_TASK_ID, each task its own gflow job id, log and command."""
    out = ["#!/bin/bash", "# written by gflowd: " + ", ".join(
        f"gflow job {s['id']}" for s in specs)]
    if len(specs) == 1:
        out += _task_lines(specs[0], argvs[0], log_path, redirect=False)
    else:
        out.append('case "${SLURM_ARRAY_TASK_ID:-}" in')
        for i, (spec, argv) in enumerate(zip(specs, argvs)):
            out.append(f"{i})")
            out += ["    " + line for line in _task_lines(spec, argv, log_path, redirect=True)]
            out.append("    ;;")
        out += ["*) echo \"gflow: unknown array task ${SLURM_ARRAY_TASK_ID:-}\" >&2; exit 1;;",
                "esac"]
    return "\n".join(out) + "\n"
