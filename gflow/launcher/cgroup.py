"""Per-job cgroup v2 limits (memory.max, pids.max), where the kernel and our privileges allow."""

# Why: sampling a job's RSS every few seconds (the fallback) misses short peaks and
# memory that belongs to no process (/dev/shm, tmpfs); the kernel's own limit misses
# nothing and counts its kills in `memory.events`. Layout:
# `<root>/gflow/<daemon>/gflow-job-<id>` (`<daemon>` names one data dir, so two daemons'
# job 1 never share a cgroup), created by the job's monitor (root) before it starts the
# job. Stdlib only: the monitor imports it.

from __future__ import annotations

import errno
import hashlib
import os
import signal
import time

CGROUP_ROOT = "/sys/fs/cgroup"
BASE_NAME = "gflow"
CONTROLLERS = ("memory", "pids")
PIDS_MAX = 4096

# What this process decided (the launcher probes once; see memory_enforcement).
_detected: dict[tuple, str | None] = {}


def instance_name(data_dir) -> str:
    """The cgroup of one daemon's jobs, named after its data dir."""
    return "gflowd-" + hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    # Unbuffered, one write(): a cgroup file takes each write() as one command.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def own_cgroup(root: str = CGROUP_ROOT, pid: str = "self") -> str | None:
    """The directory of `pid`'s cgroup in the v2 hierarchy mounted at `root`."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    rel = line[3:].strip().removesuffix(" (deleted)")
                    return os.path.join(root, rel.lstrip("/")).rstrip("/") or root
    except OSError:
        return None
    return None


def _enable(cgroup: str) -> None:
    """Make memory and pids available to `cgroup`'s children."""
    enabled = _read(os.path.join(cgroup, "cgroup.subtree_control")).split()
    missing = [c for c in CONTROLLERS if c not in enabled]
    if missing:
        _write(os.path.join(cgroup, "cgroup.subtree_control"),
               " ".join("+" + c for c in missing))


def _probe(base: str) -> None:
    """Everything a monitor will do, once, on a throwaway cgroup: create it, set its
    limits, move a process into it, remove it. Raises OSError where that fails."""
    import subprocess
    path = os.path.join(base, f"gflow-probe-{os.getpid()}")
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    try:
        for name in ("memory.max", "memory.events", "pids.max", "cgroup.procs"):
            if not os.path.exists(os.path.join(path, name)):
                raise FileNotFoundError(2, "controller file missing", name)
        _write(os.path.join(path, "memory.max"), "max")
        _write(os.path.join(path, "pids.max"), str(PIDS_MAX))
        child = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _write(os.path.join(path, "cgroup.procs"), str(child.pid))
        finally:
            child.kill()
            child.wait()
    finally:
        remove(path)


def find_base(root: str = CGROUP_ROOT, instance: str | None = None) -> str | None:
    """`<root>/gflow[/<instance>]`, ready to hold job cgroups with the memory and pids
    controllers, or None where cgroup v2 is not usable: not mounted at `root` (cgroup v1
    or hybrid), controllers missing, no permission (not root, nothing delegated), or the
    root cannot enable them (a container whose cgroup root holds processes)."""
    if not os.path.exists(os.path.join(root, "cgroup.controllers")):
        return None
    try:
        available = _read(os.path.join(root, "cgroup.controllers")).split()
        if any(c not in available for c in CONTROLLERS):
            return None
        _enable(root)
        base = root
        for name in (BASE_NAME, instance) if instance else (BASE_NAME,):
            base = os.path.join(base, name)
            try:
                os.mkdir(base, 0o755)
            except FileExistsError:
                pass
            _enable(base)
        _probe(base)
        return base
    except OSError:
        return None


def detect(root: str = CGROUP_ROOT, instance: str | None = None) -> str | None:
    """find_base once per process (the launcher calls it at start-up)."""
    if (root, instance) not in _detected:
        _detected[(root, instance)] = find_base(root, instance)
    return _detected[(root, instance)]


def memory_enforcement(root: str = CGROUP_ROOT) -> str:
    """"cgroup" when jobs get a kernel memory limit, "sampling" when the launcher
    samples their RSS (`[launcher] memory_poll_secs`). In the launcher this is what it
    decided at start-up; in another process (e.g. for `gflowd status`) a side-effect-free
    check of what the launcher set up: the gflow cgroup with both controllers enabled
    and writable by us."""
    mine = [base for (r, _i), base in _detected.items() if r == root]
    if mine:
        return "cgroup" if any(mine) else "sampling"
    base = os.path.join(root, BASE_NAME)
    try:
        enabled = _read(os.path.join(base, "cgroup.subtree_control")).split()
    except OSError:
        return "sampling"
    if all(c in enabled for c in CONTROLLERS) and os.access(base, os.W_OK):
        return "cgroup"
    return "sampling"


# --- one job's cgroup (used by its monitor, and by the launcher to find and kill) -----

def job_cgroup_path(base: str, job_id: int) -> str:
    return os.path.join(base, f"gflow-job-{int(job_id)}")


def create_job_cgroup(base: str, job_id: int, memory_limit_mb=None,
                      pids_max: int = PIDS_MAX) -> str:
    path = job_cgroup_path(base, job_id)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass        # a monitor of this job that died before removing it
    if memory_limit_mb:
        _write(os.path.join(path, "memory.max"), str(int(memory_limit_mb) * 1024 * 1024))
        # Swap would let a job far over its limit crawl on instead of being stopped.
        if os.path.exists(os.path.join(path, "memory.swap.max")):
            _write(os.path.join(path, "memory.swap.max"), "0")
        # The whole job dies together, as it does when sampling finds it over the limit.
        if os.path.exists(os.path.join(path, "memory.oom.group")):
            _write(os.path.join(path, "memory.oom.group"), "1")
    _write(os.path.join(path, "pids.max"), str(int(pids_max)))
    return path


def enter(path: str, pid: int | None = None) -> None:
    """Move `pid` (default: this process, with all its threads) into the cgroup."""
    _write(os.path.join(path, "cgroup.procs"), str(pid or os.getpid()))


def processes(path: str) -> list[int]:
    try:
        return [int(x) for x in _read(os.path.join(path, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return []


def oom_kills(path: str) -> int:
    """How many processes the kernel killed for the cgroup's memory.max."""
    try:
        text = _read(os.path.join(path, "memory.events"))
    except OSError:
        return 0
    counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
    try:
        return max(int(counts.get("oom_kill", 0)), int(counts.get("oom_group_kill", 0)))
    except ValueError:
        return 0


def oom_detail(limit_mb) -> str:
    """Worded as the sampling launcher words it ("killed: memory ... over the ... limit")."""
    return f"killed: memory over the {limit_mb} MB limit (out of memory in its cgroup)"


def kill_all(path: str) -> None:
    """SIGKILL every process in the cgroup: cgroup.kill (Linux 5.14+) takes even those
    forking meanwhile; else each listed pid."""
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")
        return
    except OSError:
        pass
    for pid in processes(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def remove(path: str, wait: float = 1.0) -> bool:
    """Remove an empty job cgroup. The kernel refuses (EBUSY) while a process is in it,
    and for a moment after the last one was reaped: retried for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
