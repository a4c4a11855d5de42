"""The monitor fork server (gflow.launcher.zygote): spawning, reaping, its death and the
launcher's fallback to starting monitors as new interpreters."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from gflow.launcher import zygote
from gflow.launcher.service import Tracked
from launcher_helpers import make_launcher, paths_in


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def write_spec(tmp_path, job_id: int, argv: list) -> tuple[str, object]:
    p = paths_in(tmp_path)
    spec = {"id": job_id, "argv": argv, "cwd": str(tmp_path),
            "env": {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, "notify": None,
            "log_path": str(p.job_log(job_id)), "status_path": str(p.job_status(job_id)),
            "pid_path": str(p.job_pidfile(job_id))}
    spec_path = tmp_path / f"{job_id}.spec.json"
    spec_path.write_text(json.dumps(spec))
    return str(spec_path), p


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def forks():
    server = zygote.ForkServer()
    yield server
    server.close()


def test_a_forked_monitor_runs_the_job_like_a_new_interpreter_would(tmp_path, forks):
    assert forks.start()
    z = forks.zygote
    wait_until(lambda: z.ready, what="the zygote to be ready")
    assert psutil.Process(z.pid).ppid() == os.getpid()
    script = ('echo "sid=$(ps -o sid= -p $PPID | tr -d " ")"; '
              'echo "fds=$(ls /proc/$PPID/fd | sort -n | tr "\\n" " ")"; '
              'for fd in 0 1 2; do echo "fd$fd=$(readlink /proc/$PPID/fd/$fd)"; done; '
              'echo "title=$(cat /proc/$PPID/cmdline | tr "\\0" " ")"; exit 3')
    spec_path, p = write_spec(tmp_path, 1, ["bash", "-c", script])
    child = forks.spawn(spec_path)
    assert isinstance(child, zygote.ZygoteChild)
    assert child.start is not None and abs(psutil.Process(child.pid).create_time()
                                           - child.start) < 1.0
    wait_until(lambda: child.poll() is not None, what="the monitor's end")
    assert child.returncode == 0
    status = json.loads(p.job_status(1).read_text())
    assert status["exit_code"] == 3
    pid_info = json.loads(p.job_pidfile(1).read_text())
    assert pid_info["monitor_pid"] == child.pid
    assert abs(pid_info["monitor_start"] - child.start) < 1.0
    lines = dict(line.split("=", 1) for line in p.job_log(1).read_text().splitlines())
    assert lines["sid"] == str(child.pid)              # its own session, as Popen's
    # Nothing of the zygote's pipes: only fds 0-2 (/dev/null) and none else while the
    # job runs (the job's log was closed once the job started).
    assert lines["fds"].split() == ["0", "1", "2"], lines["fds"]
    assert all(lines[f"fd{fd}"] == "/dev/null" for fd in (0, 1, 2)), lines
    if importlib.util.find_spec("setproctitle") is not None:
        assert lines["title"].startswith("gflow-job 1 monitor")
    # Reaped by the zygote: no <defunct> child left; its one child is the next spare.
    def reaped():
        kids = psutil.Process(z.pid).children()
        return (child.pid not in {k.pid for k in kids} and len(kids) <= 1
                and all(k.status() != psutil.STATUS_ZOMBIE for k in kids))
    wait_until(reaped, what="the monitor reaped, no other child of the zygote")


def test_a_monitor_killed_by_sigkill_is_reported_with_its_signal(tmp_path, forks):
    spec_path, _ = write_spec(tmp_path, 2, ["sleep", "60"])
    child = forks.spawn(spec_path)
    job = wait_until(lambda: json.loads(paths_in(tmp_path).job_pidfile(2).read_text())
                     if paths_in(tmp_path).job_pidfile(2).exists() else None)
    os.kill(child.pid, signal.SIGKILL)
    wait_until(lambda: child.poll() is not None)
    assert child.returncode == -signal.SIGKILL
    assert gone(child.pid)
    os.killpg(job["job_pid"], signal.SIGKILL)


def test_a_killed_zygote_orphans_its_monitors_and_is_replaced(tmp_path, forks, monkeypatch):
    monkeypatch.setattr(zygote, "RESTART_MIN_SECS", 0.0)
    spec_path, p = write_spec(tmp_path, 3, ["sleep", "60"])
    child = forks.spawn(spec_path)
    first = forks.zygote
    wait_until(lambda: p.job_pidfile(3).exists())
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: child.orphaned, what="the child to be orphaned")
    assert child.poll() is None                         # still running: watched by pid
    # The next spawn starts a new zygote.
    spec_path4, p4 = write_spec(tmp_path, 4, ["true"])
    other = forks.spawn(spec_path4)
    assert isinstance(other, zygote.ZygoteChild) and forks.zygote is not first
    assert first.proc.returncode == -signal.SIGKILL      # reaped, not <defunct>
    wait_until(lambda: p4.job_status(4).exists())
    os.kill(child.pid, signal.SIGKILL)
    wait_until(lambda: child.poll() is not None, what="the orphan's end seen by pid")
    os.killpg(json.loads(p.job_pidfile(3).read_text())["job_pid"], signal.SIGKILL)


def test_maintain_replaces_a_dead_zygote_between_jobs(tmp_path, forks, monkeypatch):
    monkeypatch.setattr(zygote, "RESTART_MIN_SECS", 0.0)
    spec_path, p = write_spec(tmp_path, 14, ["sleep", "60"])
    child = forks.spawn(spec_path)
    first = forks.zygote
    wait_until(lambda: p.job_pidfile(14).exists())
    os.kill(first.pid, signal.SIGKILL)
    os.waitid(os.P_PID, first.pid, os.WEXITED | os.WNOWAIT)    # dead, maybe not yet read
    forks.maintain()
    assert forks.zygote is not first and forks.zygote.alive()
    # Replacing it never leaves one of its monitors looking alive forever.
    assert child.orphaned and child.poll() is None
    os.kill(child.pid, signal.SIGKILL)
    wait_until(lambda: child.poll() is not None)
    os.killpg(json.loads(p.job_pidfile(14).read_text())["job_pid"], signal.SIGKILL)


def test_a_zygote_that_cannot_start_is_given_up_and_spawn_says_not_sent(tmp_path, forks,
                                                                        monkeypatch):
    monkeypatch.setattr(zygote, "RESTART_MIN_SECS", 0.0)
    monkeypatch.setattr(zygote._Zygote, "command", [sys.executable, "-c", "import sys"])
    spec_path, p = write_spec(tmp_path, 5, ["true"])
    for _ in range(20):
        assert forks.spawn(spec_path) == zygote.NOT_SENT
        if forks.given_up:
            break
        time.sleep(0.05)
    assert forks.given_up and forks.early_deaths == zygote.MAX_EARLY_DEATHS
    assert not p.job_pidfile(5).exists()


def test_the_zygote_exits_when_its_owner_dies(tmp_path):
    code = ("import os, sys, time\n"
            "from gflow.launcher import zygote\n"
            "f = zygote.ForkServer(); f.start()\n"
            "while not f.zygote.ready: time.sleep(0.01)\n"
            "print(f.zygote.pid, flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    pid = int(out.stdout.split()[0])
    wait_until(lambda: gone(pid), timeout=10, what="the orphaned zygote to exit")


def test_close_stops_the_zygote_but_not_its_running_monitors(tmp_path, forks):
    spec_path, p = write_spec(tmp_path, 6, ["sleep", "60"])
    child = forks.spawn(spec_path)
    z = forks.zygote
    info = wait_until(lambda: json.loads(p.job_pidfile(6).read_text())
                      if p.job_pidfile(6).exists() else None)
    forks.close()
    assert z.proc.returncode is not None
    assert not gone(child.pid) and not gone(info["job_pid"])
    assert forks.spawn(spec_path) == zygote.NOT_SENT       # closed: no new zygote
    os.kill(child.pid, signal.SIGKILL)
    os.killpg(info["job_pid"], signal.SIGKILL)


# --- the launcher on top of it ------------------------------------------------------------

def job_spec(tmp_path, job_id: int, command: str) -> dict:
    return {"id": job_id, "command": command, "run_dir": str(tmp_path), "gpu_ids": [],
            "env": {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}}


def wait_reported(launcher, rec, job_id: int, timeout: float = 20.0) -> dict:
    def reported():
        with launcher.lock:
            launcher.check_all()
        done = [m for m in rec.sent if m[0] == "exited" and m[1] == job_id]
        return done[0][2] if done else None
    return wait_until(reported, timeout=timeout, what=f"job {job_id} reported")


def test_the_launcher_starts_monitors_through_the_zygote(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    try:
        launcher.start(job_spec(tmp_path, 7, "exit 4"))
        tracked = launcher.jobs[7]
        assert isinstance(tracked.popen, zygote.ZygoteChild)
        assert tracked.monitor_pid == tracked.popen.pid and tracked.monitor_start
        assert wait_reported(launcher, rec, 7)["exit_code"] == 4
    finally:
        launcher.forks.close()


def test_a_job_that_kills_its_forked_monitor_is_reported_with_the_signal(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    try:
        launcher.start(job_spec(tmp_path, 8, "kill -9 $PPID; sleep 60"))
        info = wait_reported(launcher, rec, 8)
        assert info["exit_code"] is None
        assert info["detail"].startswith("the job's monitor vanished (killed by SIGKILL)")
    finally:
        launcher.forks.close()


def test_without_a_zygote_the_launcher_falls_back_to_popen(tmp_path, monkeypatch):
    monkeypatch.setattr(zygote, "ENABLED", False)
    launcher, rec = make_launcher(tmp_path)
    assert launcher.forks is None
    launcher.start(job_spec(tmp_path, 9, "exit 5"))
    assert isinstance(launcher.jobs[9].popen, subprocess.Popen)
    assert wait_reported(launcher, rec, 9)["exit_code"] == 5


def test_a_dead_zygote_falls_back_to_popen_then_is_replaced(tmp_path, monkeypatch):
    launcher, rec = make_launcher(tmp_path)
    try:
        launcher.forks.start()
        first = launcher.forks.zygote
        wait_until(lambda: first.ready)
        os.kill(first.pid, signal.SIGKILL)
        wait_until(lambda: first.dead)
        # Within the restart interval the job still starts, through Popen.
        launcher.forks.next_start = time.monotonic() + 60
        launcher.start(job_spec(tmp_path, 10, "exit 6"))
        assert isinstance(launcher.jobs[10].popen, subprocess.Popen)
        assert wait_reported(launcher, rec, 10)["exit_code"] == 6
        launcher.forks.next_start = 0.0
        with launcher.lock:
            launcher.check_all()                         # maintain(): a new zygote
        assert launcher.forks.zygote is not None and launcher.forks.zygote is not first
        launcher.start(job_spec(tmp_path, 11, "exit 7"))
        assert isinstance(launcher.jobs[11].popen, zygote.ZygoteChild)
        assert wait_reported(launcher, rec, 11)["exit_code"] == 7
    finally:
        launcher.forks.close()


def test_an_orphaned_monitor_is_watched_by_pid_and_its_end_still_reported(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    try:
        launcher.start(job_spec(tmp_path, 12, "sleep 1; exit 8"))
        tracked: Tracked = launcher.jobs[12]
        os.kill(launcher.forks.zygote.pid, signal.SIGKILL)
        wait_until(lambda: tracked.popen is None or tracked.popen.orphaned)
        info = wait_reported(launcher, rec, 12)
        assert tracked.popen is None                     # handed to the pid path
        assert info["exit_code"] == 8
    finally:
        launcher.forks.close()


def test_a_zygote_that_dies_or_hangs_after_taking_a_request_is_not_asked_twice(
        tmp_path, monkeypatch):
    """Once a ready zygote has the request it may have forked: the job must not be
    started a second time; the launcher waits for its pid file, as after adoption."""
    monkeypatch.setattr(zygote, "RESTART_MIN_SECS", 0.0)
    dies = ("import sys; print('r 1', flush=True); sys.stdin.readline()")
    hangs = ("import sys, time; print('r 1', flush=True); sys.stdin.readline(); "
             "time.sleep(60)")
    monkeypatch.setattr(zygote._Zygote, "command", [sys.executable, "-c", dies])
    launcher, rec = make_launcher(tmp_path)
    try:
        launcher.start(job_spec(tmp_path, 13, "true"))
        tracked = launcher.jobs[13]
        assert tracked.popen is None and tracked.monitor_pid is None
        with launcher.lock:
            launcher.check(13)
        assert not rec.sent                     # within MONITOR_START_GRACE_SECS
        monkeypatch.setattr(zygote._Zygote, "command", [sys.executable, "-c", hangs])
        monkeypatch.setattr(zygote, "SPAWN_TIMEOUT_SECS", 0.5)
        launcher.forks.next_start = 0.0
        hung = launcher.forks.spawn(str(tmp_path / "x.spec.json"))
        assert hung == zygote.UNKNOWN
        assert launcher.forks.zygote.proc.returncode is not None    # killed and reaped
    finally:
        launcher.forks.close()


# --- the spare: a monitor forked ahead ----------------------------------------------------

def the_spare(z, timeout: float = 15.0):
    """The zygote's one child while no job runs: its spare, once it waits for a job."""
    def waiting():
        kids = psutil.Process(z.pid).children()
        if len(kids) == 1 and kids[0].status() == psutil.STATUS_SLEEPING \
                and not kids[0].children():
            return kids[0]
        return None
    return wait_until(waiting, timeout=timeout, what="the zygote's spare")


def test_a_job_starts_in_the_spare_forked_ahead(tmp_path, forks):
    assert forks.start()
    z = forks.zygote
    spare = the_spare(z)
    assert spare.ppid() == z.pid and os.getsid(spare.pid) == spare.pid   # detached already
    spec_path, p = write_spec(tmp_path, 20, ["true"])
    child = forks.spawn(spec_path)
    assert child.pid == spare.pid
    assert child.start is not None and abs(spare.create_time() - child.start) < 1.0
    wait_until(lambda: child.poll() is not None, what="the monitor's end")
    assert child.returncode == 0
    assert json.loads(p.job_status(20).read_text())["exit_code"] == 0
    assert json.loads(p.job_pidfile(20).read_text())["monitor_pid"] == spare.pid
    nxt = the_spare(z)                                  # the next one, forked at once
    assert nxt.pid != spare.pid


def test_a_killed_spare_is_replaced_and_jobs_still_start(tmp_path, forks, monkeypatch):
    monkeypatch.setattr(zygote, "RESTART_MIN_SECS", 0.0)
    assert forks.start()
    z = forks.zygote
    spare = the_spare(z)
    spare.kill()
    wait_until(lambda: gone(spare.pid), what="the spare's death")
    spec_path, p = write_spec(tmp_path, 21, ["true"])
    child = forks.spawn(spec_path)          # the spare, dead, reaped or not: a fork
    assert isinstance(child, zygote.ZygoteChild) and child.pid != spare.pid
    wait_until(lambda: p.job_status(21).exists(), what="the job's end")
    assert json.loads(p.job_status(21).read_text())["exit_code"] == 0
    assert the_spare(z).pid != spare.pid


def test_a_closed_zygote_leaves_no_spare_behind(tmp_path, forks):
    assert forks.start()
    spare = the_spare(forks.zygote)
    forks.close()
    assert gone(spare.pid)


def test_without_spares_each_monitor_is_forked_on_request(tmp_path, monkeypatch):
    monkeypatch.setattr(zygote, "SPARE", False)
    code = ("import sys\n"
            "from gflow.launcher import zygote\n"
            "zygote.SPARE = False\n"
            "sys.exit(zygote.main())\n")
    monkeypatch.setattr(zygote._Zygote, "command", [sys.executable, "-c", code])
    server = zygote.ForkServer()
    try:
        assert server.start()
        z = server.zygote
        wait_until(lambda: z.ready, what="the zygote to be ready")
        time.sleep(0.2)
        assert psutil.Process(z.pid).children() == []
        spec_path, p = write_spec(tmp_path, 22, ["true"])
        child = server.spawn(spec_path)
        assert isinstance(child, zygote.ZygoteChild)
        wait_until(lambda: p.job_status(22).exists(), what="the job's end")
    finally:
        server.close()


def test_an_idle_spare_ends_with_its_killed_zygote(tmp_path, forks):
    assert forks.start()
    z = forks.zygote
    spare = the_spare(z)
    os.kill(z.pid, signal.SIGKILL)
    wait_until(lambda: gone(spare.pid), timeout=10, what="the orphaned spare to exit")
