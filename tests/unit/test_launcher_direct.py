"""Plain commands exec'd without their `bash -c` (gflow.launcher.direct): only when bash
would have exec'd them itself, and with the very environment that bash would have given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from gflow.launcher import direct, jobcmd, monitor
from launcher_helpers import make_launcher, paths_in


@pytest.mark.parametrize("command,words", [
    ("bash /x/stamp.sh 1", ["bash", "/x/stamp.sh", "1"]),
    ("  python train.py --lr=0.1 --bs 8 ", ["python", "train.py", "--lr=0.1", "--bs", "8"]),
    ("./run.sh a,b user@host:/p 50% +x", ["./run.sh", "a,b", "user@host:/p", "50%", "+x"]),
    ("sleep  2", ["sleep", "2"]),
])
def test_plain_commands_are_split_into_words(command, words):
    assert direct.plain_words(command) == words


@pytest.mark.parametrize("command", [
    "", "   ", "echo hi", "true", "exit 3", "cd /tmp", "time sleep 1", "if", ". ./env",
    "source x", "kill -9 1", "test -f x", "printf x", "wait",            # bash's own
    "A=1 prog", "prog $HOME", "prog ~/x", "prog *.py", "prog a?", "prog [ab]",
    "prog 'a b'", 'prog "a"', "prog \\x", "prog {a,b}", "prog a; b", "prog a && b",
    "prog | cat", "prog > out", "prog < in", "prog &", "(prog)", "prog `x`", "prog #x",
    "prog !x", "prog\targ", "prog\narg", "-prog", "%1", "prog a\u00e9",
])
def test_anything_bash_would_interpret_keeps_bash(command):
    assert direct.plain_words(command) is None


def env_of(argv, env, cwd, executable=None) -> dict:
    out = subprocess.run(argv, executable=executable, env=env, cwd=cwd, capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.parametrize("extra", [
    {},                                                   # no PWD, no SHLVL: bash sets them
    {"PWD": "{cwd}", "SHLVL": "3"},                       # right: kept
    {"PWD": "/", "SHLVL": "0", "OLDPWD": "/nonexistent"},  # wrong PWD, OLDPWD not a dir
    {"PWD": "{link}", "OLDPWD": "/tmp", "_": "/usr/bin/gbatch"},  # a symlink to cwd: kept
])
def test_the_environment_is_what_bash_c_gives(tmp_path, extra):
    cwd = tmp_path / "run"
    cwd.mkdir()
    link = tmp_path / "link"
    link.symlink_to(cwd)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "X": "y"}
    env.update({k: v.format(cwd=cwd, link=link) for k, v in extra.items()})
    words = direct.plain_words("env")
    assert words == ["env"]
    ready = direct.prepare(words, env, str(cwd))
    assert ready is not None
    executable, direct_env = ready
    via_bash = env_of(["bash", "-c", "env"], env, str(cwd))
    exec_d = env_of(words, direct_env, str(cwd), executable=executable)
    assert exec_d == via_bash


def test_a_relative_program_and_its_underscore(tmp_path):
    script = tmp_path / "show.sh"
    script.write_text("#!/bin/sh\nenv\n")
    script.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PWD": str(tmp_path), "SHLVL": "1"}
    words = direct.plain_words("./show.sh")
    executable, direct_env = direct.prepare(words, env, str(tmp_path))
    via_bash = env_of(["bash", "-c", "./show.sh"], env, str(tmp_path))
    assert env_of(words, direct_env, str(tmp_path), executable=executable) == via_bash


@pytest.mark.parametrize("env", [
    {"PATH": "/usr/bin:/bin", "BASH_ENV": "/x"},            # bash would source it first
    {"PATH": "/usr/bin:/bin", "SHELLOPTS": "xtrace"},
    {"PATH": "/usr/bin:/bin", "BASH_FUNC_sleep%%": "() { echo fn; }"},
    {"PATH": "/usr/bin:/bin", "SHLVL": "007"},              # bash would rewrite it
    {"PATH": "/usr/bin:/bin", "SHLVL": "abc"},
    {"PATH": ".:/usr/bin:/bin"},                            # a relative entry comes first
    {"PATH": "/nonexistent"},                               # not found: bash says so
    {},                                                     # no PATH at all
])
def test_when_only_bash_can_tell_it_runs_the_job(env):
    assert direct.prepare(["sleep", "1"], env, "/") is None


def test_a_script_without_shebang_falls_back_to_bash(tmp_path):
    """exec fails (ENOEXEC); bash runs such a file as a script: so does the job."""
    script = tmp_path / "noshebang"
    script.write_text("echo ran-by-bash\n")
    script.chmod(0o755)
    log = tmp_path / "log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        spec = {"id": 1, "direct": ["./noshebang"], "argv": ["bash", "-c", "./noshebang"],
                "cwd": str(tmp_path)}
        options = dict(cwd=str(tmp_path), env={"PATH": "/usr/bin:/bin"},
                       stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                       process_group=0, close_fds=True)
        assert monitor.start_job(spec, options, None).wait(10) == 0
    finally:
        os.close(fd)
    assert log.read_text() == "ran-by-bash\n"


def test_the_launcher_offers_the_words_and_the_monitor_execs_them(tmp_path):
    launcher, _rec = make_launcher(tmp_path)
    p = paths_in(tmp_path)
    try:
        launcher.start({"id": 1, "command": f"{sys.executable} -c pass", "run_dir": str(tmp_path),
                        "gpu_ids": [], "env": {"PATH": os.environ["PATH"]}})
        launcher.start({"id": 2, "command": "echo $HOME", "run_dir": str(tmp_path),
                        "gpu_ids": [], "env": {"PATH": os.environ["PATH"]}})
        for job_id in (1, 2):
            deadline = time.monotonic() + 20
            while not p.job_status(job_id).exists():
                assert time.monotonic() < deadline, "the jobs did not end"
                time.sleep(0.02)
        spec1 = json.loads((p.logs_dir / "1.spec.json").read_text())
        spec2 = json.loads((p.logs_dir / "2.spec.json").read_text())
        assert spec1["direct"] == [sys.executable, "-c", "pass"]
        assert spec1["argv"] == ["bash", "-c", f"{sys.executable} -c pass"]   # the fallback
        assert spec2["direct"] is None
    finally:
        launcher.forks.close()
    assert jobcmd.direct_words(["bash", "-c", "a b", "extra"]) is None
    assert jobcmd.direct_words(["/x/script.sh"]) is None


def test_a_job_run_as_another_account_always_goes_through_bash(monkeypatch, tmp_path):
    """The direct exec is for the daemon's own account only: a job run as its submitter
    keeps `bash -c` (the account's start-up is bash's to do)."""
    started = []
    monkeypatch.setattr(monitor.subprocess, "Popen",
                        lambda argv, **kw: started.append((argv, kw.get("executable"))))
    spec = {"argv": ["bash", "-c", "sleep 1"], "direct": ["sleep", "1"], "cwd": str(tmp_path)}
    options = {"env": {"PATH": "/usr/bin:/bin"}}
    monitor.start_job(spec, options, account=object())
    assert started == [(["bash", "-c", "sleep 1"], None)]
    monitor.start_job(spec, options, account=None)        # the daemon's own: direct
    assert started[1][0] == ["sleep", "1"] and started[1][1].endswith("/sleep")
