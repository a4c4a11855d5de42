"""Tests written for mutmut's survivors in gflow/scheduler/core.py (issue 24).

Each test names the mutants it kills (mutmut 3 names: `xǁSchedulerCoreǁMETHOD__mutmut_N`,
written below as METHOD_N; `_log_transition_N` for the module function). Expected values
are worked out by hand: the fake clock starts at T0 = 1_795_500_000 (2026-11-24 06:00 UTC,
15:00 in Tokyo).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from types import SimpleNamespace

import pytest

from gflow import __version__
from gflow.gpu import GpuInventory
from gflow.models import JobState
from gflow.paths import Paths
from gflow.scheduler import policy
from gflow.scheduler.core import SchedulerCore
from gflow.store import Store, StoreState
from test_api_routes import FakeClock, make_core

T0 = 1_795_500_000.0


def submit(core, **fields):
    status, body = core.handle("submit", {"command": "x", "submitted_by": "alice", **fields})
    assert status == 201, body
    return body["id"]


def settle(core):
    if core.pass_wanted:
        core.run_pass()
    core.store.commit()
    core.launcher_outbox.clear()


def secs(n):
    return {"secs": n, "nanos": 0}


def when(n):
    return {"secs_since_epoch": n, "nanos_since_epoch": 0}


def got(core, job_id):
    status, body = core.handle("get_job", {"id": job_id})
    assert status == 200
    return json.loads(body)


def reload(tmp_path, clock, core, **kw):
    core.store.commit()
    core.store.close()
    return make_core(tmp_path, clock, **kw)


# --- _log_transition: the one key=value line per state change -------------------------

def test_transition_log_lines(tmp_path, caplog):
    """Kills _log_transition's survivors but 27 (equivalent): wording, arguments, the
    gpus list and its "-", the exit code/runtime part, the detail part, the branch
    conditions; and transition_60..63 (the arguments transition passes it)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    caplog.set_level(logging.DEBUG, logger="gflow.scheduler")
    two = submit(core, gpus=2)
    none = submit(core, gpus=0)
    held = submit(core, gpus=1)
    assert core.handle("transition", {"id": held, "action": "hold"})[0] == 200
    settle(core)
    clock.t += 12.25
    core.on_exited(two, {"exit_code": 3, "finished_at": clock.t})
    core.on_exited(none, {"exit_code": 0, "finished_at": clock.t})
    assert core.handle("transition", {"id": held, "action": "cancel"})[0] == 200
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "gflow.scheduler" and r.getMessage().startswith("job ")]
    assert lines == [
        ("DEBUG", "job 3 state=Hold from=Queued"),
        ("INFO", "job 1 scheduled gpus=0,1 user=alice"),
        ("INFO", "job 2 scheduled gpus=- user=alice"),
        ("INFO", 'job 1 finished state=Failed exit_code=3 runtime=12.2s detail="exit code 3"'),
        ("INFO", "job 2 finished state=Finished exit_code=0 runtime=12.2s"),
        ('INFO', 'job 3 finished state=Cancelled detail="cancelled by user"'),
    ]


# --- __init__ and load --------------------------------------------------------------------

def _bare_core(tmp_path, **kw):
    home = tmp_path / "bare"
    home.mkdir()
    from gflow.config import load_config
    config = load_config(None, env={"HOME": str(home), "GFLOW_RUN_AS": "daemon"})
    paths = Paths.from_env({"HOME": str(home)})
    return SchedulerCore(store=Store(paths.data_dir, fsync=False),
                         gpu_inventory=GpuInventory("2"), config=config, paths=paths,
                         clock=FakeClock(), **kw)


def test_a_core_before_load_is_empty_and_normal(tmp_path, monkeypatch):
    """Kills __init___6, 14–26, 41, 42, 44, 50–52, 56, 58, 59, 61–63 (the initial values)."""
    monkeypatch.delenv("HOSTNAME", raising=False)
    core = _bare_core(tmp_path, total_memory_mb=1024)
    assert (core.total_memory_mb, core.next_job_id, core.next_reservation_id) == (1024, 1, 1)
    assert core.allowed_gpu_indices is None and core.set_gpus_indices is None
    assert (core.allowed_gpu_source, core.mode, core.recovery) == ("default", "normal", {})
    assert core.webhooks_on is False and core.event_streams == 0
    assert core.events_wanted is False
    assert core.version == __version__
    assert core.pass_needed is False and core.protecting is False
    assert core.pass_wanted is False
    assert core._cold == set() and core.load_note is None and core.needs_snapshot is False
    assert core.writable is True


def test_rng_and_host(tmp_path, monkeypatch):
    """Kills __init___7, 8 (the rng given is the one used; none given: a Random) and
    __init___45, 46, 48, 49 (HOSTNAME, else the configured host)."""
    rng = random.Random(1)
    monkeypatch.setenv("HOSTNAME", "node7")
    core = _bare_core(tmp_path, rng=rng)
    assert core.rng is rng and core.host == "node7"
    monkeypatch.delenv("HOSTNAME")
    (tmp_path / "x").mkdir()
    other = _bare_core(tmp_path / "x")
    assert isinstance(other.rng, random.Random) and other.host == "localhost"


def test_load_takes_everything_the_store_found(tmp_path):
    """Kills load_6, 7, 8 (reservations), 12, 17, 18 (next ids past the highest loaded,
    even when the counters lag), 19 (the persisted set-gpus list), 20, 21 (replay note,
    needs_snapshot), 23 (mode), 25–30 (the recovery keys)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="4")
    jid = submit(core, gpus=1)
    assert core.handle("reservation_create", {
        "user": "alice", "gpu_count": 1, "start_time": when(int(T0) + 3600),
        "duration_secs": 600})[0] == 200
    core.store.commit()
    state = core.snapshot_state()
    state.next_job_id = 1                      # counters that lag behind the records
    state.next_reservation_id = 1
    state.allowed_gpu_indices = [1, 3]
    state.mode = "read_only"
    state.detail, state.state_backup, state.journal_error = "why", "/b/state.backup", "EROFS"
    state.replay_note = "torn tail"
    state.needs_snapshot = True
    (tmp_path / "other").mkdir()
    fresh = make_core(tmp_path / "other", clock, gpus="4")
    fresh.jobs.clear()
    fresh.store = SimpleNamespace(load=lambda: state)
    fresh.load()
    assert list(fresh.jobs) == [jid] and fresh.next_job_id == jid + 1 == 2
    assert list(fresh.reservations) == [1] and fresh.next_reservation_id == 2
    assert fresh.reservations[1].user == "alice"
    assert fresh.allowed_gpu_indices == [1, 3]
    assert fresh.load_note == "torn tail" and fresh.needs_snapshot is True
    assert fresh.mode == "read_only"
    assert fresh.recovery == {"detail": "why", "state_backup": "/b/state.backup",
                              "journal_error": "EROFS"}


def test_reload_keeps_queue_time_and_environment(tmp_path):
    """Kills _set_state_index_5, 7, 9 (a job loaded Queued waits from its submission, not
    from the restart), _set_state_index_10 (a started job leaves queued_since), and
    save_job_10, 12, 13 (the journalled job keeps its environment)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    a = submit(core, gpus=1, env={"A": "1"})
    b = submit(core, gpus=1)
    assert core.queued_since == {a: T0, b: T0}
    settle(core)
    assert core.queued_since == {b: T0}                     # a started
    clock.t += 2000
    again = reload(tmp_path, clock, core, gpus="1")
    assert again.queued_since == {b: T0}
    assert again.jobs[a].env == {"A": "1"}


# --- snapshot_state -----------------------------------------------------------------------

def test_snapshot_state_holds_everything(tmp_path):
    """Kills snapshot_state_4–9, 11–19, 21–35."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="4")
    jid = submit(core, gpus=1, env={"A": "1"})
    assert core.handle("reservation_create", {
        "user": "alice", "gpu_count": 1, "start_time": when(int(T0) + 3600),
        "duration_secs": 600})[0] == 200
    assert core.handle("set_gpus", {"allowed_indices": [0, 2]})[0] == 200
    core.recovery = {"detail": "why", "state_backup": "/b/s.backup", "journal_error": "EROFS"}
    core.mode = "journal"
    st = core.snapshot_state()
    assert isinstance(st, StoreState)
    assert list(st.jobs) == [jid] and st.jobs[jid]["env"] == {"A": "1"}
    assert st.jobs[jid]["id"] == jid
    assert list(st.reservations) == [1] and st.reservations[1]["user"] == "alice"
    assert (st.next_job_id, st.next_reservation_id) == (2, 2)
    assert st.allowed_gpu_indices == [0, 2] and st.mode == "journal"
    assert (st.detail, st.state_backup, st.journal_error) == ("why", "/b/s.backup", "EROFS")


# --- handle: unknown operations, read-only mode, refusals ---------------------------------

def test_read_only_mode_refuses_changes_with_the_whole_body(tmp_path):
    """Kills read_only_body_1–33, handle_17 (only changing operations are refused),
    handle_19–23 (503 and the body)."""
    core = make_core(tmp_path, FakeClock())
    core.mode = "read_only"
    core.recovery = {"detail": "why", "state_backup": "/b/s.backup", "journal_error": "EROFS"}
    assert core.handle("submit", {"command": "x"}) == (503, {
        "detail": "why",
        "error": "gflowd is in read-only mode (no persistence available)",
        "hint": "Fix/upgrade the version that can migrate your state file, or restore from "
                "the backup file. If the journal path is unwritable, fix permissions.",
        "journal": str(core.paths.journal_file),
        "journal_error": "EROFS",
        "state_backup": "/b/s.backup"})
    assert core.handle("event_streams", {"count": 2}) == (200, {"event_streams": 2})


def test_unknown_operation(tmp_path):
    """Kills handle_6, 11–15."""
    core = make_core(tmp_path, FakeClock())
    assert core.handle("nope", {}) == (404, {"error": "unknown operation 'nope'"})


def test_a_refusal_is_logged_with_who_asked(tmp_path, caplog):
    """Kills handle_31 (a caller that is neither a Caller nor a dict is anonymous) and
    handle_38–50, 52, 53 (the audit line)."""
    core = make_core(tmp_path, FakeClock())
    caplog.set_level(logging.INFO, logger="gflow.scheduler")
    status, body = core.handle("submit", {"command": "x"}, caller="not a caller")
    assert status == 403
    text = ("anonymous callers may not change anything; gflowd could not tell who you are "
            "(connect from this machine, through its Unix socket or loopback)")
    assert body == {"error": text}
    assert [r.getMessage() for r in caplog.records if r.name == "gflow.scheduler"] == [
        f"refused submit from anonymous (anonymous): {text}"]


def test_a_named_callers_refusal_names_the_user(tmp_path, caplog):
    """Kills handle_51 (the audit line names the user, not the uid)."""
    core = make_core(tmp_path, FakeClock())
    a = submit(core)
    caplog.set_level(logging.INFO, logger="gflow.scheduler")
    bob = {"uid": 54321, "user": "bob", "groups": [], "via": "unix"}
    status, body = core.handle("transition", {"id": a, "action": "cancel"}, caller=bob)
    assert (status, body) == (403, {
        "error": "job 1 belongs to alice; only alice or a gflow admin may cancel it"})
    assert [r.getMessage() for r in caplog.records if r.name == "gflow.scheduler"] == [
        "refused transition from bob (unix): job 1 belongs to alice; only alice or a gflow "
        "admin may cancel it"]


def test_event_streams_count(tmp_path):
    """Kills op_event_streams_1–21 (the count, its default 0 and floor 0)."""
    core = make_core(tmp_path, FakeClock())
    assert core.handle("event_streams", {"count": 3}) == (200, {"event_streams": 3})
    assert core.event_streams == 3 and core.events_wanted
    assert core.handle("event_streams", {"count": "-2"}) == (200, {"event_streams": 0})
    assert core.handle("event_streams", {"count": 1}) == (200, {"event_streams": 1})
    assert core.handle("event_streams", {}) == (200, {"event_streams": 0})
    assert not core.events_wanted


# --- transition ---------------------------------------------------------------------------

def test_transition_checks_the_table_and_the_retry_edge(tmp_path):
    """Kills transition_1 (retry off by default), 9 (retry allows the retry edge only),
    11 (the message)."""
    core = make_core(tmp_path, FakeClock(), gpus="1")
    jid = submit(core, gpus=1)
    settle(core)
    job = core.jobs[jid]
    with pytest.raises(ValueError, match=r"^Job 1 is Running: it cannot become Queued$"):
        core.transition(job, JobState.QUEUED)
    with pytest.raises(ValueError, match=r"^Job 1 is Running: it cannot become Hold$"):
        core.transition(job, JobState.HOLD, retry=True)
    core.transition(job, JobState.QUEUED, retry=True)
    assert job.state == JobState.QUEUED


def test_transition_reason_draining_and_pass(tmp_path):
    """Kills transition_23 (a final state without a reason keeps the old one), 26 (a job
    that never ran is not draining), 45, 46 (every change asks for a pass)."""
    core = make_core(tmp_path, FakeClock(), gpus="1")
    jid = submit(core, gpus=1)
    job = core.jobs[jid]
    job.reason = "JobHeldUser"
    core.pass_needed = False
    core.transition(job, JobState.CANCELLED, detail="by hand")
    assert job.reason == "JobHeldUser" and job.reason_detail == "by hand"
    assert core.draining == set() and core.pass_needed is True


# --- events -------------------------------------------------------------------------------

def test_events_carry_kind_time_host_job_and_gpu(tmp_path, monkeypatch):
    """Kills emit_5–10, 15–18, 20–22 (the payload's arguments, `at` when given),
    transition_48, 49, 51, 52, 54, 58, 59 (the job event: its name, job and recorded time),
    refresh_gpus_2, 4, 17–19, 22–32 (gpu_available for each GPU freed, not for held
    ones), __init__ (events are built only while wanted)."""
    monkeypatch.setenv("HOSTNAME", "node7")
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    a = submit(core, gpus=1)
    settle(core)
    core.refresh_gpus()                                   # GPU 0 is held now
    core.event_streams = 1
    clock.t += 100
    core.on_exited(a, {"exit_code": 0, "finished_at": T0 + 60})
    ev = core.events
    assert [e["event"] for e in ev] == ["job_completed", "gpu_available"]
    assert ev[0]["timestamp"] == "2026-11-24T06:01:00Z"          # T0 + 60, the exit
    assert ev[0]["scheduler"] == {"host": "node7", "version": __version__}
    assert ev[0]["job"]["id"] == a and ev[0]["job"]["user"] == "alice"
    assert "gpu" not in ev[0] and "text" not in ev[0] and "reservation" not in ev[0]
    assert ev[1]["gpu"] == {"index": 0, "available": True}
    assert ev[1]["timestamp"] == "2026-11-24T06:01:40Z"          # now: T0 + 100
    assert "job" not in ev[1]


def test_emit_passes_text_and_reservation(tmp_path):
    """Kills emit_8, 10, 16, 18 (reservation and text reach the payload)."""
    core = make_core(tmp_path, FakeClock(), gpus="2")
    core.event_streams = 1
    assert core.handle("reservation_create", {
        "user": "alice", "gpu_count": 1, "start_time": when(int(T0) + 3600),
        "duration_secs": 600})[0] == 200
    core.events.clear()
    core.emit("note", text="hello", reservation=core.reservations[1])
    assert core.events[0]["text"] == "hello"
    assert core.events[0]["reservation"]["id"] == 1


# --- GPUs ---------------------------------------------------------------------------------

def test_refresh_asks_for_a_pass_only_when_the_view_changes(tmp_path):
    """Kills refresh_gpus_12, 13, 14."""
    core = make_core(tmp_path, FakeClock(), gpus="2")
    settle(core)
    core.pass_needed = False
    core.refresh_gpus()
    assert core.pass_needed is False
    core.gpu_view = core.gpu_view[:1]
    core.refresh_gpus()
    assert core.pass_needed is True


# --- the pass -----------------------------------------------------------------------------

def test_pass_respects_allowed_gpus_and_total_memory(tmp_path):
    """Kills _run_pass_12, 14, 29, 41 (the set-gpus list reaches the policy), 30, 42 (the
    machine's memory), 7, 8 (a pass clears pass_needed), run_pass_2, 3 (its duration)."""
    core = make_core(tmp_path, FakeClock(), gpus="4")
    assert core.handle("set_gpus", {"allowed_indices": [2, 3]})[0] == 200
    a = submit(core, gpus=1)
    big = submit(core, gpus=0, memory_limit_mb=70000)     # more than the 65536 MB there is
    settle(core)
    assert core.jobs[a].gpu_ids == [2]
    assert core.jobs[big].state == JobState.QUEUED
    core.pass_needed = True
    settle(core)                                          # a pass that starts nothing
    assert core.pass_needed is False and not core.pass_wanted
    assert 0 <= core.last_pass_secs < 5


def test_random_strategy_uses_the_cores_rng(tmp_path):
    """Kills _run_pass_17, 18, 21, 22, 34, 46 (the shuffle reaches the policy)."""
    core = make_core(tmp_path, FakeClock(), gpus="4",
                     config_text='[daemon]\ngpu_allocation_strategy = "random"\n')
    core.rng = SimpleNamespace(shuffle=lambda xs: xs.reverse())
    a = submit(core, gpus=1)
    settle(core)
    assert core.jobs[a].gpu_ids == [3]


def test_incremental_pass_places_only_live_new_jobs(tmp_path):
    """Kills _run_pass_6 (an incremental pass looks at new jobs still queued, not at all
    queued ones nor at a new job cancelled before the pass)."""
    core = make_core(tmp_path, FakeClock(), gpus="2")
    settle(core)
    a = submit(core, gpus=1)
    assert core.handle("transition", {"id": a, "action": "cancel"})[0] == 200
    core.pass_needed = False
    assert core.new_since_pass == {a}
    decision = core.run_pass()
    assert decision.starts == [] and core.jobs[a].state == JobState.CANCELLED


def test_pass_reservation_blocks_a_start(tmp_path):
    """Kills _run_pass_43 (reservations reach the policy)."""
    core = make_core(tmp_path, FakeClock(), gpus="1")
    assert core.handle("reservation_create", {
        "user": "bob", "gpu_count": 1, "start_time": when(int(T0)),
        "duration_secs": 3600})[0] == 200
    a = submit(core, gpus=1)
    settle(core)
    assert core.jobs[a].state == JobState.QUEUED


def test_pass_cancel_names_the_failed_dependency(tmp_path):
    """Kills _run_pass_59, 63, 65, 66, 67 (the reason of a cancel by the pass)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    p = submit(core, gpus=1)
    settle(core)
    core.on_exited(p, {"exit_code": 1})
    child = submit(core, gpus=1, depends_on_ids=[p], auto_cancel_on_dependency_failure=True)
    settle(core)
    job = core.jobs[child]
    assert job.state == JobState.CANCELLED
    assert job.reason == {"DependencyFailed": p}


def test_protection_carries_over_to_incremental_passes(tmp_path):
    """Kills _run_pass_54 (a full pass that protects a starving job makes the next
    passes full too, so a job submitted later does not take the kept GPU)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    first = submit(core, gpus=1)
    settle(core)
    big = submit(core, gpus=2)
    settle(core)
    clock.t += 4000                                      # past starvation_secs (1800)
    core.pass_needed = True
    settle(core)
    assert core.protecting is True
    late = submit(core, gpus=1)
    settle(core)
    assert core.jobs[late].state == JobState.QUEUED and core.jobs[big].state == JobState.QUEUED
    assert core.jobs[first].state == JobState.RUNNING


def test_waiting_reason_and_flags_reach_the_listing(tmp_path):
    """Kills _run_pass_80, cascade_from_50, save_job_1 (the job's cached JSON
    is dropped when its waiting text changes, it is flagged, or it is saved)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    a = submit(core, gpus=1)
    settle(core)
    b = submit(core, gpus=1, depends_on_ids=[a], auto_cancel_on_dependency_failure=False)
    core.handle("list_jobs", {})
    core.handle("get_job", {"id": b})
    settle(core)
    assert got(core, b)["reason_detail"] == core.jobs[b].reason_detail
    assert core.jobs[b].reason_detail
    core.handle("list_jobs", {})
    core.on_exited(a, {"exit_code": 1})
    settle(core)
    detail = core.jobs[b].reason_detail
    assert detail.startswith("dependency can never be met")
    assert got(core, b)["reason_detail"] == detail
    core.jobs[b].priority = 7
    core.save_job(core.jobs[b])
    assert got(core, b)["priority"] == 7


# --- what the pass is given ---------------------------------------------------------------

def test_occupants_describe_running_jobs(tmp_path):
    """Kills occupants_5, 8–13, 17–22, 25, 27, 30, 32."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    a = submit(core, gpus=1, gpu_memory_limit_mb=1000, memory_limit_mb=2000,
               time_limit=secs(600), project="p1", gpu_sharing_mode="Shared")
    settle(core)
    job = core.jobs[a]
    job.group_id = "g1"
    assert core.occupants() == [policy.Occupant(
        id=a, user="alice", gpu_ids=(0,), shared=True, gpu_memory_mb=1000, memory_mb=2000,
        group_id="g1", project="p1", ends_at=T0 + 600)]
    core.transition(job, JobState.CANCELLED)               # draining: no known end
    assert core.occupants()[0].ends_at is None


def test_candidate_fields(tmp_path):
    """Kills _make_candidate_5–8, 12, 13, 19–22, 26, 27 (the fields the policy reads),
    36, 37, 39, 40 (a job not in queued_since waits from its submission)."""
    core = make_core(tmp_path, FakeClock(), gpus="2")
    a = submit(core, gpus=1, gpu_memory_limit_mb=1000, memory_limit_mb=2000,
               time_limit=secs(600), gpu_sharing_mode="Shared")
    job = core.jobs[a]
    job.group_id, job.max_concurrent = "g1", 2
    core.queued_since.pop(a)
    job.submitted_at = T0 - 50
    c = core._make_candidate(job)
    assert (c.shared, c.gpu_memory_mb, c.memory_mb, c.time_limit, c.group_id,
            c.max_concurrent, c.queued_since) == (True, 1000, 2000, 600.0, "g1", 2, T0 - 50)
    core.queued_since[a] = T0 + 5
    assert core._make_candidate(job).queued_since == T0 + 5


def test_missing_dependency_counts_as_cancelled(tmp_path):
    """Kills _dep_states_6–9."""
    core = make_core(tmp_path, FakeClock())
    a = submit(core)
    cand = dataclasses.replace(core._candidate(core.jobs[a]), deps=(a, 99))
    assert core._dep_states([cand]) == {a: "Queued", 99: "Cancelled"}


def test_launch_spec_fields(tmp_path):
    """Kills launch_spec_3, 4, 7, 8, 13–20, 24–39."""
    core = make_core(tmp_path, FakeClock(), gpus="2")
    a = submit(core, gpus=1, env={"A": "1"}, run_dir="/w", conda_env="ml", task_id=4,
               parameters={"lr": "0.1"}, memory_limit_mb=100, run_name="r1", umask=18)
    settle(core)
    job = core.jobs[a]
    expected = {"id": a, "script": None, "command": "x", "run_dir": "/w", "gpu_ids": [0],
                "task_id": 4, "conda_env": "ml", "env": {"A": "1"},
                "parameters": {"lr": "0.1"}, "memory_limit_mb": 100, "run_name": "r1",
                "run_as_user": None, "umask": 18, "attempt": 1}
    assert core.launch_spec(job) == expected
    sub = dataclasses.replace(core.config.security, run_as="submitter")
    core.config = dataclasses.replace(core.config, security=sub)
    core.access = SimpleNamespace(daemon_uid=0, daemon_user="root")
    assert core.launch_spec(job)["run_as_user"] == "alice"
    core.access = SimpleNamespace(daemon_uid=0, daemon_user="alice")
    assert core.launch_spec(job)["run_as_user"] is None
    core.access = SimpleNamespace(daemon_uid=1000, daemon_user="root")
    assert core.launch_spec(job)["run_as_user"] is None
    core.access = SimpleNamespace(daemon_uid=0, daemon_user="root")
    core.config = dataclasses.replace(
        core.config, security=dataclasses.replace(sub, run_as="daemon"))
    assert core.launch_spec(job)["run_as_user"] is None


# --- time limits, exits -------------------------------------------------------------------

def test_time_limits_and_deadlines(tmp_path):
    """Kills next_deadline_3, 6, enforce_time_limits_7 (a job without a limit does not
    stop the loop), 12, 15 (the detail)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    assert core.next_deadline() is None
    free = submit(core, gpus=1)
    limited = submit(core, gpus=1, time_limit=secs(90))
    settle(core)
    assert core.next_deadline() == T0 + 90
    clock.t += 90
    core.enforce_time_limits()
    assert core.jobs[free].state == JobState.RUNNING
    assert core.jobs[limited].state == JobState.TIMEOUT
    assert core.jobs[limited].reason_detail == "time limit 00:01:30 reached"


def test_exit_report_detail_and_recorded_end(tmp_path):
    """Kills on_exited_11–14 (the report's detail), 32, recorded_end_18 (an end before the
    start is the start), 58, 62 (a failure ends when it was recorded)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    a = submit(core, gpus=1)
    b = submit(core, gpus=1)
    settle(core)
    clock.t += 100
    core.on_exited(a, {"exit_code": 137, "detail": "killed: out of memory",
                       "finished_at": T0 + 40})
    assert core.jobs[a].state == JobState.FAILED
    assert core.jobs[a].reason_detail == "killed: out of memory"
    assert core.jobs[a].finished_at == T0 + 40
    core.on_exited(b, {"exit_code": 0, "finished_at": T0 - 30})
    assert core.jobs[b].finished_at == T0


def test_late_exit_reports(tmp_path):
    """Kills on_exited_65 (a report for a queued job changes nothing), 69, 70, 71 (a
    report for a job already final: its detail replaces the text unless it was
    cancelled; no detail keeps it)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="3")
    q = submit(core, gpus=4)                                 # never fits: stays queued
    t = submit(core, gpus=1, time_limit=secs(10))
    c = submit(core, gpus=1)
    f = submit(core, gpus=1, time_limit=secs(10))
    settle(core)
    core.on_exited(q, {"exit_code": 3})
    assert core.jobs[q].exit_code is None and core.jobs[q].state == JobState.QUEUED
    clock.t += 10
    core.enforce_time_limits()
    assert core.handle("transition", {"id": c, "action": "cancel"})[0] == 200
    core.on_exited(t, {"exit_code": 130})
    assert core.jobs[t].reason_detail == "time limit 00:00:10 reached"
    core.on_exited(f, {"exit_code": 130, "detail": "killed by SIGINT"})
    assert core.jobs[f].reason_detail == "killed by SIGINT" and core.jobs[f].exit_code == 130
    core.on_exited(c, {"exit_code": 143, "detail": "killed by SIGTERM"})
    assert core.jobs[c].reason_detail == "cancelled by user" and core.jobs[c].exit_code == 143


# --- reservations and clocks --------------------------------------------------------------

def test_reservations_move_along_the_clock(tmp_path):
    """Kills update_reservations_2, 3, 12–15, save_reservation_6, 7 (the journalled
    status survives a reload), next_reservation_boundary_1–4."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    assert core.handle("reservation_create", {
        "user": "alice", "gpu_count": 1, "start_time": when(int(T0) + 3600),
        "duration_secs": 600})[0] == 200
    assert core.next_reservation_boundary() == T0 + 3600
    core.pass_needed = False
    assert core.update_reservations() is False and core.pass_needed is False
    clock.t += 3600
    assert core.update_reservations() is True and core.pass_needed is True
    assert core.reservations[1].status.value == "Active"
    assert core.next_reservation_boundary() == T0 + 4200
    again = reload(tmp_path, clock, core, gpus="2")
    assert again.reservations[1].status.value == "Active"


def test_format_clock(tmp_path):
    """Kills format_clock_2–4, 6–8, 11, 13–20 (the configured zone; the date from a day
    away, before or after)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, config_text='timezone = "Asia/Tokyo"\n')
    assert core.format_clock(T0) == "15:00"
    assert core.format_clock(T0 + 86399) == "14:59"
    assert core.format_clock(T0 + 86400) == "2026-11-25 15:00"
    assert core.format_clock(T0 - 86400) == "2026-11-23 15:00"
    clock.t = 1000.0
    assert core.format_clock(T0) == "2026-11-24 15:00"


def test_a_changed_job_is_planned_afresh(tmp_path):
    """Kills changed_5 (a change drops the job's cached candidate: a job shrunk from 3
    GPUs to 1 starts on a 2-GPU machine)."""
    core = make_core(tmp_path, FakeClock(), gpus="2")
    a = submit(core, gpus=3)
    core.pass_needed = True
    settle(core)
    assert core.jobs[a].state == JobState.QUEUED
    assert core.handle("update", {"id": a, "changes": {"gpus": 1}})[0] == 200
    settle(core)
    assert core.jobs[a].state == JobState.RUNNING and core.jobs[a].gpu_ids == [0]


def test_configured_starvation_time_reaches_the_policy(tmp_path):
    """Kills _run_pass_45 (the policy's own default is 1800 s, the configured time is 60)."""
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2",
                     config_text="[scheduler]\nstarvation_secs = 60\n")
    submit(core, gpus=1)
    settle(core)
    submit(core, gpus=2)
    settle(core)
    clock.t += 100
    core.pass_needed = True
    settle(core)
    assert core.protecting is True
