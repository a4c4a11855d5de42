"""A finished job's monitor is reaped at once, not left <defunct> until the next job starts."""

from __future__ import annotations

import psutil

from conftest import wait_for


def zombies(d) -> list:
    master = psutil.Process(d.master_pid())
    out = []
    for proc in master.children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except psutil.Error:
            continue
    return out


def test_finished_monitors_do_not_stay_defunct(daemon):
    daemon.ok("gbatch", "true")
    daemon.ok("gbatch", "bash", "-c", "exit 3")
    daemon.wait_state(1, "Finished")
    daemon.wait_state(2, "Failed")
    # Nothing else starts afterwards: only the launcher's own checks can reap them.
    wait_for(lambda: not zombies(daemon), timeout=10, what="no <defunct> monitor")
