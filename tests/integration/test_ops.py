"""Operations with real daemons: the daemon log (rotation while running, levels, key=value
job lines), client logging, `gflowd status` with a stale or foreign lock, a second `up`,
`--cleanup`, and `gflowd service` against a fake systemctl."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for
from test_lifecycle_helpers import JOBS, configure, job_pid, workers

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ \S+: ")
REPO = Path(__file__).resolve().parents[2]


def log_text(d, suffix: str = "") -> str:
    path = d.logs / f"gflowd.log{suffix}"
    return path.read_text() if path.exists() else ""


def wait_log(d, needle: str, timeout: float = 15.0) -> str:
    return wait_for(lambda: needle in log_text(d) and log_text(d), timeout=timeout,
                    what=f"{needle!r} in gflowd.log")


# --- the daemon log ---------------------------------------------------------------------------

def test_job_lines_are_key_value(daemon):
    daemon.ok("gbatch", "--gpus", "1", "bash", "-c", "exit 3")
    daemon.wait_state(1, "Failed")
    text = wait_log(daemon, "job 1 finished")
    assert re.search(r"INFO scheduler gflow.scheduler: job 1 scheduled gpus=\d user=tester\n", text)
    started = re.search(r"INFO launcher gflow.launcher: job 1 started pid=(\d+) gpus=(\d) "
                        r"monitor_pid=\d+\n", text)
    assert started and int(started.group(1)) == json.loads(
        (daemon.logs / "1.pid").read_text())["job_pid"]
    assert re.search(r"gflow.launcher: job 1 exited exit_code=3 runtime=\d+\.\ds\n", text)
    assert re.search(r'gflow.scheduler: job 1 finished state=Failed exit_code=3 '
                     r'runtime=\d+\.\ds detail="exit code 3"\n', text)
    assert "DEBUG" not in text                        # default level: info


def test_log_rotates_while_running(daemon_factory):
    d = daemon_factory(fake_gpus="2")
    configure(d, "[logging]\nmax_bytes = 4000\nbackups = 3\n")
    d.start()
    rotations = lambda: sum(log_text(d, s).count("log rotated") for s in ("", ".1", ".2", ".3"))
    for batch in range(4):                          # each batch writes more than 4000 bytes
        before = rotations()
        d.ok("gbatch", "--array", "1-15", "true")
        total = 15 * (batch + 1)
        wait_for(lambda: (lambda jobs: len(jobs) == total and all(
            j["state"] == "Finished" for j in jobs))(d.http("GET", "/jobs")[1]),
            timeout=60, what=f"{total} finished jobs")
        wait_for(lambda: rotations() > before, what="a rotation (the master checks each second)")
    assert not (d.logs / "gflowd.log.4").exists()
    files = sorted(p.name for p in d.logs.glob("gflowd.log*"))
    assert files == ["gflowd.log", "gflowd.log.1", "gflowd.log.2", "gflowd.log.3"]
    for suffix in ("", ".1", ".2", ".3"):
        text = log_text(d, suffix)
        for line in text.splitlines():
            assert LINE.match(line), (suffix, line)     # whole lines: no torn writes
        if suffix:
            assert len(text.encode()) >= 4000          # rotated only once over the limit
    # Files begun by a rotation are filled by the workers too: they reopened the new file.
    one = log_text(d, ".1")
    assert "scheduler gflow.scheduler: job" in one and "launcher gflow.launcher: job" in one
    # The last job's end is in the newest files, nothing after it was lost.
    recent = log_text(d, ".1") + log_text(d)
    assert "job 60 finished state=Finished" in recent
    # Stray output of a worker (a faulthandler dump on SIGUSR2) follows the rotation too,
    # even from a worker that logged nothing since (it checks every 2 s).
    time.sleep(2.5)
    os.kill(workers(d)["api"], signal.SIGUSR2)
    wait_for(lambda: "Current thread" in log_text(d) or "Thread 0x" in log_text(d),
             what="the scheduler's stack dump in the current gflowd.log")


def test_quiet_and_verbose(daemon_factory):
    quiet = daemon_factory(fake_gpus="1")
    quiet.ok("gflowd", "-q", "up")
    quiet.ok("gbatch", "true")
    # Every INFO line about job 1 precedes this point: the launcher writes "job 1 exited"
    # before it reports the exit, and the scheduler "job 1 finished" before the reply
    # that shows the job Finished (the loud daemon below shows these lines exist).
    quiet.wait_state(1, "Finished")
    assert " INFO " not in log_text(quiet) and " DEBUG " not in log_text(quiet)

    loud = daemon_factory(fake_gpus="1")
    loud.ok("gflowd", "up", "-v")                     # -v after the command works too
    loud.ok("gbatch", "true")
    loud.wait_state(1, "Finished")
    text = wait_log(loud, "job 1 finished")
    assert re.search(r"DEBUG launcher gflow.launcher: job 1 launched monitor_pid=\d+", text)
    assert "INFO launcher gflow.launcher: job 1 exited" in text   # before the report


def test_config_level_env_and_reload(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    configure(d, '[logging]\nlevel = "warn"\n')
    d.start()
    d.ok("gbatch", "true")
    d.wait_state(1, "Finished")      # job 1's lines precede this point (see above)
    assert "job 1" not in log_text(d)
    configure(d, '[logging]\nlevel = "debug"\n')
    d.ok("gflowd", "reload")
    d.ok("gbatch", "true")
    d.wait_state(2, "Finished")
    text = wait_log(d, "job 2 finished")
    assert "DEBUG launcher gflow.launcher: job 2 launched" in text
    d.ok("gflowd", "down")

    # GFLOW_LOG overrides [logging] level for the daemon (RUST_LOG does not).
    configure(d, '[logging]\nlevel = "error"\n')
    d.ok("gflowd", "up", env={**d.env, "GFLOW_LOG": "info", "RUST_LOG": "trace"})
    d.ok("gbatch", "true")
    d.wait_state(3, "Finished")
    text = wait_log(d, "job 3 finished")
    third = text.rsplit(" master pid=", 1)[1]          # what the third daemon wrote
    assert "job 3 finished" in third and "DEBUG" not in third


def test_client_logging_against_a_daemon(daemon):
    res = daemon.run("gqueue", "-a", env={**daemon.env, "GFLOW_LOG": "debug"})
    assert res.returncode == 0 and res.stdout == "No jobs found.\n"
    assert re.search(r"DEBUG gflow.client: GET http://127.0.0.1:\d+/jobs\?\S* -> 200 "
                     r"\(\d+\.\d ms\)", res.stderr), res.stderr
    res = daemon.run("gbatch", "true", env={**daemon.env, "GFLOW_LOG": "trace"})
    assert "TRACE gflow.client: POST" in res.stderr and '"command": "true"' in res.stderr
    assert "TRACE gflow.client: response" in res.stderr
    res = daemon.run("gqueue", "-a")
    assert res.stderr == ""


# --- status and up in the remaining states ------------------------------------------------------

def test_stale_lock_file_is_not_a_daemon(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    d.data_dir.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = d.data_dir / "gflowd.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "pgid": dead.pid, "started_at": time.time(),
                                "workers": {"api": [dead.pid, time.time()]}}))
    res = d.run("gflowd", "status")
    assert res.returncode == 3 and res.stdout.splitlines()[0] == "Status: Not running"
    d.ok("gflowd", "down")                          # nothing to stop: says so, rc 0
    d.start()
    lines = d.ok("gflowd", "status").splitlines()
    assert lines[0] == "Status: Running" and int(lines[1].split(": ")[1]) == d.master_pid()
    assert d.master_pid() != dead.pid


def test_lock_held_by_a_silent_process(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    d.data_dir.mkdir(parents=True)
    lock = d.data_dir / "gflowd.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        res = d.run("gflowd", "status")
        assert res.stdout.splitlines()[0] == "Status: Unhealthy"
        assert f"pid {os.getpid()}" in res.stderr
        res = d.run("gflowd", "up")
        assert res.returncode == 1 and "does not answer" in res.stderr
    finally:
        os.close(fd)
    d.start()
    assert d.ok("gflowd", "status").splitlines()[0] == "Status: Running"


def test_second_up_is_refused_politely(daemon):
    pid = daemon.master_pid()
    res = daemon.run("gflowd", "up")
    assert res.returncode == 0
    assert res.stdout == (f"gflowd is already running (pid {pid}).\n"
                          "Use `gflowd reload` to hot-reload or `gflowd restart` to restart it.\n")
    assert daemon.master_pid() == pid
    res = daemon.run("gflowd", "up", "--foreground")
    assert res.returncode == 1 and "already running" in res.stderr
    assert daemon.ok("gflowd", "status").splitlines()[0] == "Status: Running"


# --- --cleanup ---------------------------------------------------------------------------------

def test_cleanup_is_accepted_everywhere(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    res = d.run("gflowd", "--cleanup")
    assert res.returncode == 1 and "gflowd is not running" in res.stderr
    res = d.run("gflowd", "--cleanup", "status")            # 3: not running (status)
    assert res.returncode == 3 and "Cleanup skipped" in res.stderr
    d.ok("gflowd", "--cleanup", "up")
    assert "Cleanup: nothing to remove." in d.ok("gflowd", "status", "--cleanup")
    assert "Cleanup: nothing to remove." in d.ok("gflowd", "--cleanup")
    out = d.ok("gflowd", "--cleanup", "down")
    assert out.splitlines() == ["Cleanup: nothing to remove.", "gflowd stopped."]


def test_cleanup_removes_only_files_of_finished_jobs_without_a_process(daemon_factory,
                                                                         monkeypatch, tmp_path):
    from gflow.cli import gflowd
    from gflow.config import load_config
    d = daemon_factory(fake_gpus="1")
    configure(d, "[launcher]\nkill_grace_secs = 300\n")
    d.start()
    d.ok("gbatch", "true")                                                      # 1: done
    d.ok("gbatch", "bash", str(JOBS / "wait_for_file.sh"), str(tmp_path / "go"), "0")  # 2: runs
    d.ok("gbatch", "bash", str(JOBS / "ignore_term.sh"))                      # 3: lingers
    d.wait_state(1, "Finished")
    d.wait_state(2, "Running")
    d.wait_state(3, "Running")
    job_pid(d, 2)
    lingering = job_pid(d, 3)
    d.ok("gcancel", "3")
    d.wait_state(3, "Cancelled")
    for var in list(os.environ):
        if var.startswith(("GFLOW_", "XDG_")):
            monkeypatch.delenv(var)
    for key, value in d.env.items():
        monkeypatch.setenv(key, value)
    config = load_config()
    names = lambda: sorted(p.name for p in d.logs.iterdir() if not p.name.startswith("gflowd"))
    before = names()
    assert {"1.log", "1.pid", "1.spec.json", "1.status", "2.pid", "3.pid"} <= set(before)

    assert gflowd.cleanup(config) == (0, 0)                 # finished less than a minute ago
    assert names() == before
    assert gflowd.cleanup(config, now=time.time() + 120) == (1, 3)
    after = names()
    assert "1.log" in after and not {"1.pid", "1.spec.json", "1.status"} & set(after)
    assert {"2.pid", "2.spec.json", "3.pid", "3.spec.json"} <= set(after)   # running/alive
    os.kill(lingering, signal.SIGKILL)
    wait_for(lambda: (d.logs / "3.status").exists(), what="job 3's status")
    (tmp_path / "go").touch()
    d.wait_state(2, "Finished")
    time.sleep(0.5)
    assert gflowd.cleanup(config, now=time.time() + 120) == (2, 6)
    assert names() == ["1.log", "2.log", "3.log"]
    # The daemon does not miss them: a restart adopts nothing and the jobs stay as they were.
    d.ok("gflowd", "restart")
    assert [d.job(i)["state"] for i in (1, 2, 3)] == ["Finished", "Finished", "Cancelled"]
    assert d.ok("gjob", "log", "1") == ""


# --- gflowd service -------------------------------------------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$SYSTEMCTL_LOG"
case "$*" in
  *show-environment*) [ -n "$SYSTEMCTL_NO_BUS" ] && { echo "Failed to connect to bus: No medium found" >&2; exit 1; } ;;
  *is-active*) [ -n "$SYSTEMCTL_ACTIVE" ] && { echo active; exit 0; }; echo inactive; exit 3 ;;
esac
exit 0
"""


@pytest.fixture
def fake_systemctl(daemon_factory, tmp_path):
    d = daemon_factory()
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL)
    script.chmod(0o755)
    calls = tmp_path / "systemctl.log"
    d.env.update(PATH=f"{bindir}{os.pathsep}{d.env['PATH']}", SYSTEMCTL_LOG=str(calls))
    d.calls = lambda: calls.read_text().splitlines() if calls.exists() else []
    d.unit = d.home / ".config" / "systemd" / "user" / "gflowd.service"
    return d


def test_service_install_and_uninstall(fake_systemctl):
    d = fake_systemctl
    out = d.ok("gflowd", "service", "install")
    exec_start = f"ExecStart={Path(sys.executable).parent / 'gflowd'} up --foreground"
    assert out.splitlines()[0] == f"Installed {d.unit} ({exec_start})."
    assert "systemctl --user enable --now gflowd" in out
    text = d.unit.read_text()
    assert exec_start + "\n" in text and "KillMode=process\n" in text
    assert d.calls() == ["--user show-environment", "--user daemon-reload",
                         "--user is-active gflowd.service"]
    # The installed unit is contrib/systemd/gflowd.service but for ExecStart.
    contrib = (REPO / "contrib" / "systemd" / "gflowd.service").read_text()
    assert text == contrib.replace("ExecStart=/usr/bin/env gflowd up --foreground", exec_start)

    out = d.ok("gflowd", "service", "install", "--now")
    assert out.startswith(f"Updated {d.unit}")
    assert "--user enable --now gflowd.service" in d.calls()

    out = d.ok("gflowd", "service", "uninstall")
    assert out == f"Stopped, disabled and removed {d.unit}.\n"
    assert d.calls()[-2:] == ["--user disable --now gflowd.service", "--user daemon-reload"]
    assert not d.unit.exists()
    assert d.ok("gflowd", "service", "uninstall") == f"Nothing to uninstall: {d.unit} does not exist.\n"


def test_service_install_now_with_a_daemon_outside_systemd(fake_systemctl):
    d = fake_systemctl
    d.start()
    out = d.ok("gflowd", "service", "install", "--now")
    assert f"gflowd is already running (pid {d.master_pid()}) outside systemd" in out
    assert "--user enable gflowd.service" in d.calls()
    assert not any("--now" in call for call in d.calls())
    out = d.ok("gflowd", "service", "install", "--now", env={**d.env, "SYSTEMCTL_ACTIVE": "1"})
    assert "already active" in out


def test_service_without_a_user_manager(fake_systemctl, tmp_path):
    d = fake_systemctl
    res = d.run("gflowd", "service", "install", env={**d.env, "SYSTEMCTL_NO_BUS": "1"})
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == ("gflowd service: no systemd user manager here (`systemctl --user` "
                          "failed: Failed to connect to bus: No medium found); start the daemon "
                          "with `gflowd up` instead, or see contrib/systemd/gflowd@.service for "
                          "a system unit\n")
    assert not d.unit.exists()
    empty = tmp_path / "nothing"
    empty.mkdir()
    res = d.run("gflowd", "service", "install", env={**d.env, "PATH": str(empty)})
    assert res.returncode == 1 and "(systemctl not found)" in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_service_show_prints_the_unit(fake_systemctl):
    out = fake_systemctl.ok("gflowd", "service", "show")
    assert out.startswith("# gflowd as a systemd *user* service")
    assert f"ExecStart={Path(sys.executable).parent / 'gflowd'} up --foreground\n" in out


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_installed_unit_verifies(fake_systemctl):
    d = fake_systemctl
    d.ok("gflowd", "service", "install")
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(d.unit)],
                         capture_output=True, text=True, timeout=60)
    problems = [line for line in (res.stdout + res.stderr).splitlines() if "gflowd" in line]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr


def test_non_loopback_address_is_warned_about(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    env = {**d.env, "GFLOW_DAEMON_HOST": "0.0.0.0"}
    res = d.run("gflowd", "up", env=env)
    assert res.returncode == 0, res.stderr
    assert "Warning: gflowd listens on 0.0.0.0: everyone who can reach it" in res.stderr
    assert "WARNING master gflow.master: listening on 0.0.0.0" in log_text(d)
    d.ok("gflowd", "down", env=env)
    res = d.run("gflowd", "up")                         # 127.0.0.1: no warning
    assert res.returncode == 0 and res.stderr == ""


# --- [api] settings reach the running API worker ---------------------------------------------

def test_configured_max_body_bytes_is_enforced_by_the_daemon(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    configure(d, "[api]\nmax_body_bytes = 4096\n")
    d.start()

    def submit(size: int):
        body = {"command": "true", "submitted_by": "tester", "run_dir": str(d.home),
                "parameters": {"pad": "x" * size}}
        raw = json.dumps(body).encode()
        return len(raw), d.http("POST", "/jobs", raw=raw,
                                headers={"content-type": "application/json"})

    length, (status, body) = submit(3000)                # under the limit: accepted
    assert length < 4096 and status == 201, body
    length, (status, body) = submit(5000)                # over 4096 (the default is 16 MiB)
    assert length > 4096 and status == 413, body
    assert body == {"error": "request body exceeds 4096 bytes"}
    assert [j["id"] for j in d.http("GET", "/jobs")[1]] == [1]        # nothing of it kept
