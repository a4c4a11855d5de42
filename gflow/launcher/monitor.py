"""The per-job monitor: runs one job in its own process group and records how it ended.

Started by the launcher as `python -m gflow.launcher.monitor <spec.json>` in a new
session, it outlives the launcher and the whole daemon: the `<id>.status` file it
writes when the job's main process ends is the truth about the job's end, read by
whichever launcher is alive then. It imports only the standard library, so it starts
fast.

The monitor is a child subreaper (PR_SET_CHILD_SUBREAPER): a process of the job whose
parent dies (a double fork, `setsid cmd &`) is re-parented to the monitor, not to
init, so the launcher finds the whole job as the monitor's descendants and a stop
leaves nothing behind. Once the main process has ended and the status is written, the
monitor stays only while such leftovers live, reaping them.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time


def write_json_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def process_start_time(pid: int) -> float | None:
    """Start time in epoch seconds, computed exactly as psutil's `create_time()` does."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime"):
                    btime = float(line.split()[1])
                    break
            else:
                return None
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def wait_for(pid: int) -> int:
    """Reap children until `pid` ends; its exit status as Popen's returncode would be.
    Orphans re-parented to us are reaped on the way (we are their subreaper)."""
    while True:
        try:
            got, wstatus = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return -signal.SIGKILL     # cannot happen: the job is our child until reaped
        if got == pid:
            return os.waitstatus_to_exitcode(wstatus)


def reap_leftovers() -> None:
    """Stay while processes the job left behind live (they are re-parented to us)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def notify(address: str | None, job_id: int) -> None:
    """Tell the launcher at once; if none is listening, it reads the status file later."""
    if not address:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(str(job_id).encode(), address.encode("latin-1"))
    except OSError:
        pass


def _ignore(_signum, _frame) -> None:
    pass


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        spec = json.load(f)
    job_id = spec["id"]
    try:
        os.environ.setdefault("SPT_NOENV", "1")    # keep /proc/<pid>/environ readable
        import setproctitle
        setproctitle.setproctitle(f"gflow-job {job_id} monitor")
    except ImportError:
        pass
    # The monitor must outlive terminals and daemons; a TERM sent to it is passed on.
    # No-op handlers, not SIG_IGN: an ignored signal stays ignored across exec, and a job
    # started with SIGINT ignored could never see its time limit's SIGINT (bash cannot
    # even trap it). Handled signals are reset to their defaults in the job.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    child: list[subprocess.Popen] = []

    def forward(signum, _frame):
        if child:
            try:
                os.killpg(child[0].pid, signum)
            except OSError:
                pass

    signal.signal(signal.SIGTERM, forward)
    become_subreaper()
    status = {"id": job_id, "exit_code": None, "signal": None, "detail": None}
    log_fd = os.open(spec["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
            stdout=log_fd, stderr=subprocess.STDOUT, process_group=0, close_fds=True)
    except OSError as exc:
        os.write(log_fd, f"gflow: could not start job {job_id}: {exc}\n".encode())
        status.update(exit_code=127, detail=f"could not start: {exc.strerror or exc}",
                      finished_at=time.time())
        write_json_atomic(spec["status_path"], status)
        notify(spec.get("notify"), job_id)
        return 0
    finally:
        os.close(log_fd)
    child.append(proc)
    write_json_atomic(spec["pid_path"], {
        "id": job_id, "monitor_pid": os.getpid(),
        "monitor_start": process_start_time(os.getpid()),
        "job_pid": proc.pid, "job_start": process_start_time(proc.pid),
        "started_at": time.time()})
    rc = wait_for(proc.pid)
    proc.returncode = rc
    if rc < 0:
        sig = -rc
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        status.update(exit_code=128 + sig, signal=sig, detail=f"killed by {name}")
    else:
        status.update(exit_code=rc)
    status["finished_at"] = time.time()
    write_json_atomic(spec["status_path"], status)
    notify(spec.get("notify"), job_id)
    reap_leftovers()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
