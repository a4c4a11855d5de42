"""One box, many people: a root gflowd with throwaway accounts (CI runs as root).

Account A's job runs as A; account B can neither change it through our commands nor by
raw HTTP over loopback TCP or the Unix socket; B cannot submit as A; an admin-group
member can change anyone's job; a caller the daemon cannot identify reads but never
changes; a daemon run by an ordinary account refuses other accounts' submissions.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import pytest

from conftest import Daemon, free_port
from multiuser import Accounts, gflow_venv, need_root, raw_http, run_as, shared_dir



@pytest.fixture(scope="module")
def box(tmp_path_factory):
    need_root()
    accounts = Accounts()
    base = shared_dir("gflow-mu-")
    daemons: list[Daemon] = []
    try:
        admins = accounts.group("adm")
        box = type("Box", (), {})()
        box.a = accounts.user("a")
        box.b = accounts.user("b")
        box.c = accounts.user("c", groups=(admins,))
        box.bin = gflow_venv(base)
        run_dir = base / "run"
        run_dir.mkdir(mode=0o755)
        box.socket = str(run_dir / "gflowd.sock")
        home = tmp_path_factory.mktemp("identity-home")
        config = home / ".config" / "gflow"
        config.mkdir(parents=True)
        (config / "gflow.toml").write_text(f'[security]\nadmin_group = "{admins}"\n')
        d = Daemon(home, fake_gpus="2", extra_env={"GFLOW_RUN_AS": "submitter",
                                                   "GFLOW_DAEMON_SOCKET": box.socket})
        daemons.append(d)
        d.start()
        box.daemon = d
        box.base = base
        box.accounts = accounts
        box.daemons = daemons
        yield box
    finally:
        for d in daemons:
            d.stop()
        accounts.remove()
        shutil.rmtree(base, ignore_errors=True)


def client_env(box, *, socket: bool = True) -> dict:
    env = {"GFLOW_DAEMON_HOST": "127.0.0.1", "GFLOW_DAEMON_PORT": str(box.daemon.port)}
    env["GFLOW_DAEMON_SOCKET"] = box.socket if socket else ""
    return env


def as_user(box, account, tool, *args, socket: bool = True, **kw):
    return run_as(account, [box.bin / tool, *args], env=client_env(box, socket=socket), **kw)


def submit(box, account, command: str, *args, **kw) -> int:
    res = as_user(box, account, "gbatch", *args, "bash", "-c", command, **kw)
    assert res.returncode == 0, (res.stdout, res.stderr)
    return int(res.stdout.split("job")[1].split()[0])


def test_a_job_runs_as_its_submitter_and_its_files_are_theirs(box):
    a = box.a
    job_id = submit(box, a, "id -u; id -G; touch $HOME/made-by-job; echo home=$HOME",
                    umask=0o027)
    job = box.daemon.wait_state(job_id, ("Finished", "Failed"), timeout=30)
    log = (box.daemon.logs / f"{job_id}.log").read_text()
    assert job["state"] == "Finished", (job, log)
    lines = log.split()
    assert lines[0] == str(a.uid), log
    assert sorted(map(int, lines[1:1 + len(a.groups)])) == sorted(a.groups), log
    assert f"home={a.home}" in log
    made = a.home / "made-by-job"
    assert made.stat().st_uid == a.uid and made.stat().st_gid == a.gid
    assert stat.S_IMODE(made.stat().st_mode) == 0o640       # the submitter's umask, 027
    assert job["submitted_by"] == a.name
    # The log is the submitter's to read and nobody else's to write.
    st = (box.daemon.logs / f"{job_id}.log").stat()
    assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def test_another_account_cannot_touch_the_job(box):
    a, b = box.a, box.b
    job_id = submit(box, a, "sleep 300")
    box.daemon.wait_state(job_id, "Running")
    waiting = submit(box, a, "true", "--depends-on", str(job_id))   # queued behind it
    finished = submit(box, a, "true")
    box.daemon.wait_state(finished, "Finished")
    for target, tool, args in ((job_id, "gcancel", []), (waiting, "gjob", ["hold"]),
                               (waiting, "gjob", ["update", "--priority", "1"]),
                               (finished, "gjob", ["redo"])):
        refusal = f"job {target} belongs to {a.name}; only {a.name} or a gflow admin may"
        argv = [*args[:1], str(target), *args[1:]]
        for socket in (True, False):
            res = as_user(box, b, tool, *argv, socket=socket)
            text = res.stdout + res.stderr
            assert res.returncode == 1, (tool, argv, text)
            assert refusal in text, (tool, argv, text)
    refusal = f"job {job_id} belongs to {a.name}; only {a.name} or a gflow admin may"
    for action in ("cancel", "finish", "fail", "hold"):
        status, body = raw_http(b, "POST", "", f"/jobs/{job_id}/{action}",
                                port=box.daemon.port)
        assert status == 403 and refusal in body, (action, status, body)
        status, body = raw_http(b, "POST", box.socket, f"/jobs/{job_id}/{action}")
        assert status == 403 and refusal in body, (action, status, body)
    assert box.daemon.job(job_id)["state"] == "Running"
    assert box.daemon.job(waiting)["state"] == "Queued"
    assert box.daemon.job(waiting)["priority"] == 10
    # A may; so may a member of the admin group.
    res = as_user(box, box.c, "gcancel", str(job_id))
    assert res.returncode == 0, res.stdout + res.stderr
    box.daemon.wait_state(job_id, "Cancelled")
    own = submit(box, a, "sleep 300")
    box.daemon.wait_state(own, "Running")
    res = as_user(box, a, "gcancel", str(own), socket=False)
    assert res.returncode == 0, res.stdout + res.stderr
    box.daemon.wait_state(own, "Cancelled")


def test_submitting_as_someone_else_is_refused(box):
    a, b = box.a, box.b
    body = json.dumps({"command": "id", "submitted_by": a.name, "run_dir": "/tmp"})
    for target in ("", box.socket):
        status, text = raw_http(b, "POST", target, "/jobs", body=body, port=box.daemon.port)
        assert status == 403, (status, text)
        assert f"you are {b.name}; only a gflow admin may submit jobs as {a.name}" in text
    # Naming nobody, or oneself, is fine; the owner is always the verified caller.
    status, text = raw_http(b, "POST", box.socket, "/jobs",
                            body=json.dumps({"command": "true", "run_dir": "/tmp"}))
    assert status in (200, 201), text
    job = box.daemon.job(json.loads(text)["id"])
    assert job["submitted_by"] == b.name


def test_only_admins_change_the_gpus(box):
    res = as_user(box, box.b, "gctl", "set-gpus", "0")
    assert res.returncode == 1
    assert "only a gflow admin may change the GPUs gflow may use" in res.stdout + res.stderr
    res = as_user(box, box.c, "gctl", "set-gpus", "all")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_environment_is_for_the_owner_only(box):
    a, b = box.a, box.b
    res = run_as(a, [box.bin / "gbatch", "bash", "-c", "true"],
                 env={**client_env(box), "SECRET_TOKEN": "hunter2"})
    assert res.returncode == 0, res.stderr
    job_id = int(res.stdout.split("job")[1].split()[0])
    status, body = raw_http(b, "GET", box.socket, f"/jobs/{job_id}?env=1")
    assert "hunter2" not in body
    status, body = raw_http(a, "GET", box.socket, f"/jobs/{job_id}?env=1")
    assert status == 200 and "hunter2" in body


def test_an_unidentified_caller_reads_but_never_changes(box, tmp_path_factory):
    # Make the owner lookup fail: the daemon reads the socket tables from an empty dir.
    home = tmp_path_factory.mktemp("anon-home")
    d = Daemon(home, fake_gpus="1", extra_env={"GFLOW_RUN_AS": "submitter",
                                               "GFLOW_DAEMON_SOCKET": "",
                                               "GFLOW_PEER_TABLES": str(home / "none")})
    box.daemons.append(d)
    d.start()
    status, body = d.http("GET", "/jobs")
    assert status == 200
    status, body = d.http("POST", "/jobs", {"command": "true", "run_dir": "/tmp"})
    assert status == 403 and "anonymous callers may not change anything" in body["error"]
    status, body = d.http("POST", "/jobs/1/cancel")
    assert status == 403
    assert d.http("GET", "/health")[0] == 200


def test_a_user_daemon_refuses_other_accounts(box, tmp_path_factory):
    a, b = box.a, box.b
    port = free_port()
    env = {"GFLOW_DAEMON_HOST": "127.0.0.1", "GFLOW_DAEMON_PORT": str(port),
           "GFLOW_FAKE_GPUS": "1"}
    res = run_as(a, [box.bin / "gflowd", "up"], env=env, timeout=90)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        # B's client will not even talk to a daemon run by A unless told to trust A...
        res = run_as(b, [box.bin / "gbatch", "true"], env=env)
        assert res.returncode == 1
        assert f"it is served by {a.name}, not by root or you" in res.stdout + res.stderr
        # ...and when it does, the daemon refuses with the fix in the sentence.
        res = run_as(b, [box.bin / "gbatch", "true"], env={**env, "GFLOW_DAEMON_USER": a.name})
        assert res.returncode == 1
        assert (f"this gflowd runs as {a.name} and runs only {a.name}'s jobs"
                in res.stdout + res.stderr), res.stdout + res.stderr
        res = run_as(a, [box.bin / "gbatch", "true"], env=env)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        run_as(a, [box.bin / "gflowd", "down"], env=env, timeout=90)
        subprocess.run(["pkill", "-KILL", "-u", a.name], capture_output=True)
