"""Finding every process of a job whose monitor is gone, so that none outlives its report."""

from __future__ import annotations

import os
import signal
from typing import Optional

import psutil

# What a job's environment must match to be taken for it (see `scan`): the launcher
# sets all four, and another daemon's job with the same id differs in at least one.
FINGERPRINT_KEYS = ("GFLOW_JOB_ID", "GFLOW_ARRAY_TASK_ID", "CUDA_VISIBLE_DEVICES", "HOME")


def scan(found: dict, *, since: float, session: Optional[int], uid: Optional[int],
         env: Optional[dict]) -> dict:
    """Add to `found` (pid -> psutil.Process) every process started since `since` that
    is in the monitor's `session` (the job runs in it unless it called setsid) or whose
    environment carries the job's fingerprint (`env`, FINGERPRINT_KEYS) under the job's
    `uid`; then every descendant of all of them. Returns `found`."""
    me = os.getpid()
    for proc in psutil.process_iter(["create_time"]):
        pid = proc.pid
        created = proc.info.get("create_time")
        if pid in found or pid == me or created is None or created < since:
            continue
        try:
            if session and os.getsid(pid) == session:
                found[pid] = proc
                continue
        except OSError:
            continue
        if env is not None and uid is not None and environment_matches(proc, uid, env):
            found[pid] = proc
    for proc in list(found.values()):
        try:
            for child in proc.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            pass
    found.pop(me, None)
    return found


def environment_matches(proc, uid: int, expected: dict) -> bool:
    try:
        if proc.uids().real != uid:
            return False
        env = proc.environ()
    except (psutil.Error, OSError):
        return False
    return all(env.get(k) == expected.get(k) for k in FINGERPRINT_KEYS)


def still_running(procs) -> list:
    """Those not yet gone; a zombie counts as gone (it holds no memory and no GPU, and
    its reaper may be an init that never reaps)."""
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.Error:
            pass
    return left


def in_group(pgid: int, procs) -> bool:
    """Whether one of `procs` (psutil.Process: safe against pid reuse) is in process
    group `pgid`. While one is, the kernel cannot hand the id to a new group, so a
    killpg(pgid) reaches only the job."""
    for proc in procs:
        try:
            if proc.is_running() and os.getpgid(proc.pid) == pgid:
                return True
        except (psutil.Error, OSError):
            pass
    return False


def kill(procs) -> None:
    for proc in procs:
        try:
            proc.kill()          # psutil refuses if the pid now names another process
        except psutil.Error:
            pass


def vanished_detail(monitor_returncode: Optional[int], found: int, left: list) -> str:
    """The job's reason detail: the monitor's end (if we were its parent) and its processes'."""
    how = ""
    if monitor_returncode is not None and monitor_returncode < 0:
        try:
            how = f" (killed by {signal.Signals(-monitor_returncode).name})"
        except ValueError:
            how = f" (killed by signal {-monitor_returncode})"
    detail = f"the job's monitor vanished{how} without recording an exit status"
    if left:
        return detail + ("; processes " + ", ".join(str(p.pid) for p in left)
                         + " of the job could not be killed")
    if found:
        return detail + "; the job's processes were killed"
    return detail
