"""The executor seam: the one interface between the scheduler and what runs its jobs, this machine's monitors (`local`) or a Slurm cluster (`slurm`).

An executor is the launcher worker's object for `[executor] kind`. The scheduler sends
it commands and it answers with reports, over the launcher's channel, the same for every
kind; nothing else in gflow knows which kind runs.

Commands (scheduler -> executor):
  ("start", spec)                 local: start the job the pass placed on spec["gpu_ids"]
  ("submit", [spec, ...])         slurm: hand these queued jobs over (spec["slurm_deps"])
  ("adopt", [spec, ...])          after a (re)connect: every job that should be live
  ("signal", id, SIGNAME, grace)  stop a running job: the signal, a kill after `grace`
  ("forward", id, SIGNAME)        pass a signal on (gjob attach's Ctrl-C)
  ("tree_signal", id, SIGNAME)    SIGSTOP / SIGCONT for gjob suspend / resume
  ("cancel", id)                  slurm: a handed-over job cancelled before it ran
  ("hold", id) / ("release", id)  slurm: gjob hold / release of a handed-over job
  ("forget", id)                  its end is recorded: drop it
Reports (executor -> scheduler):
  ("exited", id, info)            it ended: exit_code, signal, finished_at, detail,
                                  and `state` (Timeout, Cancelled) where Slurm ended it
  ("submitted", id, key)          slurm: its Slurm id (journalled: a restart re-attaches)
  ("started", id, info)           slurm: it runs (gpu_ids, started_at)
  ("refused", id, detail)         slurm: sbatch refused it
  ("slurm_waiting", {id: reason}) slurm: why handed-over jobs still wait there
  ("executor", health)            slurm: {"kind", "ok", "detail"}: can it reach Slurm
"""

from __future__ import annotations

from typing import Any, Protocol

KINDS = ("local", "slurm")


class Executor(Protocol):
    channel: Any                          # the launcher's HubClient, set after creation
    description: str                      # one line for gflowd.log at start

    def on_message(self, msg) -> None:    # a command (on the channel's thread)
        ...

    def run_once(self) -> None:           # carry out what is due; report what happened
        ...

    def wait(self, timeout: float, stop) -> None:   # until the next run_once (or stop)
        ...

    def close(self) -> None:
        ...


def open_executor(ctx, local_factory) -> Executor:
    """The executor `[executor] kind` names; `local_factory(ctx)` makes the local one
    (it lives in service.py with the monitors it starts)."""
    kind = ctx.config.executor.kind
    if kind == "slurm":
        from gflow.launcher.jobcmd import build_argv, build_env
        from gflow.launcher.slurm.executor import SlurmExecutor, instance_name
        return SlurmExecutor(ctx.paths, ctx.config,
                             instance=instance_name(ctx.paths.data_dir),
                             build_argv=build_argv, build_env=build_env)
    if kind != "local":
        raise ValueError(f"unknown executor kind {kind!r} (known: {', '.join(KINDS)})")
    return local_factory(ctx)
