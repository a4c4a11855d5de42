"""The launcher's pure parts, the per-job monitor as a real process, and adoption rules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from gflow.launcher.jobcmd import LaunchError, build_argv, build_env, substitute_parameters
from launcher_helpers import make_launcher, paths_in


# --- argv and environment ---------------------------------------------------------------

def test_command_runs_with_bash_c_after_parameter_substitution():
    spec = {"command": "train --lr {lr} --bs {bs}", "parameters": {"lr": "0.1", "bs": "8"}}
    assert build_argv(spec) == ["bash", "-c", "train --lr 0.1 --bs 8"]
    with pytest.raises(LaunchError, match="missing parameter values: bs"):
        substitute_parameters("x {lr} {bs}", {"lr": "1"})


def test_scripts_use_their_shebang_only_when_executable(tmp_path):
    shebang = tmp_path / "a.py"
    shebang.write_text("#!/usr/bin/env python3\n")
    plain = tmp_path / "b.sh"
    plain.write_text("echo hi\n")
    shebang.chmod(0o755)
    plain.chmod(0o755)
    assert build_argv({"script": str(shebang)}) == [str(shebang)]
    assert build_argv({"script": str(plain)}) == ["bash", str(plain)]
    shebang.chmod(0o644)
    assert build_argv({"script": str(shebang)}) == ["bash", str(shebang)]
    missing = str(tmp_path / "missing.sh")
    assert build_argv({"script": missing}) == ["bash", missing]


def test_conda_wraps_the_job_and_fails_loudly():
    argv = build_argv({"command": "python x.py", "conda_env": "my env"})
    assert argv[:2] == ["bash", "-c"] and argv[3:] == ["gflow-conda", "my env", "bash", "-c",
                                                       "python x.py"]
    assert "conda activate \"$1\"" in argv[2] and "exit 127" in argv[2]


def test_environment_of_a_job():
    spec = {"id": 7, "env": {"PATH": "/x", "CUDA_VISIBLE_DEVICES": "3", "GFLOW_JOB_ID": "1",
                             "MINE": "yes"}, "gpu_ids": [0, 2], "task_id": 4}
    env = build_env(spec, {"PATH": "/daemon"})
    assert env["PATH"] == "/x" and env["MINE"] == "yes"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,2" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["GFLOW_JOB_ID"] == "7" and env["GFLOW_ARRAY_TASK_ID"] == "4"
    # Jobs from 0.4.13's clients carry no environment: they get the daemon's.
    env = build_env({"id": 1, "env": None, "gpu_ids": None}, {"PATH": "/daemon"})
    assert env["PATH"] == "/daemon" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["GFLOW_ARRAY_TASK_ID"] == "0"


# --- the monitor as a real process -------------------------------------------------------

def run_monitor(tmp_path, job_id: int, argv: list, timeout: float = 20.0) -> dict:
    p = paths_in(tmp_path)
    spec = {"id": job_id, "argv": argv, "cwd": str(tmp_path),
            "env": {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, "notify": None,
            "log_path": str(p.job_log(job_id)), "status_path": str(p.job_status(job_id)),
            "pid_path": str(p.job_pidfile(job_id))}
    spec_path = tmp_path / f"{job_id}.spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, "-m", "gflow.launcher.monitor", str(spec_path)],
                            start_new_session=True)
    try:
        assert proc.wait(timeout) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return json.loads(p.job_status(job_id).read_text())


def test_monitor_records_exit_codes_and_signals(tmp_path):
    status = run_monitor(tmp_path, 1, ["bash", "-c", "echo out; echo err >&2; exit 3"])
    assert status["exit_code"] == 3 and status["signal"] is None
    assert (paths_in(tmp_path).job_log(1)).read_text() == "out\nerr\n"
    status = run_monitor(tmp_path, 2, ["bash", "-c", "kill -TERM $$"])
    assert (status["exit_code"], status["signal"]) == (128 + 15, 15)
    assert status["detail"] == "killed by SIGTERM"
    status = run_monitor(tmp_path, 3, ["/nonexistent/program"])
    assert status["exit_code"] == 127 and "could not start" in status["detail"]


def test_job_does_not_inherit_ignored_signals(tmp_path):
    # SIGINT (time limits) must reach the job even though the daemon ignores it.
    status = run_monitor(tmp_path, 1, [
        sys.executable, "-c",
        "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler,"
        " signal.getsignal(signal.SIGHUP) == signal.SIG_DFL)"])
    assert status["exit_code"] == 0
    assert paths_in(tmp_path).job_log(1).read_text() == "True True\n"


def test_monitor_adopts_orphans_of_the_job(tmp_path):
    """An orphan (its parent exited) is re-parented to the monitor, not to init, so the
    launcher still finds it among the monitor's descendants; the monitor waits for it."""
    marker = tmp_path / "orphan.pid"
    p = paths_in(tmp_path)
    spec = {"id": 5, "cwd": str(tmp_path), "notify": None,
            "argv": ["bash", "-c", f"(setsid sleep 30 & echo $! > {marker}) ; exit 4"],
            "env": {"PATH": os.environ["PATH"]}, "log_path": str(p.job_log(5)),
            "status_path": str(p.job_status(5)), "pid_path": str(p.job_pidfile(5))}
    spec_path = tmp_path / "5.spec.json"
    spec_path.write_text(json.dumps(spec))
    mon = subprocess.Popen([sys.executable, "-m", "gflow.launcher.monitor", str(spec_path)],
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (p.job_status(5).exists() and marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        orphan = psutil.Process(int(marker.read_text()))
        assert orphan.ppid() == mon.pid
        assert json.loads(p.job_status(5).read_text())["exit_code"] == 4
        assert mon.poll() is None                 # it stays while the orphan lives
        orphan.kill()
        assert mon.wait(10) == 0
    finally:
        if mon.poll() is None:
            os.killpg(mon.pid, signal.SIGKILL)
        try:
            psutil.Process(int(marker.read_text())).kill()
        except (psutil.Error, ValueError, OSError):
            pass


# --- adoption --------------------------------------------------------------------------

def test_adopt_reports_a_job_that_ended_while_nobody_watched(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    p = launcher.paths
    (p.logs_dir / "3.spec.json").write_text("{}")
    p.job_pidfile(3).write_text(json.dumps({"monitor_pid": 999999999, "job_pid": 999999999}))
    p.job_status(3).write_text(json.dumps({"exit_code": 9, "finished_at": 1.0}))
    launcher.adopt([{"id": 3}])
    assert rec.sent == [("exited", 3, {"exit_code": 9, "finished_at": 1.0})]


def test_adopt_reports_a_vanished_monitor(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    p = launcher.paths
    (p.logs_dir / "4.spec.json").write_text("{}")
    p.job_pidfile(4).write_text(json.dumps({"monitor_pid": 999999999, "job_pid": 999999999,
                                            "monitor_start": 1.0}))
    launcher.adopt([{"id": 4}])
    (kind, job_id, info), = rec.sent
    assert (kind, job_id, info["exit_code"]) == ("exited", 4, None)
    assert "monitor vanished" in info["detail"]


def test_adopt_never_starts_a_job_that_is_being_stopped(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    launcher.adopt([{"id": 8, "command": "touch should-not-exist", "stopping": True}])
    (kind, job_id, info), = rec.sent
    assert (kind, job_id, info["detail"]) == ("exited", 8, "stopped before it started")
    assert not (launcher.paths.logs_dir / "8.spec.json").exists()


def test_a_repeated_stop_order_keeps_the_first_deadline(tmp_path):
    launcher, _rec = make_launcher(tmp_path)
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        from gflow.launcher.service import Tracked
        tracked = Tracked(spec={"id": 1}, launched_at=time.time(), job_pid=sleeper.pid)
        launcher.jobs[1] = tracked
        launcher.signal(1, "SIGCONT", 5.0)
        first = tracked.kill_deadline
        time.sleep(0.01)
        launcher.signal(1, "SIGCONT", 5.0)
        assert tracked.kill_deadline == first
        assert sleeper.pid in tracked.tree
    finally:
        sleeper.kill()
        sleeper.wait()


def test_memory_is_measured_over_the_whole_tree(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    from gflow.launcher.service import Tracked
    hog = subprocess.Popen([sys.executable, "-c",
                            "import time; b = bytearray(80 * 2**20); b[::4096] = b'x' * len(b[::4096]);"
                            " print('ok', flush=True); time.sleep(30)"],
                           stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert hog.stdout.readline() == b"ok\n"
        tracked = Tracked(spec={"id": 2, "memory_limit_mb": 40}, launched_at=time.time(),
                          job_pid=hog.pid)
        launcher.jobs[2] = tracked
        launcher._check_memory(2, tracked)
        assert hog.wait(5) == -signal.SIGKILL
        assert "over the 40 MB limit" in tracked.spec["memory_detail"]
    finally:
        if hog.poll() is None:
            hog.kill()
        hog.wait()
