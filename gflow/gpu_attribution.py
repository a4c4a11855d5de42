"""Who holds a GPU: each GPU process's owner, command and age, and the gflow job whose process tree it belongs to."""

# A job's monitor is a child subreaper (launcher/monitor.py): every process of the job,
# even one that double-forked or called setsid, has the monitor among its ancestors.
# So a GPU process belongs to job N exactly when job N's monitor (pid and start time,
# from the job's pid file, so a reused pid cannot fool it) is the process itself or one
# of its ancestors. Anything else is foreign: another user's server, a stray process
# of a job that has ended, or a process in another PID namespace that we cannot see.

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import psutil

# Commands are shown in one table cell and sent in webhooks: long ones are cut.
MAX_COMMAND_CHARS = 200
# psutil's create_time and the monitor's own reading of /proc may differ by a tick.
_START_SLACK = 1.0


@dataclass(frozen=True)
class ProcFacts:
    """What the process table says about one pid (None fields: not readable)."""

    pid: int
    user: Optional[str] = None
    command: Optional[str] = None
    started_at: Optional[float] = None
    ancestors: tuple = ()           # ((pid, create_time), ...), parent first


@dataclass(frozen=True)
class JobProcess:
    """The processes that identify one live job: its monitor and its main process."""

    job_id: int
    monitor_pid: Optional[int] = None
    monitor_start: Optional[float] = None
    job_pid: Optional[int] = None
    job_start: Optional[float] = None


def _same_start(a: Optional[float], b: Optional[float]) -> bool:
    return a is None or b is None or abs(a - b) <= _START_SLACK


def job_of(facts: ProcFacts, jobs: list[JobProcess]) -> Optional[int]:
    """The job whose tree holds this process (pure: tests give made-up facts)."""
    chain = ((facts.pid, facts.started_at),) + tuple(facts.ancestors)
    for job in jobs:
        for pid, started in chain:
            if job.monitor_pid is not None and pid == job.monitor_pid \
                    and _same_start(started, job.monitor_start):
                return job.job_id
            if job.job_pid is not None and pid == job.job_pid \
                    and _same_start(started, job.job_start):
                return job.job_id
    return None


def read_job_process(job_id: int, pidfile) -> Optional[JobProcess]:
    """The monitor's pid file of a job (None until the monitor has written it)."""
    try:
        with open(pidfile, "rb") as f:
            info = json.loads(f.read(65536))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None

    def num(key):
        value = info.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else None
    return JobProcess(job_id, num("monitor_pid"), num("monitor_start"), num("job_pid"),
                      num("job_start"))


class ProcessLookup:
    """psutil lookups, cached per (pid, start time) between polls; tests replace it."""

    def __init__(self):
        self._cache: dict[int, ProcFacts] = {}

    def facts(self, pid: int) -> Optional[ProcFacts]:
        """None when this pid is not in our process table (another PID namespace)."""
        try:
            proc = psutil.Process(pid)
            started = proc.create_time()
        except (psutil.Error, OSError, ValueError):
            self._cache.pop(pid, None)
            return None
        cached = self._cache.get(pid)
        if cached is not None and cached.started_at == started:
            return cached
        facts = ProcFacts(pid, _user(proc), _command(proc), started, _ancestors(proc))
        self._cache[pid] = facts
        return facts

    def alive(self, pid: int, started_at: Optional[float]) -> bool:
        """Whether that very process (not a later one with its pid) still runs."""
        try:
            proc = psutil.Process(pid)
            if started_at is not None and not _same_start(proc.create_time(), started_at):
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.Error, OSError, ValueError):
            return False

    def keep_only(self, pids) -> None:
        """Forget what is no longer on a GPU, so the cache stays as small as the table."""
        keep = set(pids)
        for pid in [p for p in self._cache if p not in keep]:
            del self._cache[pid]


def _user(proc) -> Optional[str]:
    try:
        return proc.username()
    except KeyError:                 # a uid without an account name
        try:
            return str(proc.uids().real)
        except (psutil.Error, OSError):
            return None
    except (psutil.Error, OSError):
        return None


def _command(proc) -> Optional[str]:
    try:
        argv = proc.cmdline()
    except (psutil.Error, OSError):
        argv = []
    if argv:
        # A python or bash launcher says little: "python serve.py" is what people know.
        text = " ".join([os.path.basename(argv[0])] + list(argv[1:]))
    else:
        try:
            text = proc.name()
        except (psutil.Error, OSError):
            return None
    return text if len(text) <= MAX_COMMAND_CHARS else text[:MAX_COMMAND_CHARS - 3] + "..."


def _ancestors(proc) -> tuple:
    out = []
    try:
        for parent in proc.parents():
            try:
                out.append((parent.pid, parent.create_time()))
            except (psutil.Error, OSError):
                out.append((parent.pid, None))
    except (psutil.Error, OSError):
        pass
    return tuple(out)
