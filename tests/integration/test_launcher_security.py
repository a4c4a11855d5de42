"""Attacks on a real launcher and daemon, each refused: a job run as its submitter cannot
touch its monitor or its log, a planted log symlink writes nothing, a job that kills its
monitor leaves no process behind, and squatting the old channel names stops nothing."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import socket
import stat
import subprocess
import time

import psutil
import pytest

from conftest import wait_for
from launcher_helpers import make_launcher
from multiuser import Accounts, need_root, shared_dir

from gflow.paths import Paths


@pytest.fixture
def account():
    need_root()
    accounts = Accounts()
    try:
        yield accounts.user("job")
    finally:
        accounts.remove()


def launcher_in(home):
    paths = Paths.from_env({"HOME": str(home)})
    os.makedirs(paths.logs_dir, mode=0o755)       # traversable: the account tries its log
    return make_launcher(home, paths)


def run_job(launcher, rec, spec, timeout=30.0) -> dict:
    launcher.start(spec)
    deadline = time.monotonic() + timeout
    while True:
        with launcher.lock:
            launcher.check(spec["id"])
        done = [m[2] for m in rec.sent if m[0] == "exited" and m[1] == spec["id"]]
        if done:
            return done[0]
        assert time.monotonic() < deadline, "the job was never reported"
        time.sleep(0.05)


def as_account(acct, script: str) -> str:
    return subprocess.run(["bash", "-c", script], user=acct.uid, group=acct.gid,
                          extra_groups=acct.groups, capture_output=True, text=True,
                          timeout=30, cwd="/").stdout


def test_a_job_runs_as_its_submitter_under_a_root_monitor(account):
    base = shared_dir("gflow-runas-")
    try:
        launcher, rec = launcher_in(base)
        work = base / "work"
        work.mkdir()
        work.chmod(0o777)
        script = ("id -u; id -G; echo \"HOME=$HOME USER=$USER LOGNAME=$LOGNAME\"; "
                  "touch made; kill -9 $PPID 2>/dev/null || echo cannot-kill-monitor")
        info = run_job(launcher, rec, {
            "id": 1, "command": script, "run_dir": str(work), "gpu_ids": [],
            "run_as_user": account.name, "umask": 0o027,
            # The captured environment names root's home: the account's own wins.
            "env": {"PATH": "/usr/bin:/bin", "HOME": "/root", "USER": "root"}})
        assert info["exit_code"] == 0, info
        log = launcher.paths.job_log(1)
        lines = log.read_text().splitlines()
        assert int(lines[0]) == account.uid
        assert sorted(map(int, lines[1].split())) == sorted(set(account.groups))
        assert lines[2] == f"HOME={account.home} USER={account.name} LOGNAME={account.name}"
        # The job cannot kill its monitor (root), so its status is the monitor's truth.
        assert lines[3] == "cannot-kill-monitor"
        made = (work / "made").stat()
        assert (made.st_uid, made.st_gid) == (account.uid, account.gid)
        assert stat.S_IMODE(made.st_mode) == 0o640         # the submitter's umask 027
        st = log.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, account.gid, 0o640)
        status = launcher.paths.job_status(1)
        assert status.stat().st_uid == 0 and stat.S_IMODE(status.stat().st_mode) == 0o600
        # The account reads its log, and cannot write it.
        out = as_account(account, f"cat {log} >/dev/null && echo read-ok; "
                                  f"(echo forged >> {log}) 2>/dev/null || echo write-refused")
        assert out.split() == ["read-ok", "write-refused"]
        assert "forged" not in log.read_text()
    finally:
        subprocess.run(["rm", "-rf", str(base)])


def test_a_run_directory_the_submitter_cannot_enter_is_refused(account):
    base = shared_dir("gflow-runas-")
    try:
        launcher, rec = launcher_in(base)
        private = base / "root-only"
        private.mkdir(mode=0o700)
        info = run_job(launcher, rec, {
            "id": 2, "command": "touch should-not-exist", "run_dir": str(private),
            "gpu_ids": [], "run_as_user": account.name, "env": {"PATH": "/usr/bin:/bin"}})
        assert info["exit_code"] is None
        assert info["detail"] == (f"cannot enter the run directory {private} as "
                                  f"{account.name}: Permission denied")
        assert not (private / "should-not-exist").exists()
        assert "cannot enter the run directory" in launcher.paths.job_log(2).read_text()
    finally:
        subprocess.run(["rm", "-rf", str(base)])


def test_a_symlink_planted_at_the_log_fails_the_job_and_writes_nothing(daemon_factory,
                                                                        tmp_path):
    d = daemon_factory()
    d.start()
    target = tmp_path / "victim"
    target.write_text("precious\n")
    (d.logs / "1.log").symlink_to(target)
    marker = tmp_path / "ran"
    d.ok("gbatch", "bash", "-c", f"echo pwned; touch {marker}")
    job = d.wait_state(1, ("Failed", "Finished"))
    assert job["state"] == "Failed"
    assert job["reason_detail"] == (f"the job's log {d.logs / '1.log'} is a symbolic link: "
                                    "refusing to write through it")
    assert target.read_text() == "precious\n" and not marker.exists()
    assert (d.logs / "1.log").is_symlink()


def test_a_job_that_kills_its_monitor_leaves_nothing_before_its_gpu_is_reused(
        daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="1")
    d.start()
    pidfile = tmp_path / "job.pid"
    d.ok("gbatch", "--gpus", "1", "bash", "-c", f"echo $$ > {pidfile}; kill -9 $PPID; sleep 60")
    # The next job on that GPU looks for the first one's process.
    d.ok("gbatch", "--gpus", "1", "bash", "-c",
         f"p=$(cat {pidfile}); if [ -e /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status; "
         f"then echo still-running; else echo gone; fi")
    job = d.wait_state(1, ("Failed", "Finished"), timeout=30)
    assert job["state"] == "Failed"
    assert job["reason_detail"] == ("the job's monitor vanished (killed by SIGKILL) without "
                                    "recording an exit status; the job's processes were killed")
    pid = int(pidfile.read_text())
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if (proc.info["cmdline"] == ["sleep", "60"]
                    and proc.environ().get("GFLOW_JOB_ID") == "1"
                    and proc.environ().get("HOME") == str(d.home)
                    and proc.status() != psutil.STATUS_ZOMBIE):
                leftovers.append(proc)
        except psutil.Error:
            continue
    assert leftovers == []
    try:
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass
    assert d.wait_state(2, ("Finished", "Failed"))["state"] == "Finished"
    assert (d.logs / "2.log").read_text() == "gone\n"


def test_squatting_the_old_channel_names_does_not_stop_gflowd(daemon_factory):
    d = daemon_factory()
    # The abstract names gflowd used: one namespace for every account on the machine.
    token = hashlib.sha1(str(d.data_dir).encode()).hexdigest()[:16]
    squatters = []
    for name in (f"\0gflowd-hub-{token}", f"\0gflowd-notify-{token}"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM if "notify" in name
                          else socket.SOCK_STREAM)
        s.bind(name)
        squatters.append(s)
    try:
        d.start()
        d.ok("gbatch", "true")
        assert d.wait_state(1, ("Finished", "Failed"))["state"] == "Finished"
        run = d.data_dir / "run"
        st = os.stat(run)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o700)
        assert stat.S_ISSOCK(os.lstat(run / "hub.sock").st_mode)
        assert stat.S_ISSOCK(os.lstat(run / "notify.sock").st_mode)
        lock = json.loads((d.data_dir / "gflowd.lock").read_text())
        assert lock["pid"] == d.master_pid()
    finally:
        for s in squatters:
            s.close()
    d.ok("gflowd", "down")
    wait_for(lambda: not (d.data_dir / "run" / "hub.sock").exists(),
             what="the hub socket to be removed")


def test_the_account_name_is_checked_before_anything_runs(account):
    """An account removed between submission and start fails the job, never runs it."""
    base = shared_dir("gflow-runas-")
    try:
        launcher, rec = launcher_in(base)
        gone = account.name + "x"
        with pytest.raises(KeyError):
            pwd.getpwnam(gone)
        info = run_job(launcher, rec, {"id": 3, "command": "touch x", "run_dir": str(base),
                                       "gpu_ids": [], "run_as_user": gone, "env": {}})
        assert info == {"exit_code": None, "detail": f"account {gone} does not exist",
                        "finished_at": info["finished_at"]}
    finally:
        subprocess.run(["rm", "-rf", str(base)])


def test_the_data_dir_is_private_and_a_writable_one_is_refused(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    d.start()
    assert (d.data_dir.stat().st_mode & 0o777) == 0o700
    assert (d.logs.stat().st_mode & 0o777) == 0o700
    d.ok("gflowd", "down")
    d.data_dir.chmod(0o777)
    res = d.run("gflowd", "up")
    assert res.returncode == 1
    assert f"{d.data_dir} is writable by others (mode 777)" in res.stderr, res.stderr
    assert f"chmod 700 {d.data_dir}" in res.stderr
    d.data_dir.chmod(0o755)                      # readable only: tightened, then served
    d.start()
    assert (d.data_dir.stat().st_mode & 0o777) == 0o700
