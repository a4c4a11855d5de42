"""Issue 23, scheduler side: what a lab noticed in its first week (recorded end times,
reservations that protect, GPU restrictions that end with the config, shared GPUs that
look busy, webhook order per job, GFLOW_FAKE_GPUS checked up front, reasons for jobs that
can never run), with a fake clock, fake GPUs and in-process servers."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gflow.scheduler.policy import ActiveReservation, Candidate, Occupant
from test_api_routes import FakeClock, make_core
from test_core import settle, submit
from test_policy import run


def events(core, name):
    return [e for e in core.events if e["event"] == name]


# --- 1. a job that ended while gflowd was down keeps its recorded end ---------------------

def test_exit_report_end_time_is_used_in_state_stats_and_webhooks(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    core.event_streams = 1                               # payloads are built
    a = submit(core)
    settle(core, False)
    started = core.jobs[a].started_at
    clock.t += 20                                        # gflowd was down; now it is back
    core.on_exited(a, {"exit_code": 5, "finished_at": started + 8})
    job = core.jobs[a]
    assert (job.state.value, job.exit_code, job.finished_at) == ("Failed", 5, started + 8)
    assert core.handle("stats", {})[1]["avg_runtime_secs"] == 8
    failed = events(core, "job_failed")[-1]
    assert failed["job"]["runtime"] == "00:00:08"
    assert failed["timestamp"] == failed["job"]["finished_at"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(started + 8))


@pytest.mark.parametrize("reported, expected", [
    ("future", "now"), ("before start", "start"), (None, "now"), ("junk", "now")])
def test_exit_report_end_time_is_kept_between_start_and_now(tmp_path, reported, expected):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    a = submit(core)
    settle(core, False)
    started = core.jobs[a].started_at
    clock.t += 30
    info = {"exit_code": 0}
    if reported is not None:
        info["finished_at"] = {"future": clock.t + 100, "before start": started - 100,
                               "junk": "yesterday"}[reported]
    core.on_exited(a, info)
    assert core.jobs[a].finished_at == {"now": clock.t, "start": started}[expected]


# --- 2. reservations protect their window ---------------------------------------------------
# 4 GPUs; alice reserved 2 from 03:30 (now: 03:15, 900 s before) for two hours.

NOW = 1_000_000.0
def alice_soon() -> list:
    return [ActiveReservation(user="alice", count=2, start=NOW + 900, end=NOW + 8100,
                              since="03:30", until="05:30")]


def place(cands, occupants=(), reservations=None, n_gpus=4):
    return run(cands, occupants, n_gpus=n_gpus, now=NOW, starvation_secs=1e9,
               reservations=alice_soon() if reservations is None else reservations)


def test_an_upcoming_count_reservation_keeps_unbounded_jobs_off_its_gpus():
    unbounded = Candidate(id=1, user="bob", gpus=3)
    d = place([unbounded])
    assert d.starts == []
    assert d.waiting[1][1] == ("waiting: 3 GPUs, 2 free; GPUs reserved for alice "
                               "from 03:30 until 05:30 (a job whose time limit ends before "
                               "then may start)")
    assert place([Candidate(id=2, user="bob", gpus=2)]).starts == [(2, [0, 1])]


def test_a_time_limit_that_ends_before_the_reservation_lets_a_job_start():
    assert place([Candidate(id=1, user="bob", gpus=3, time_limit=600)]).starts == [(1, [0, 1, 2])]
    overlapping = place([Candidate(id=2, user="bob", gpus=3, time_limit=40 * 60)])
    assert overlapping.starts == [] and "reserved for alice" in overlapping.waiting[2][1]
    # The owner is not held back by her own reservation.
    assert place([Candidate(id=3, user="alice", gpus=4)]).starts == [(3, [0, 1, 2, 3])]


def test_gpus_whose_jobs_end_before_the_reservation_count_as_free_then():
    bounded = [Occupant(id=9, user="carol", gpu_ids=(0, 1), ends_at=NOW + 300)]
    assert place([Candidate(id=1, user="bob", gpus=2)], bounded).starts == [(1, [2, 3])]
    unbounded = [Occupant(id=9, user="carol", gpu_ids=(0, 1))]
    assert place([Candidate(id=1, user="bob", gpus=2)], unbounded).starts == []
    # alice's own job still running at 03:30 counts toward her reservation.
    hers = [Occupant(id=9, user="alice", gpu_ids=(0,))]
    assert place([Candidate(id=1, user="bob", gpus=2)], hers).starts == [(1, [1, 2])]


def test_jobs_started_in_the_same_pass_count_too():
    d = place([Candidate(id=1, user="bob", gpus=1), Candidate(id=2, user="bob", gpus=1),
               Candidate(id=3, user="bob", gpus=1)])
    assert [s[0] for s in d.starts] == [1, 2]
    assert "reserved for alice" in d.waiting[3][1]


def test_an_upcoming_index_reservation_is_off_limits_for_the_window():
    soon = [ActiveReservation(user="alice", indices=(0, 1), start=NOW + 900, end=NOW + 8100,
                              since="03:30", until="05:30")]
    assert place([Candidate(id=1, user="bob", gpus=1)], reservations=soon).starts == [(1, [2])]
    assert place([Candidate(id=1, user="bob", gpus=4, time_limit=600)],
                 reservations=soon).starts == [(1, [0, 1, 2, 3])]
    d = place([Candidate(id=1, user="bob", gpus=3)], reservations=soon)
    assert d.waiting[1][1] == ("waiting: 3 GPUs, 2 free; GPUs reserved for alice "
                               "from 03:30 until 05:30 (a job whose time limit ends before "
                               "then may start)")


def test_a_job_blocked_only_by_a_reservation_does_not_starve_the_others():
    blocked = Candidate(id=1, user="bob", gpus=3, priority=50, queued_since=0.0)
    small = Candidate(id=2, user="bob", gpus=1, queued_since=0.0)
    d = run([blocked, small], n_gpus=4, reservations=alice_soon(), now=NOW,
            starvation_secs=60)
    assert d.starts == [(2, [0])] and not d.protecting


def test_core_protects_an_upcoming_reservation(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="4")
    status, body = core.handle("reservation_create", {
        "user": "alice", "gpu_count": 2, "duration_secs": 7200,
        "start_time": {"secs_since_epoch": int(clock.t) + 900, "nanos_since_epoch": 0}})
    assert status == 200, body
    unbounded = submit(core, gpus=3, submitted_by="bob")
    settle(core, False)
    assert core.jobs[unbounded].state.value == "Queued"
    assert "GPUs reserved for alice from " in core.jobs[unbounded].reason_detail
    short = submit(core, gpus=3, submitted_by="bob", time_limit={"secs": 600, "nanos": 0})
    settle(core, False)
    assert core.jobs[short].state.value == "Running"
    # ginfo's data: the reservation, its owner and window.
    (r,) = core.handle("info", {})[1]["reservations"]
    assert (r["user"], r["gpu_count"], r["gpu_indices"], r["active"]) == ("alice", 2, None, False)
    assert r["start_time"] == int(clock.t) + 900


# --- 7. reasons for jobs that can never run ---------------------------------------------------

def test_can_never_run_reasons_are_specific():
    d = run([Candidate(id=1, user="a", gpus=99)], n_gpus=4)
    assert d.waiting[1][1] == "can never run here: needs 99 GPUs; this machine has 4"
    d = run([Candidate(id=1, user="a", gpus=3)], n_gpus=4, allowed=frozenset({0, 2}))
    assert d.waiting[1][1] == ("can never run here: needs 3 GPUs; 2 of this machine's 4 "
                               "are allowed")
    d = run([Candidate(id=1, user="a", gpus=1)], n_gpus=0)
    assert d.waiting[1][1] == "can never run here: needs 1 GPU; this machine has 0"
    d = run([Candidate(id=1, user="a", group_id="g", max_concurrent=0)])
    assert d.waiting[1][1] == "can never run: its group's limit is 0 (raise it with gctl set-limit)"


def test_core_tells_why_a_99_gpu_job_waits(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="4")
    big = submit(core, gpus=99)
    settle(core, False)
    assert core.jobs[big].reason_detail == "can never run here: needs 99 GPUs; this machine has 4"


# --- 5. one job's webhook events arrive in order --------------------------------------------

class Receiver:
    """Records (event, job id) per POST; answers 503 to the first POST of each key in
    `fail_once`, 200 otherwise."""

    def __init__(self, fail_once=()):
        self.fail_once = set(fail_once)
        self.got: list[tuple[str, int, int]] = []       # (event, job id, status answered)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                key = (body["event"], body["job"]["id"])
                with receiver.lock:
                    status = 503 if key in receiver.fail_once else 200
                    receiver.fail_once.discard(key)
                    receiver.got.append((*key, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def job_event(event: str, job_id: int) -> dict:
    import uuid
    return {"event": event, "event_id": uuid.uuid4().hex, "timestamp": "2026-01-01T00:00:00Z",
            "job": {"id": job_id, "user": "u", "state": "Queued"}}


def test_a_retried_event_is_not_overtaken_by_the_next_event_of_its_job(tmp_path):
    from gflow.config import NotificationsConfig, WebhookConfig
    from gflow.notify import Notifier, Outbox
    receiver = Receiver(fail_once={("job_submitted", 1)})
    config = NotificationsConfig(enabled=True, max_concurrent_deliveries=8, webhooks=(
        WebhookConfig(url=receiver.url, timeout_secs=2, max_retries=3),))
    notifier = Notifier(config, Outbox(tmp_path / "outbox", fsync=False), "host")
    try:
        for payload in (job_event("job_submitted", 1), job_event("job_started", 1),
                        job_event("job_submitted", 2), job_event("job_completed", 1)):
            notifier.publish(payload)
        notifier.outbox.commit()
        notifier.flush()
        deadline = time.monotonic() + 15
        while len(receiver.got) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        job1 = [(e, s) for e, j, s in receiver.got if j == 1]
        assert job1 == [("job_submitted", 503), ("job_submitted", 200), ("job_started", 200),
                        ("job_completed", 200)]
        # Another job's events do not wait for job 1's retry (1 s away).
        order = [(e, j) for e, j, _ in receiver.got]
        assert order.index(("job_submitted", 2)) < 2
        # The outbox drops a delivery after the receiver answered it: wait for that.
        while notifier.outbox.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not notifier.outbox.pending
    finally:
        notifier.close()
        receiver.close()


def test_events_owed_at_a_restart_keep_their_order(tmp_path):
    from gflow.config import NotificationsConfig, WebhookConfig
    from gflow.notify import Notifier, Outbox
    receiver = Receiver(fail_once={("job_submitted", 7)})
    outbox = Outbox(tmp_path / "outbox", fsync=False)
    for payload in (job_event("job_submitted", 7), job_event("job_started", 7),
                    job_event("job_failed", 7)):
        outbox.add(payload, [0])
    outbox.commit()
    outbox.close()
    config = NotificationsConfig(enabled=True, webhooks=(
        WebhookConfig(url=receiver.url, timeout_secs=2, max_retries=3),))
    notifier = Notifier(config, Outbox(tmp_path / "outbox", fsync=False), "host")
    try:
        deadline = time.monotonic() + 15
        while len(receiver.got) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [e for e, _, s in receiver.got if s == 200] == [
            "job_submitted", "job_started", "job_failed"]
    finally:
        notifier.close()
        receiver.close()


# --- 3. a configured GPU restriction ends with the config -----------------------------------

def info_of(core):
    return core.handle("info", {})[1]


def restart(core, tmp_path, clock, config_text=None):
    core.store.commit()
    core.store.snapshot(core.snapshot_state())      # what a stopping scheduler leaves
    core.store.close()
    return make_core(tmp_path, clock, gpus="4", config_text=config_text)


def test_only_gctl_set_gpus_is_remembered_across_restarts(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="4", config_text="[daemon]\ngpus = [0, 2]\n")
    info = info_of(core)
    assert (info["allowed_gpu_indices"], info["allowed_gpu_source"]) == ([0, 2], "config")
    core = restart(core, tmp_path, clock)           # the config line is gone
    info = info_of(core)
    assert (info["allowed_gpu_indices"], info["allowed_gpu_source"]) == (None, "default")
    assert core.handle("set_gpus", {"allowed_indices": [1]})[0] == 200
    assert info_of(core)["allowed_gpu_source"] == "set-gpus"
    core = restart(core, tmp_path, clock, "[daemon]\ngpus = [3]\n")
    assert info_of(core)["allowed_gpu_indices"] == [3]          # the config wins at start
    core = restart(core, tmp_path, clock)
    info = info_of(core)
    assert (info["allowed_gpu_indices"], info["allowed_gpu_source"]) == ([1], "set-gpus")


def test_the_restriction_says_whether_it_came_from_the_command_line_or_env(tmp_path,
                                                                          monkeypatch):
    core = make_core(tmp_path, FakeClock(), gpus="4", config_text="[daemon]\ngpus = [1]\n")
    core.gpus_from_cli = True
    core.start_gpu_restriction(None)
    assert info_of(core)["allowed_gpu_source"] == "cli"
    core.gpus_from_cli = False
    monkeypatch.setenv("GFLOW_DAEMON_GPUS", "1")
    core.start_gpu_restriction(None)
    assert info_of(core)["allowed_gpu_source"] == "env"


class InfoClient:
    def __init__(self, info):
        self.info = info

    def call(self, method, path):
        assert (method, path) == ("GET", "/info")
        return self.info


@pytest.mark.parametrize("allowed, source, last", [
    ([0, 2], "config", "allowed: 0,2 (from gflow.toml)"),
    ([1], "set-gpus", "allowed: 1 (from gctl set-gpus)"),
    (None, "set-gpus", "allowed: all (from gctl set-gpus)"),
    ([3], "cli", "allowed: 3 (from --gpus)"),
    ([3], "env", "allowed: 3 (from GFLOW_DAEMON_GPUS)"),
    (None, "default", "allowed: all detected GPUs"),
])
def test_gctl_show_gpus_says_where_the_restriction_comes_from(capsys, allowed, source, last):
    from gflow.cli import gctl
    info = {"gpus": [{"index": i, "available": True} for i in range(4)],
            "allowed_gpu_indices": allowed, "allowed_gpu_source": source}
    assert gctl.cmd_show_gpus(InfoClient(info), None) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[-1] == last


# --- 4. shared GPUs do not look idle --------------------------------------------------------

def test_a_gpu_with_shared_jobs_is_not_available_and_shows_them(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="2")
    ids = [submit(core, gpus=1, gpu_sharing_mode="Shared", gpu_memory_limit_mb=4096)
           for _ in range(2)]
    settle(core, False)
    assert [core.jobs[i].gpu_ids for i in ids] == [[0], [0]]
    gpu0, gpu1 = info_of(core)["gpus"]
    assert gpu0["available"] is False
    assert (gpu0["shared_jobs"], gpu0["shared_memory_mb"], gpu0["memory_mb"]) == (ids, 8192, 24576)
    assert {k: gpu1[k] for k in ("uuid", "index", "available")} == \
        {"uuid": gpu1["uuid"], "index": 1, "available": True}
    assert "reason" not in gpu1 and "shared_jobs" not in gpu1
    assert gpu0["state"] == "shared" and gpu1["state"] == "free"     # ours (GPU insight)
    # More shared jobs still fit: `available` is about exclusive use only.
    third = submit(core, gpus=1, gpu_sharing_mode="Shared", gpu_memory_limit_mb=4096)
    settle(core, False)
    assert core.jobs[third].gpu_ids == [0]


def test_ginfo_and_show_gpus_show_shared_jobs(capsys):
    from gflow.cli import ginfo, gctl, render
    info = {"gpus": [{"index": 0, "available": True},
                     {"index": 1, "available": False, "shared_jobs": [5, 6],
                      "shared_memory_mb": 8192, "memory_mb": 24576}],
            "allowed_gpu_indices": None}
    jobs = [{"id": 5, "state": "Running", "run_name": "a", "gpu_ids": [1]},
            {"id": 6, "state": "Running", "run_name": "b", "gpu_ids": [1]}]
    rows = ginfo.rows_for(info, jobs)
    assert rows[1] == ["gpu", "1", "0", "idle", ""]
    assert rows[2] == ["gpu", "1", "1", "shared", "5 (a), 6 (b); 8G of 24G reserved"]
    gctl.cmd_show_gpus(InfoClient(info), None)
    assert capsys.readouterr().out == (
        "0\tavailable\n1\tin_use\tshared by jobs 5,6 (8192 of 24576 MB reserved)\n")
    assert render.table(rows)        # renders


def test_ginfo_lists_reservations_with_their_owner():
    from gflow.cli import ginfo
    info = {"gpus": [{"index": 0, "available": True}, {"index": 1, "available": True}],
            "reservations": [
                {"user": "alice", "gpu_count": 2, "gpu_indices": None, "start_time": 100.0,
                 "end_time": 200.0, "active": False},
                {"user": "bob", "gpu_count": 1, "gpu_indices": [1], "start_time": 0.0,
                 "end_time": 300.0, "active": True}]}

    def when(start, end, active):
        return f"until {end:.0f}" if active else f"{start:.0f}-{end:.0f}"
    rows = ginfo.rows_for(info, [], when)
    assert rows[2:] == [["gpu", "2", "-", "reserved", "(alice 100-200)"],
                        ["gpu", "1", "1", "reserved", "(bob until 300)"]]


# --- 6. GFLOW_FAKE_GPUS is checked before anything starts -----------------------------------

@pytest.mark.parametrize("value, problem", [
    (None, None), ("", None), ("4", None), ("4:80G", None),
    ("4:abc", "invalid GFLOW_FAKE_GPUS '4:abc': memory 'abc' is not a size such as "
              "'16384' (MB), '512M', '80G' or '1T'"),
    ("x", "invalid GFLOW_FAKE_GPUS 'x': expected COUNT or COUNT:MEMORY, e.g. '4' or '4:80G'"),
    ("4\nx", "invalid GFLOW_FAKE_GPUS '4\\nx': expected COUNT or COUNT:MEMORY"),
])
def test_check_fake_gpus_gives_one_line(value, problem):
    from gflow.gpu import check_fake_gpus
    got = check_fake_gpus({} if value is None else {"GFLOW_FAKE_GPUS": value})
    if problem is None:
        assert got is None
    else:
        assert got.startswith(problem) and "\n" not in got


def _master_checks_fake_gpus() -> bool:
    import inspect

    from gflow.daemon import master
    return "check_fake_gpus" in inspect.getsource(master)


@pytest.mark.xfail(not _master_checks_fake_gpus(), strict=False,
                   reason="Master.prepare does not call gflow.gpu.check_fake_gpus yet "
                          "(gflow/daemon/master.py belongs to someone else)")
def test_the_master_refuses_a_bad_fake_gpu_spec_before_starting_workers(tmp_path):
    from gflow.config import load_config
    from gflow.daemon.master import Master, StartupError
    env = {"HOME": str(tmp_path), "GFLOW_FAKE_GPUS": "4:abc", "GFLOW_DAEMON_PORT": "0",
           "GFLOW_DAEMON_HOST": "127.0.0.1"}
    master = Master(load_config(None, env=env), env)
    try:
        with pytest.raises(StartupError, match=r"^invalid GFLOW_FAKE_GPUS '4:abc': memory"):
            master.prepare()
    finally:
        for sock in (master.listener, master.unix_listener):
            if sock is not None:
                sock.close()
        master.lock.release()


def test_ginfo_and_show_gpus_survive_malformed_extras(capsys):
    from gflow.cli import ginfo, gctl
    evil = "\x1b]0;pwned\x07"
    info = {"gpus": [{"index": 0, "available": False, "shared_jobs": [evil],
                      "shared_memory_mb": evil, "memory_mb": None},
                     {"index": 1, "available": False, "shared_jobs": 7}],
            "allowed_gpu_indices": None, "allowed_gpu_source": evil,
            "reservations": [None, {"user": evil, "gpu_indices": "x", "start_time": "?"}]}
    text = "\n".join(" ".join(row) for row in ginfo.rows_for(info, [], lambda *a: "never"))
    assert "\x1b" not in text and "(\\x1b]0;pwned\\x07)" in text
    gctl.cmd_show_gpus(InfoClient(info), None)
    assert "\x1b" not in capsys.readouterr().out
