"""A dependent job's start path (issue 21): what each hop writes durably, in which order,
and what it no longer does on the way (a walk of the process tree, fsyncs that only a
power loss could need: tests/unit/test_launcher_boots.py covers what replaces them)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from gflow.launcher import safefs
from gflow.launcher.service import Tracked
from launcher_helpers import make_launcher, paths_in

# --- safefs ----------------------------------------------------------------------------


def fsyncs(monkeypatch) -> list:
    """The paths os.fsync is called on, in order."""
    seen = []
    real = os.fsync

    def fsync(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_before_sync_sees_the_whole_file_in_place_before_any_fsync(tmp_path, monkeypatch):
    seen = fsyncs(monkeypatch)
    path = tmp_path / "status.json"
    at_call = []
    safefs.write_json_atomic(path, {"a": 1}, before_sync=lambda: at_call.append(
        (json.loads(path.read_text()), list(seen))))
    assert at_call == [({"a": 1}, [])]
    assert seen == [str(path), str(tmp_path)]          # the file, then its directory
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_not_durable_write_is_atomic_without_fsync(tmp_path, monkeypatch):
    seen = fsyncs(monkeypatch)
    path = tmp_path / "1.pid"
    safefs.write_json_atomic(path, {"a": 1}, durable=False)
    safefs.write_json_atomic(path, {"a": 2}, durable=False)
    assert json.loads(path.read_text()) == {"a": 2} and seen == []
    assert [p.name for p in tmp_path.iterdir()] == ["1.pid"]


# --- the monitor: no fsync before the job, status seen before its fsync ----------------

MONITOR = """
import json, os, sys
from gflow.launcher import monitor
log = []
real_fsync, real_start, real_notify = os.fsync, monitor.start_job, monitor.notify
def fsync(fd):
    log.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
    return real_fsync(fd)
def start_job(*a):
    log.append(("start",))
    return real_start(*a)
def notify(address, job_id):
    status = json.load(open(spec["status_path"]))
    log.append(("notify", status["exit_code"]))
os.fsync, monitor.start_job, monitor.notify = fsync, start_job, notify
spec = json.load(open(sys.argv[1]))
rc = monitor.main(["gflow-monitor", sys.argv[1]])
json.dump(log, open(sys.argv[2], "w"))
sys.exit(rc)
"""


def run_monitor(tmp_path, env=None) -> tuple[list, dict, object]:
    p = paths_in(tmp_path)
    marker = tmp_path / "ran"
    spec = {"id": 1, "argv": ["bash", "-c", f"touch {marker}; exit 3"], "direct": None,
            "cwd": str(tmp_path), "env": {"PATH": os.environ["PATH"]}, "notify": None,
            "log_path": str(p.job_log(1)), "status_path": str(p.job_status(1)),
            "pid_path": str(p.job_pidfile(1))}
    spec_path = p.logs_dir / "1.spec.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / "log.json"
    subprocess.run([sys.executable, "-c", MONITOR, str(spec_path), str(out)], timeout=60,
                   check=True, env=dict(os.environ, **(env or {})), start_new_session=True)
    return json.loads(out.read_text()), json.loads(p.job_status(1).read_text()), marker


def test_nothing_is_fsynced_before_the_job_starts_and_the_pid_file_never(tmp_path):
    """The spec is not synced (the launcher's adoption does not trust a missing one after
    a machine restart: boots.py); the status is, after the launcher was told."""
    log, status, marker = run_monitor(tmp_path)
    assert status["exit_code"] == 3 and marker.exists()
    steps = [tuple(e) for e in log]
    started = steps.index(("start",))
    assert not [e for e in steps[:started] if e[0] == "fsync"]
    assert not any(e[0] == "fsync" and e[1].startswith("1.pid") for e in steps)
    # The launcher hears of the end with the status in place, before its fsyncs.
    notified = steps.index(("notify", 3))
    assert [e for e in steps[notified:] if e[0] == "fsync"] == [("fsync", "1.status"),
                                                               ("fsync", "logs")]


# --- the launcher -------------------------------------------------------------------------

def test_an_ended_job_is_reported_without_walking_its_tree(tmp_path, caplog, monkeypatch):
    launcher, rec = make_launcher(tmp_path)
    p = launcher.paths
    p.job_pidfile(5).write_text(json.dumps({"monitor_pid": 999999999, "job_pid": 999999998}))
    p.job_status(5).write_text(json.dumps({"exit_code": 0, "finished_at": time.time()}))
    launcher.jobs[5] = Tracked(spec={"id": 5}, launched_at=time.time(), popen=object())
    monkeypatch.setattr(launcher, "_collect_tree", lambda t: pytest.fail("walked the tree"))
    with caplog.at_level(logging.INFO, logger="gflow.launcher"):
        launcher.check(5)
    assert rec.sent == [("exited", 5, json.loads(p.job_status(5).read_text()))]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("job 5 started pid=999999998") and "job 5 exited" in lines[1]
    assert launcher.jobs[5].job_pid == 999999998


def test_a_job_being_stopped_still_has_its_leftovers_killed(tmp_path, monkeypatch):
    launcher, rec = make_launcher(tmp_path)
    p = launcher.paths
    p.job_status(6).write_text(json.dumps({"exit_code": 143, "signal": 15}))
    launcher.jobs[6] = Tracked(spec={"id": 6}, launched_at=time.time(),
                               kill_deadline=time.time() + 30)
    killed = []
    monkeypatch.setattr(launcher, "_kill_tree", lambda t: killed.append(t))
    launcher.check(6)
    assert killed and rec.sent[0][:2] == ("exited", 6)
    assert rec.sent[0][2]["detail"] is None        # the scheduler's reason stands


def test_the_spec_is_in_place_before_the_spawn_and_never_fsynced(tmp_path, monkeypatch):
    launcher, rec = make_launcher(tmp_path)
    order = []
    real_spawn = launcher.forks.spawn
    spec_path = str(launcher.paths.logs_dir / "9.spec.json")

    def spawn(path):
        order.append(("spawn", json.loads(open(path).read())["id"]))
        return real_spawn(path)
    monkeypatch.setattr(launcher.forks, "spawn", spawn)
    real_fsync = os.fsync

    def fsync(fd):
        assert os.readlink(f"/proc/self/fd/{fd}") != spec_path, "the spec was fsynced"
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    try:
        launcher.start({"id": 9, "command": "true", "run_dir": str(tmp_path), "gpu_ids": [],
                        "env": {"PATH": os.environ["PATH"]}})
        assert order == [("spawn", 9)]
        deadline = time.monotonic() + 20
        while not launcher.paths.job_status(9).exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        launcher.forks.close()
    assert not rec.sent


# --- the scheduler: a start order waits for nothing else ----------------------------------

def test_start_orders_go_before_replies_and_events(tmp_path):
    from test_api_hardening import FakeHub, loop_for
    from test_api_routes import OWN, FakeClock, make_core
    sent = []

    class Hub(FakeHub):
        def send_to(self, role, msg):
            sent.append((role, msg[0]))
            return True

        def send_all(self, role, msg):
            sent.append((role, msg[0]))
            return 1

    class Peer:
        role = "api"

        def send(self, msg):
            sent.append(("reply", msg[2]))
            return True

    loop = loop_for(make_core(tmp_path, FakeClock()))
    loop.hub = Hub()
    loop.hub.inbox.put((Peer(), ("req", 0, "submit", {"command": "true"}, OWN)))
    loop.step(0.0)
    assert ("launcher", "start") in sent and ("reply", 201) in sent
    assert sent.index(("launcher", "start")) < sent.index(("reply", 201))
    events = [i for i, e in enumerate(sent) if e == ("api", "events")]
    assert all(sent.index(("launcher", "start")) < i for i in events)
