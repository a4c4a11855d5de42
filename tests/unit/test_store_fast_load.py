"""Issue 21: loading decodes each job once, and a clean stop with an empty WAL writes nothing.

A state.msgpack that still matches the sum we recorded when we wrote it (state.msgpack.sum)
and a full job record in the WAL are taken as they are; anything else, or anything that
fails the cheap checks, goes through the checked decoder exactly as before."""

import gc
import shutil
from pathlib import Path
from types import SimpleNamespace

import msgpack

from gflow.models import Job, JobState, job_to_wire
from gflow.scheduler.service import SchedulerLoop
from gflow.store import SNAPSHOT_NAME, WAL_NAME, Store, StoreState
from gflow.store.snapshot import SUM_NAME, normalize_job, snapshot_sum
from gflow.store.wal import frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "state"


def varied_jobs() -> dict:
    jobs = [
        Job(id=1, command="echo 1", submitted_at=1795500000.123456789, state=JobState.FAILED,
            started_at=1795500001.5, finished_at=1795500009.000000001, exit_code=3,
            reason_detail="exit code 3", env={"PATH": "/usr/bin"}, umask=0o22,
            parameters={"lr": "0.1"}, time_limit=90.5, gpus=2, gpu_ids=[0, 1]),
        Job(id=2, script="/tmp/x.sh", submitted_at=1795500002.0, depends_on_ids=[1],
            dependency_conditions={"1": "afterok"}, max_retries=2, scheduled_at=1795600000.25,
            project="p", run_name="r", priority=20, group_id="afd540d3-5174-42e4-b8e9-254872aee375",
            max_concurrent=3, memory_limit_mb=100),
        Job(id=4, command="sleep 9", state=JobState.HOLD, submitted_by="alice"),
    ]
    return {j.id: job_to_wire(j, with_env=True) for j in jobs}


def load(d):
    store = Store(d, fsync=False)
    return store, store.load()


def test_own_snapshot_loads_as_the_checked_path_does(tmp_path):
    store, _ = load(tmp_path)
    store.snapshot(StoreState(jobs=varied_jobs(), next_job_id=5))
    raw = (tmp_path / SNAPSHOT_NAME).read_bytes()
    assert (tmp_path / SUM_NAME).read_bytes() == snapshot_sum(raw)
    _, fast = load(tmp_path)
    (tmp_path / SUM_NAME).unlink()
    _, checked = load(tmp_path)
    assert fast.jobs == checked.jobs                      # job 3 is a placeholder in both
    assert list(fast.jobs) == [1, 2, 3, 4] and fast.jobs[3]["state"] == "Cancelled"
    assert fast.jobs == {i: normalize_job(j) for i, j in fast.jobs.items()}
    assert fast.next_job_id == checked.next_job_id == 5
    assert gc.isenabled()                                 # paused during the load only


def test_a_file_that_is_not_the_one_we_wrote_is_checked(tmp_path):
    store, _ = load(tmp_path)
    store.snapshot(StoreState(jobs=varied_jobs()))
    # 0.4.13 (or anyone) replaced state.msgpack since: its sum no longer matches.
    shutil.copyfile(FIXTURES / "v4_0413_state.msgpack", tmp_path / SNAPSHOT_NAME)
    _, back = load(tmp_path)
    assert back.mode == "normal" and list(back.jobs) == [1, 2, 3]
    assert back.jobs == {i: normalize_job(j) for i, j in back.jobs.items()}
    assert back.jobs[3]["reason"] == "CancelledByUser"


def _write_with_sum(d: Path, top: dict) -> None:
    raw = msgpack.packb(top, use_bin_type=True)
    (d / SNAPSHOT_NAME).write_bytes(raw)
    (d / SUM_NAME).write_bytes(snapshot_sum(raw))


def test_a_matching_sum_does_not_let_a_bad_job_through(tmp_path):
    store, _ = load(tmp_path)
    store.snapshot(StoreState(jobs=varied_jobs()))
    top = msgpack.unpackb((tmp_path / SNAPSHOT_NAME).read_bytes(), raw=False)
    top["job_runtimes"][0]["state"] = "Bogus"             # fails the cheap checks
    _write_with_sum(tmp_path, top)
    _, back = load(tmp_path)
    assert back.mode == "journal"                         # as without a sum: recovery mode
    assert "Failed to deserialize" in back.detail


def test_a_matching_sum_still_normalises_jobs_with_other_keys(tmp_path):
    top = {"version": 4, "job_specs": [{"command": "x"}],
           "job_runtimes": [{"id": 1, "state": "Queued", "priority": 10, "gpus": 0,
                             "started_at": [1795500000, 5]}],
           "next_job_id": 2}
    _write_with_sum(tmp_path, top)
    _, back = load(tmp_path)
    assert back.jobs[1] == normalize_job({**top["job_specs"][0], **top["job_runtimes"][0]})
    assert back.jobs[1]["started_at"] == {"secs_since_epoch": 1795500000,
                                          "nanos_since_epoch": 5}


def test_wal_full_records_are_taken_as_written_others_checked(tmp_path):
    jobs = varied_jobs()
    data = b"".join(frame({"op": "job", "job": j}) for j in jobs.values())
    partial = {"id": 7, "command": "y", "submitted_at": [1795500000, 1]}
    bad_full = {**jobs[4], "id": 8, "state": "Bogus"}
    data += frame({"op": "job", "job": partial}) + frame({"op": "job", "job": bad_full})
    (tmp_path / WAL_NAME).write_bytes(data)
    _, back = load(tmp_path)
    assert list(back.jobs) == [1, 2, 4, 7]
    for jid, job in jobs.items():
        assert back.jobs[jid] == job == normalize_job(job)
    assert back.jobs[7] == normalize_job(partial)
    assert "skipped a record" in back.replay_note         # job 8: checked, refused


# --- the scheduler's clean stop ------------------------------------------------------------

class _Store:
    def __init__(self, wal_bytes):
        self.wal_bytes = wal_bytes
        self.snapshots = 0
        self.snapshot_path = Path("/nonexistent/state.msgpack")

    def commit(self):
        pass

    def snapshot(self, state):
        self.snapshots += 1
        self.wal_bytes = 0

    def close(self):
        pass


def _loop(wal_bytes):
    store = _Store(wal_bytes)
    core = SimpleNamespace(store=store, snapshot_state=StoreState)
    hub = SimpleNamespace(close=lambda: None)
    config = SimpleNamespace(scheduler=SimpleNamespace(snapshot_wal_bytes=16 << 20))
    return SchedulerLoop(core, hub, config), store


def test_clean_stop_with_an_empty_wal_writes_no_snapshot():
    loop, store = _loop(0)
    loop.shutdown()
    assert store.snapshots == 0


def test_clean_stop_folds_a_non_empty_wal_into_the_snapshot():
    # state.msgpack stays complete on its own after `gflowd down` (0.4.13 reads only it).
    loop, store = _loop(123)
    loop.shutdown()
    assert store.snapshots == 1


# --- `gflowd down` ------------------------------------------------------------------------

def test_down_never_signals_pid_minus_one(tmp_path, monkeypatch):
    """A lock held before its holder wrote its pid: `down` refuses instead of kill(-1)."""
    import fcntl
    import os

    import pytest

    from gflow.cli import gflowd
    from gflow.cli.common import CommandError
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    lock = gflowd.paths().lock_file
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)              # held, but empty: no pid yet
        killed = []
        monkeypatch.setattr(os, "kill", lambda *a: killed.append(a))
        with pytest.raises(CommandError, match="names no pid yet"):
            gflowd.cmd_down(SimpleNamespace())
        assert killed == []
    finally:
        os.close(fd)


def test_wait_gone_is_woken_by_the_exit(tmp_path, monkeypatch):
    import subprocess
    import time

    from gflow.cli import gflowd
    monkeypatch.setenv("HOME", str(tmp_path))
    proc = subprocess.Popen(["sleep", "0.3"])
    try:
        monkeypatch.setattr(gflowd, "running_pid", lambda lock_file: proc.pid)
        t0 = time.monotonic()
        # Our own child stays a zombie until reaped, so only the pidfd can see it end.
        assert gflowd.wait_gone(proc.pid, 5.0)
        assert time.monotonic() - t0 < 2.0
    finally:
        proc.wait()


def test_master_wakes_when_a_restart_is_due():
    """A worker restart after its backoff is not up to a second late (the loop's wait)."""
    import time

    from gflow.daemon.master import LOG_CHECK_SECS, Master, Worker
    master = Master.__new__(Master)             # only the workers table is needed
    master.workers = {"api": Worker("api"), "launcher": Worker("launcher")}
    assert master.wake_in() == LOG_CHECK_SECS
    master.workers["api"].restart_at = time.monotonic() + 0.25
    assert 0.0 < master.wake_in() <= 0.25
    master.workers["launcher"].restart_at = time.monotonic() - 1.0
    assert master.wake_in() == 0.0


# --- replies that need no commit do not wait for the pass -------------------------------------

def test_reads_are_answered_before_the_pass_changes_after_their_commit(tmp_path):
    from test_api_hardening import FakePeer, loop_for
    from test_api_routes import OWN, FakeClock, make_core
    core = make_core(tmp_path, FakeClock())
    loop = loop_for(core)
    order = []
    peer = FakePeer()
    send = peer.send
    peer.send = lambda msg: (order.append("reply"), send(msg))[1]
    run_pass = core.run_pass
    core.run_pass = lambda: (order.append("pass"), run_pass())[1]
    core.pass_needed = True
    loop.hub.inbox.put((peer, ("req", 0, "health", {}, OWN)))
    loop.step(0.0)
    assert order == ["reply", "pass"] and peer.replies[0][0] == 200
    order.clear()
    core.pass_needed = True
    loop.hub.inbox.put((peer, ("req", 1, "submit", {"command": "x"}, OWN)))
    loop.step(0.0)
    assert order == ["pass", "reply"] and peer.replies[1][0] == 201   # after the commit
    assert not core.store.pending
