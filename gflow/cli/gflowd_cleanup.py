"""`gflowd --cleanup`: remove the bookkeeping files of finished jobs whose processes are gone (job logs, state and configuration are kept)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Optional

from gflow.cli.common import CommandError
from gflow.client import Client, ConnectionFailed

FINAL_STATES = ("Finished", "Failed", "Cancelled", "Timeout")
# A job's files stay this long after it ended: the launcher may not have read its status yet.
CLEANUP_MIN_AGE_SECS = 60.0
_BOOKKEEPING = re.compile(r"^([0-9]+)\.(?:spec\.json|pid|status)(?:\.tmp(?:\..*)?)?$")


def _epoch(value) -> Optional[float]:
    if isinstance(value, dict) and "secs_since_epoch" in value:
        return value["secs_since_epoch"] + value.get("nanos_since_epoch", 0) / 1e9
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _process_alive(pid, started) -> bool:
    import psutil
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if started is not None and abs(proc.create_time() - float(started)) > 1.0:
            return False            # the pid was reused by someone else
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, TypeError):
        return False


def _job_process_alive(pidfile) -> bool:
    try:
        with open(pidfile) as f:
            info = json.load(f)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True                 # unreadable: keep it, to be safe
    return (_process_alive(info.get("monitor_pid"), info.get("monitor_start"))
            or _process_alive(info.get("job_pid"), info.get("job_start")))


def cleanup(config, now: Optional[float] = None) -> tuple[int, int]:
    """Remove `<id>.spec.json`, `<id>.pid`, `<id>.status` (and their temp files) of jobs
    the running daemon reports final for over a minute, whose monitor and job processes
    are gone. The job logs (`<id>.log`) stay: `gjob log` reads them. Files of jobs the
    daemon does not report final (running, queued, or ended while it was down and not
    yet collected) are never touched. Returns (jobs, files) removed."""
    from gflow.cli.gflowd import paths, running_pid
    p = paths()
    if running_pid(p.lock_file) is None:
        raise CommandError("gflowd --cleanup: gflowd is not running; it must tell which jobs "
                           "are finished: start it with `gflowd up`")
    client = Client.from_config(config, timeout=120)
    try:
        jobs = client.list_jobs(states=list(FINAL_STATES))
    finally:
        client.close()
    now = time.time() if now is None else now
    done = set()
    for job in jobs or ():
        finished = _epoch(job.get("finished_at"))
        if (job.get("state") in FINAL_STATES and finished is not None
                and now - finished >= CLEANUP_MIN_AGE_SECS):
            done.add(int(job["id"]))
    by_job: dict[int, list[str]] = {}
    try:
        names = os.listdir(p.logs_dir)
    except FileNotFoundError:
        names = []
    for name in names:
        m = _BOOKKEEPING.match(name)
        if m and int(m.group(1)) in done:
            by_job.setdefault(int(m.group(1)), []).append(name)
    jobs_removed = files_removed = 0
    for job_id, files in sorted(by_job.items()):
        if _job_process_alive(p.logs_dir / f"{job_id}.pid"):
            continue
        removed = 0
        for name in files:
            try:
                os.unlink(p.logs_dir / name)
                removed += 1
            except FileNotFoundError:
                pass
        if removed:
            jobs_removed += 1
            files_removed += removed
    return jobs_removed, files_removed


def cmd_cleanup(args, *, alone: bool) -> int:
    from gflow.cli.gflowd import load
    try:
        config = load(args)
        jobs, files = cleanup(config)
    except (CommandError, ConnectionFailed) as exc:
        if alone:
            raise
        print(f"Cleanup skipped: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 0
    if files:
        print(f"Cleanup: removed {files} file(s) of {jobs} finished job(s); their logs are kept.")
    else:
        print("Cleanup: nothing to remove.")
    return 0
