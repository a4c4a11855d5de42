"""How the launcher runs jobs: logs, following them, redo, conda, scripts, signals."""

from __future__ import annotations

import os
import subprocess
import threading

from conftest import tool_path, wait_for
from test_lifecycle_helpers import FAST, JOBS, configure

FAKE_CONDA = JOBS / "fakeconda"


def test_logs_hold_only_the_jobs_output(daemon):
    d = daemon
    d.ok("gbatch", "bash", "-c",
         "ls --color=auto /; echo foo | grep --color=auto o; "
         "python3 -c 'import sys; print(\"tty\", sys.stdout.isatty(), sys.stdin.isatty())'; "
         "echo err >&2; echo plain")
    assert d.wait_state(1, ("Finished", "Failed"))["state"] == "Finished"
    raw = (d.logs / "1.log").read_bytes()
    assert b"\x1b" not in raw and b"\r" not in raw
    lines = raw.decode().splitlines()
    assert "tty False False" in lines and lines[-2:] == ["err", "plain"]
    assert d.ok("gjob", "log", "1").encode() == raw


def test_log_follow_streams_a_running_job(daemon, tmp_path):
    d = daemon
    go = tmp_path / "go"
    d.ok("gbatch", "bash", "-c", f"echo one; while [ ! -e {go} ]; do sleep 0.05; done; echo two")
    d.wait_state(1, "Running")
    wait_for(lambda: (d.logs / "1.log").exists(), what="the log file")
    follow = subprocess.Popen([tool_path("gjob"), "log", "-f", "1"], env=d.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(30, follow.kill)      # never hang on a readline
    guard.start()
    try:
        assert follow.stdout.readline() == "one\n"
        assert follow.poll() is None                 # still following
        go.touch()
        out, err = follow.communicate(timeout=20)
    finally:
        guard.cancel()
        if follow.poll() is None:
            follow.kill()
    assert out == "two\n" and follow.returncode == 0, err


def test_redo_never_overwrites_an_earlier_log(daemon_factory):
    d = daemon_factory()
    d.start()
    d.ok("gbatch", "bash", "-c", 'echo "run of job $GFLOW_JOB_ID"')
    d.wait_state(1, "Finished")
    d.ok("gjob", "redo", "1")
    d.wait_state(2, "Finished")
    assert (d.logs / "1.log").read_text() == "run of job 1\n"
    assert (d.logs / "2.log").read_text() == "run of job 2\n"
    # Ids are never reused, not even across a restart: no log is ever written twice.
    d.ok("gflowd", "restart")
    d.ok("gjob", "redo", "1")
    d.wait_state(3, "Finished")
    assert [(d.logs / f"{i}.log").read_text() for i in (1, 2, 3)] == [
        "run of job 1\n", "run of job 2\n", "run of job 3\n"]
    assert not list(d.logs.glob("*.log.old.*"))


def test_conda_environment_is_activated(daemon):
    d = daemon
    env = {**d.env, "PATH": f"{FAKE_CONDA / 'bin'}{os.pathsep}{d.env['PATH']}"}
    d.ok("gbatch", "--conda-env", "myenv", "bash", "-c", "whichenv; echo $CONDA_PREFIX", env=env)
    # Command mode picks the environment up from the submitter's CONDA_DEFAULT_ENV.
    d.ok("gbatch", "bash", "-c", "whichenv", env={**env, "CONDA_DEFAULT_ENV": "myenv"})
    # An activation that fails fails the job, loudly (0.4.13 ran it in the base env).
    d.ok("gbatch", "--conda-env", "nope", "bash", "-c", "echo should-not-run", env=env)
    assert d.wait_state(1, ("Finished", "Failed"))["state"] == "Finished"
    assert (d.logs / "1.log").read_text() == f"inside myenv\n{FAKE_CONDA / 'envs' / 'myenv'}\n"
    assert d.job(2)["conda_env"] == "myenv"
    assert d.wait_state(2, ("Finished", "Failed"))["state"] == "Finished"
    assert (d.logs / "2.log").read_text() == "inside myenv\n"
    job = d.wait_state(3, ("Finished", "Failed"))
    assert (job["state"], job["exit_code"]) == ("Failed", 127)
    log = (d.logs / "3.log").read_text()
    assert "gflow: conda activate nope failed" in log and "should-not-run" not in log
    assert "\x1b" not in log


def test_scripts_run_through_their_shebang_or_bash(daemon, tmp_path):
    d = daemon
    py = tmp_path / "exec.py"
    py.write_text("#!/usr/bin/env python3\nimport sys\nprint('python', sys.version_info[0])\n")
    py.chmod(0o755)
    not_exec = tmp_path / "plain.py"           # a shebang, but not executable: bash runs it
    not_exec.write_text("#!/usr/bin/env python3\necho \"bash ${BASH_VERSINFO[0]}\"\n")
    not_exec.chmod(0o644)
    no_shebang = tmp_path / "noshebang.sh"     # executable without `#!`: bash, too
    no_shebang.write_text("echo \"bash ${BASH_VERSINFO[0]} $0\"\n")
    no_shebang.chmod(0o755)
    for script in (py, not_exec, no_shebang):
        d.ok("gbatch", str(script))
    for job_id in (1, 2, 3):
        assert d.wait_state(job_id, ("Finished", "Failed"))["state"] == "Finished"
    assert (d.logs / "1.log").read_text() == "python 3\n"
    assert (d.logs / "2.log").read_text().startswith("bash ")
    assert (d.logs / "3.log").read_text().split()[-1] == str(no_shebang)


def test_time_limit_sends_sigint_first(daemon_factory):
    d = daemon_factory()
    configure(d, FAST)
    d.start()
    d.ok("gbatch", "-t", "0:01", "bash", "-c",
         "trap 'echo got INT; exit 130' INT; echo started; while :; do sleep 0.05; done")
    job = d.wait_state(1, "Timeout", timeout=20)
    assert "time limit" in job["reason_detail"]
    wait_for(lambda: "got INT" in (d.logs / "1.log").read_text(), what="the INT trap to run")
    job = wait_for(lambda: (lambda j: j if j["exit_code"] is not None else None)(d.job(1)),
                   what="the exit code")
    assert job["exit_code"] == 130 and job["state"] == "Timeout"


def test_exit_code_in_json_and_show(daemon):
    d = daemon
    d.ok("gbatch", "bash", "-c", "exit 42")
    d.ok("gbatch", "true")
    failed = d.wait_state(1, "Failed")
    assert failed["exit_code"] == 42 and failed["reason_detail"] == "exit code 42"
    assert d.wait_state(2, "Finished")["exit_code"] == 0
    assert "ExitCode=42" in d.ok("gjob", "show", "1")
    status, body = d.http("GET", "/jobs")
    assert {j["id"]: j["exit_code"] for j in body} == {1: 42, 2: 0}
    # A queued job has no exit code yet.
    d.ok("gbatch", "--gpus", "64", "true")
    three = wait_for(lambda: (lambda j: j if j["reason_detail"] or j["state"] != "Queued"
                                          else None)(d.job(3)),
                     what="a pass to consider job 3")
    assert "can never run here" in three["reason_detail"]
    assert three["state"] == "Queued" and three["exit_code"] is None
