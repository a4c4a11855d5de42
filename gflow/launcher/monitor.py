"""The per-job monitor: runs one job in its own process group and records how it ended."""

# Started by the launcher as `python -m gflow.launcher.monitor <spec.json>` in a new
# session (or, the same in effect and ~30 ms sooner, forked by the launcher's
# pre-imported zygote, zygote.py, which then calls `main`), it outlives the launcher and
# the whole daemon: the `<id>.status` file it writes when the job's main process ends is
# the truth about the job's end, read by whichever launcher is alive then. It imports
# only the standard library (and gflow's stdlib-only helpers beside it), so it starts fast.
#
# The monitor is a child subreaper (PR_SET_CHILD_SUBREAPER): a process of the job whose
# parent dies (a double fork, `setsid cmd &`) is re-parented to the monitor, not to
# init, so the launcher finds the whole job as the monitor's descendants and a stop
# leaves nothing behind. Once the main process has ended and the status is written, the
# monitor stays only while such leftovers live, reaping them.
#
# A job run as another account (`run_as_user`, root daemon only): the monitor stays root,
# so the job can neither kill it nor forge its status file; only the job's child drops
# privileges before exec (see gflow.launcher.runas), as Slurm's slurmstepd does.

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from gflow.launcher import cgroup, direct, runas, safefs
from gflow.launcher.safefs import write_json_atomic


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
    data = str(job_id).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            if address.startswith("\0"):
                s.sendto(data, address.encode("latin-1"))
            elif len(os.fsencode(address)) < 108:
                s.sendto(data, address)
            else:
                from gflow.identity import reachable  # only for a path too long for sun_path
                with reachable(address) as where:
                    s.sendto(data, where)
    except OSError:
        pass


def _ignore(_signum, _frame) -> None:
    pass


def _say(fd: int, line: str) -> None:
    try:
        os.write(fd, (line + "\n").encode())
    except OSError:
        pass


def enter_job_cgroup(spec: dict) -> tuple:
    """(the job's cgroup, the cgroup to come back to), with this monitor inside the job's
    for the moment of the fork, so that the job starts in it; (None, None) when there is
    none or it cannot be set up (the launcher then samples the job's memory)."""
    base = spec.get("cgroup_base")
    if not base:
        return None, None
    path = None
    try:
        home = cgroup.own_cgroup(os.path.dirname(base))
        if home is None:
            return None, None
        path = cgroup.create_job_cgroup(base, spec["id"], spec.get("memory_limit_mb"),
                                        spec.get("pids_max") or cgroup.PIDS_MAX)
        cgroup.enter(path)
        return path, home
    except OSError:
        if path is not None:
            cgroup.remove(path)
        return None, None


def leave_job_cgroup(home: str | None) -> None:
    # The monitor must not stay in the job's cgroup: it would share the job's memory
    # limit, and memory.oom.group would kill it with the job.
    if home is not None:
        try:
            cgroup.enter(home)
        except OSError:
            pass


_prepared = False


def prepare(warm: bool = False) -> None:
    """What a monitor sets up before it knows its job (the zygote's spare does it ahead,
    `warm`: see warm_up)."""
    global _prepared
    # The monitor must outlive terminals and daemons. No-op handlers, not SIG_IGN: an
    # ignored signal stays ignored across exec, and a job started with SIGINT ignored
    # could never see its time limit's SIGINT (bash cannot even trap it). Handled
    # signals are reset to their defaults in the job.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    become_subreaper()
    _prepared = True
    if warm:
        warm_up()


def warm_up() -> None:
    """The first Popen in a process forked from a big one costs ~0.6 ms more than the
    next (the pages it writes are copied on write): a spare monitor pays that while it
    waits for a job, with a command that cannot start (no file, no process)."""
    try:
        subprocess.Popen(["/dev/null/gflow-warm-up"], cwd="/", env={}, umask=0o077,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.STDOUT, process_group=0, close_fds=True)
    except (OSError, subprocess.SubprocessError):
        pass


def start_job(spec: dict, options: dict, account) -> subprocess.Popen:
    """The job's process: a plain command without the `bash -c` around it (direct.py),
    exactly as that bash would have exec'd it; anything else through `spec["argv"]`."""
    words = spec.get("direct")
    if words and account is None:
        ready = direct.prepare(words, options["env"], spec["cwd"])
        if ready is not None:
            try:
                return subprocess.Popen(words, executable=ready[0], **dict(options, env=ready[1]))
            except OSError:
                pass            # bash runs it, or says why not, as it always did
    return subprocess.Popen(spec["argv"], **options)


def main(argv: list[str]) -> int:
    spec = safefs.read_json(argv[1])
    if not isinstance(spec, dict):
        print(f"gflow monitor: cannot read the job spec {argv[1]}", file=sys.stderr)
        return 2
    job_id = spec["id"]
    try:
        os.environ.setdefault("SPT_NOENV", "1")    # keep /proc/<pid>/environ readable
        import setproctitle
        setproctitle.setproctitle(f"gflow-job {job_id} monitor")
    except ImportError:
        pass
    if not _prepared:
        prepare()
    child: list[subprocess.Popen] = []

    def forward(signum, _frame):
        if child:
            try:
                os.killpg(child[0].pid, signum)
            except OSError:
                pass

    signal.signal(signal.SIGTERM, forward)     # a TERM sent to the monitor is passed on
    status = {"id": job_id, "exit_code": None, "signal": None, "detail": None}

    def finish(**fields) -> int:
        status.update(fields, finished_at=time.time())
        # The launcher is told once the status is in place, before its fsyncs: what it
        # reports is made durable by the scheduler's journal before anything acts on
        # it; a power loss before the fsyncs end can only lose a status nobody saw, and
        # the job is then reported as vanished, as if it had died a moment sooner.
        write_json_atomic(spec["status_path"], status,
                          before_sync=lambda: notify(spec.get("notify"), job_id))
        return 0

    try:
        account = runas.target_account(spec.get("run_as_user"))
        refused = None
    except runas.Refused as exc:
        account, refused = None, str(exc)
    try:
        log_fd = safefs.open_job_log(spec["log_path"],
                                     group=account.pw_gid if account else None)
    except safefs.UnsafeFile as exc:
        return finish(detail=str(exc))
    except OSError as exc:
        return finish(detail=f"could not open the job's log {spec['log_path']}: "
                             f"{exc.strerror or exc}")
    if refused:
        _say(log_fd, f"gflow: job {job_id} not started: {refused}")
        os.close(log_fd)
        return finish(detail=refused)

    options: dict = dict(cwd=spec["cwd"], env=runas.job_environment(spec["env"], account),
                         stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                         process_group=0, close_fds=True)
    if isinstance(spec.get("umask"), int):
        options["umask"] = spec["umask"]
    errors_r = errors_w = None
    if account is not None:
        errors_r, errors_w = os.pipe()
        options.update(runas.popen_identity(account, spec["cwd"], errors_w))
    job_cgroup, home_cgroup = enter_job_cgroup(spec)
    try:
        proc = start_job(spec, options, account)
    except (OSError, subprocess.SubprocessError) as exc:
        leave_job_cgroup(home_cgroup)
        home_cgroup = None
        if job_cgroup:
            cgroup.remove(job_cgroup)
        if errors_w is not None:
            os.close(errors_w)
            errors_w = None
        reason = os.read(errors_r, 256).decode(errors="replace") if errors_r is not None else ""
        if isinstance(exc, subprocess.SubprocessError) and reason:
            # Only the preexec chdir reports through the pipe: the run directory.
            detail = (f"cannot enter the run directory {spec['cwd']} as "
                      f"{account.pw_name}: {reason}")
            _say(log_fd, f"gflow: job {job_id} not started: {detail}")
            return finish(detail=detail)
        _say(log_fd, f"gflow: could not start job {job_id}: {exc}")
        return finish(exit_code=127,
                      detail=f"could not start: {getattr(exc, 'strerror', None) or exc}")
    finally:
        leave_job_cgroup(home_cgroup)
        os.close(log_fd)
        for fd in (errors_r, errors_w):
            if fd is not None:
                os.close(fd)
    child.append(proc)
    # Not fsynced: it names processes, and none survives a power loss. Written before
    # the wait, so a short job's end waits for it: a fsync here delayed every end.
    write_json_atomic(spec["pid_path"], {
        "id": job_id, "monitor_pid": os.getpid(),
        "monitor_start": process_start_time(os.getpid()),
        "job_pid": proc.pid, "job_start": process_start_time(proc.pid),
        "started_at": time.time(), "cgroup": job_cgroup,
        "uid": account.pw_uid if account else os.geteuid()}, durable=False)
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
    if job_cgroup and spec.get("memory_limit_mb") and cgroup.oom_kills(job_cgroup):
        status["detail"] = cgroup.oom_detail(spec["memory_limit_mb"])
    finish()
    reap_leftovers()
    if job_cgroup:
        cgroup.remove(job_cgroup)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
