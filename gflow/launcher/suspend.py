"""`gjob suspend` / `resume`: SIGSTOP or SIGCONT to every process of a job's tree (never its monitor)."""

from __future__ import annotations

import logging
import os
import signal

import psutil

log = logging.getLogger("gflow.launcher")


def signal_tree(launcher, job_id: int, signame: str) -> None:
    """The group first (one call, nothing forks past it), then each process the launcher
    finds in the tree: children that left the group or session are stopped too."""
    tracked = launcher.jobs.get(job_id)
    if tracked is None or (tracked.job_pid is None
                           and not launcher._load_pidfile(job_id, tracked)):
        log.warning("job %d: no process to %s", job_id, signame)
        return
    sig = getattr(signal, signame)
    try:
        os.killpg(tracked.job_pid, sig)
    except OSError:
        pass                            # the group may be gone; its members are below
    count = 0
    for proc in launcher.job_processes(tracked):
        try:
            proc.send_signal(sig)
            count += 1
        except psutil.Error:
            pass
    log.info("job %d sent %s to %d process(es)", job_id, signame, count)
