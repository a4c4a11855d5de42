"""Issue 17 in the scheduler core, with a fake clock: Slurm-style dependencies, begin times,
retries, quotas and suspend (the pure rules are in test_features_policy.py)."""

from __future__ import annotations

import pytest

from gflow.config import SecurityConfig
from gflow.identity import Caller
from gflow.models import time_to_wire
from gflow.scheduler.access import Access
from test_api_routes import FakeClock, make_core
from test_core import hold, settle, submit

T0 = 1_795_500_000.0         # FakeClock's default now


def state(core, job_id):
    return core.jobs[job_id].state.value


def events_of(core):
    kinds = [e["event"] for e in core.events]
    core.events.clear()
    return kinds


# --- Slurm-style dependencies ------------------------------------------------------------

def test_afterany_runs_after_a_failed_parent_and_afternotok_only_after_a_failure(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="4")
    parent = submit(core)
    ok_child = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=True)
    any_child = submit(core, depends_on_ids=[parent],
                       dependency_conditions={str(parent): "afterany"})
    notok_child = submit(core, depends_on_ids=[parent],
                         dependency_conditions={str(parent): "afternotok"},
                         auto_cancel_on_dependency_failure=True)
    settle(core, True)
    assert [state(core, j) for j in (parent, ok_child, any_child, notok_child)] == [
        "Running", "Queued", "Queued", "Queued"]
    assert core.jobs[any_child].reason_detail == f"waiting for job {parent}"
    core.on_exited(parent, {"exit_code": 3})
    settle(core, True)
    assert state(core, ok_child) == "Cancelled"
    assert core.jobs[ok_child].reason == {"DependencyFailed": parent}
    assert state(core, any_child) == "Running" and state(core, notok_child) == "Running"


def test_afternotok_child_is_cancelled_when_its_parent_finishes(tmp_path):
    core = make_core(tmp_path, FakeClock())
    parent = submit(core)
    child = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=True,
                   dependency_conditions={str(parent): "afternotok"})
    kept = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=False,
                  dependency_conditions={str(parent): "afternotok"})
    settle(core, True)
    core.on_exited(parent, {"exit_code": 0})
    settle(core, True)
    assert state(core, child) == "Cancelled"
    assert core.jobs[child].reason_detail == (
        f"dependency job {parent} finished (afternotok needs it to fail)")
    assert state(core, kept) == "Queued"
    assert core.jobs[kept].reason_detail.startswith("dependency can never be met: job")


def test_conditions_survive_a_restart_and_only_name_the_jobs_dependencies(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    a, b = submit(core, gpus=9), submit(core, gpus=9)
    c = submit(core, depends_on_ids=[a, b], dependency_conditions={
        str(a): "afterany", str(b): "afterok", "999": "afternotok"})
    core.store.commit()
    assert core.jobs[c].dependency_conditions == {str(a): "afterany"}
    again = make_core(tmp_path, clock)
    assert again.jobs[c].dependency_conditions == {str(a): "afterany"}
    # Replacing the dependencies keeps the conditions of those that remain.
    assert again.handle("update", {"id": c, "changes": {"depends_on_ids": [b]}})[0] == 200
    assert again.jobs[c].dependency_conditions == {}


# --- begin times -------------------------------------------------------------------------------

def test_begin_time_waits_with_its_reason_then_starts_when_due(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    late = submit(core, scheduled_at=time_to_wire(T0 + 3600))
    now = submit(core, scheduled_at=time_to_wire(T0 - 60))      # in the past: at once
    settle(core, True)
    assert state(core, now) == "Running"
    job = core.jobs[late]
    assert state(core, late) == "Queued" and job.pending_reason == "BeginTime"
    assert job.reason is None                                   # 0.4.13's clients: Resources
    assert job.reason_detail == f"starts at {core.format_clock(T0 + 3600)}"
    assert core.wake_at == T0 + 3600
    clock.t += 3599
    settle(core, True)
    assert state(core, late) == "Queued"
    clock.t += 1
    settle(core, True)
    assert state(core, late) == "Running" and core.jobs[late].pending_reason is None
    assert core.wake_at is None


def test_begin_time_survives_a_restart(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    job = submit(core, scheduled_at=time_to_wire(T0 + 7200))
    settle(core, True)
    again = make_core(tmp_path, clock)          # load() asks for a full pass
    settle(again, False)
    assert again.wake_at == T0 + 7200 and state(again, job) == "Queued"
    assert again.jobs[job].pending_reason == "BeginTime"


def test_release_at_delays_a_held_job(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    job = submit(core, gpus=9)
    hold(core, job)
    core.handle("update", {"id": job, "changes": {"gpus": 1}})
    assert core.handle("transition", {"id": job, "action": "release",
                                      "at": T0 + 600})[0] == 200
    settle(core, True)
    assert state(core, job) == "Queued" and core.wake_at == T0 + 600
    clock.t += 600
    settle(core, True)
    assert state(core, job) == "Running"


def test_a_begin_job_blocks_nobody_and_is_not_protected_from_starvation(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    big = submit(core, gpus=1, priority=99, scheduled_at=time_to_wire(T0 + 10_000))
    clock.t += 5000                                  # it "waited" past starvation_secs
    small = submit(core, gpus=1)
    settle(core, True)
    assert state(core, small) == "Running" and state(core, big) == "Queued"
    assert not core.protecting


# --- retries -----------------------------------------------------------------------------------

def test_a_failed_job_is_retried_with_each_attempt_on_record(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    core.events_wanted_before = core.webhooks_on
    core.webhooks_on = True                       # so that events are recorded
    job = submit(core, max_retries=2)
    child = submit(core, depends_on_ids=[job], auto_cancel_on_dependency_failure=True)
    settle(core, False)
    events_of(core)
    first_start = core.jobs[job].started_at
    clock.t += 10
    core.on_exited(job, {"exit_code": 3, "finished_at": clock.t})
    assert state(core, job) == "Queued" and state(core, child) == "Queued"
    assert events_of(core) == ["job_retrying"]
    rec = core.jobs[job].attempts[0]
    assert rec["attempt"] == 1 and rec["exit_code"] == 3 and rec["detail"] == "exit code 3"
    assert rec["started_at"] == time_to_wire(first_start)
    assert rec["finished_at"] == time_to_wire(clock.t)
    assert core.jobs[job].reason_detail == "attempt 1 failed (exit code 3); retry 1 of 2"
    settle(core, False)
    assert state(core, job) == "Running"
    start = [cmd for cmd in core.launcher_outbox if cmd[0] == "start"]
    assert start == [] or start[0][1]["attempt"] == 2     # settle cleared the outbox
    assert core.launch_spec(core.jobs[job])["attempt"] == 2
    core.on_exited(job, {"exit_code": 4})
    settle(core, False)
    core.on_exited(job, {"exit_code": 5})            # the third run: no retry left
    assert state(core, job) == "Failed" and core.jobs[job].exit_code == 5
    assert [a["exit_code"] for a in core.jobs[job].attempts] == [3, 4]
    assert state(core, child) == "Cancelled"         # only the last attempt counts
    again = make_core(tmp_path, clock)
    assert [a["exit_code"] for a in again.jobs[job].attempts] == [3, 4]


def test_a_retried_job_that_then_succeeds_lets_its_dependents_run(tmp_path):
    core = make_core(tmp_path, FakeClock())
    job = submit(core, max_retries=1)
    child = submit(core, depends_on_ids=[job], auto_cancel_on_dependency_failure=True)
    settle(core, False)
    core.on_exited(job, {"exit_code": 1})
    settle(core, True)
    assert state(core, child) == "Queued"
    core.on_exited(job, {"exit_code": 0})
    settle(core, True)
    assert state(core, job) == "Finished" and state(core, child) == "Running"


def test_cancelled_timed_out_and_reported_failures_are_not_retried(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    cancelled = submit(core, max_retries=3)
    timed = submit(core, max_retries=3, time_limit={"secs": 5, "nanos": 0})
    reported = submit(core, max_retries=3)
    settle(core, False)
    core.handle("transition", {"id": cancelled, "action": "cancel"})
    core.on_exited(cancelled, {"exit_code": 143})
    clock.t += 5
    core.enforce_time_limits()
    core.on_exited(timed, {"exit_code": 130})
    core.handle("transition", {"id": reported, "action": "fail"})
    assert [state(core, j) for j in (cancelled, timed, reported)] == [
        "Cancelled", "Timeout", "Failed"]
    assert all(not core.jobs[j].attempts for j in (cancelled, timed, reported))


def test_attempt_logs_are_named_per_attempt(tmp_path):
    core = make_core(tmp_path, FakeClock())
    job = submit(core, max_retries=1)
    settle(core, False)
    core.on_exited(job, {"exit_code": 1})
    settle(core, False)
    logs = core.paths.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{job}.log").write_text("second\n")
    (logs / f"{job}.attempt-1.log").write_text("first\n")
    assert core.handle("log_path", {"id": job, "attempt": 1}) == (
        200, str(logs / f"{job}.attempt-1.log"))
    assert core.handle("log_path", {"id": job, "attempt": 2})[1] == str(logs / f"{job}.log")
    assert core.handle("log_path", {"id": job})[1] == str(logs / f"{job}.log")
    status, body = core.handle("log_path", {"id": job, "attempt": 3})
    assert status == 404 and "no attempt 3" in body["error"]


def test_a_submitted_job_cannot_bring_attempts_or_a_suspension(tmp_path):
    core = make_core(tmp_path, FakeClock())
    job = submit(core, attempts=[{"attempt": 1, "exit_code": 0}],
                 suspended_at=time_to_wire(T0), pending_reason="Quota")
    j = core.jobs[job]
    assert j.attempts == [] and j.suspended_at is None and j.pending_reason is None


# --- quotas ------------------------------------------------------------------------------------

QUOTA = """
[quota.default_user]
max_running_gpus = 2
[quota.users.alice]
max_running_gpus = 4
max_queued_jobs = 2
[quota.projects.nlp]
max_running_jobs = 1
"""


def test_running_quotas_hold_jobs_with_a_detail_and_block_nobody(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="8", config_text=QUOTA)
    a = []
    for _ in range(3):                    # one at a time: alice may queue only 2
        a.append(submit(core, gpus=2, submitted_by="alice"))
        settle(core, True)
    b = submit(core, gpus=1, submitted_by="bob")
    b2 = submit(core, gpus=2, submitted_by="bob")
    settle(core, True)
    assert [state(core, j) for j in a] == ["Running", "Running", "Queued"]
    third = core.jobs[a[2]]
    assert third.pending_reason == "Quota"
    assert third.reason_detail == "alice runs 4 of 4 GPUs allowed"
    assert state(core, b) == "Running"               # others are not held up
    assert core.jobs[b2].reason_detail == "bob runs 1 of 2 GPUs allowed; this job needs 2"
    core.on_exited(a[0], {"exit_code": 0})
    settle(core, True)
    assert state(core, a[2]) == "Running" and core.jobs[a[2]].pending_reason is None


def test_project_quota_counts_jobs_of_every_user(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="8", config_text=QUOTA)
    x = submit(core, submitted_by="alice", project="nlp")
    y = submit(core, submitted_by="bob", project="nlp")
    z = submit(core, submitted_by="bob", project="vision")
    settle(core, True)
    assert [state(core, j) for j in (x, y, z)] == ["Running", "Queued", "Running"]
    assert core.jobs[y].reason_detail == "project nlp runs 1 of 1 job allowed"


def test_max_queued_jobs_refuses_a_submission_at_once(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="0", config_text=QUOTA)
    submit(core, gpus=1, submitted_by="alice")
    submit(core, gpus=1, submitted_by="alice")
    status, body = core.handle("submit", {"command": "x", "gpus": 1, "submitted_by": "alice"})
    assert status == 429
    assert body["error"] == ("quota: alice has 2 of 2 queued jobs allowed (max_queued_jobs); "
                             "nothing was submitted")
    status, body = core.handle("submit_batch", [{"command": "x", "submitted_by": "bob"}] * 3)
    assert status == 201                              # bob has no queue limit
    assert len(core.jobs) == 5


def test_quota_overrides_are_admin_only_persisted_and_merged(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="8", config_text=QUOTA)
    accounts = {"root": 0, "alice": 1001, "boss": 1002}
    core.access = Access(SecurityConfig(admins=("boss",)), 0, "root", accounts.get)
    alice = Caller(1001, "alice", ("alice",), "unix").to_wire()
    boss = Caller(1002, "boss", ("boss",), "unix").to_wire()
    body = {"scope": "user", "name": "alice", "limits": {"max_running_jobs": 1}}
    status, reply = core.handle("quota_set", dict(body), alice)
    assert status == 403 and reply["error"] == "only a gflow admin may change quotas; " \
                                               "alice is not one"
    assert core.handle("quota_list", {}, alice)[0] == 200          # reading is for anyone
    assert core.handle("quota_set", dict(body), boss)[0] == 200
    core.store.commit()
    again = make_core(tmp_path, clock, gpus="8", config_text=QUOTA)
    limits = again.effective_quotas().user_limits("alice")
    assert (limits.max_running_jobs, limits.max_running_gpus, limits.max_queued_jobs) == (1, 4, 2)
    rows = {(r["scope"], r["name"]): r for r in again.handle("quota_list", {})[1]["quotas"]}
    assert rows[("user", "alice")]["override"] == {"max_running_jobs": 1}
    assert rows[("user", "alice")]["config"] == {"max_running_gpus": 4, "max_queued_jobs": 2}
    assert rows[("default_user", None)]["limits"] == {"max_running_gpus": 2}
    assert again.handle("quota_remove", {"scope": "user", "name": "alice"})[0] == 200
    assert again.handle("quota_remove", {"scope": "user", "name": "alice"})[0] == 404
    assert again.effective_quotas().user_limits("alice").max_running_jobs is None
    # Through a snapshot too (not only the journal).
    again.handle("quota_set", {"scope": "default_project",
                               "limits": {"max_queued_jobs": 7}})
    again.store.snapshot(again.snapshot_state())
    third = make_core(tmp_path, clock, gpus="8", config_text=QUOTA)
    assert third.effective_quotas().default_project.max_queued_jobs == 7


def test_quota_list_shows_usage_per_user_and_project(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="8", config_text=QUOTA)
    submit(core, gpus=2, submitted_by="alice", project="nlp")
    submit(core, gpus=2, submitted_by="alice", project="nlp")
    settle(core, True)
    rows = {(r["scope"], r["name"]): r for r in core.handle("quota_list", {})[1]["quotas"]}
    assert rows[("user", "alice")]["running_jobs"] == 1
    assert rows[("user", "alice")]["running_gpus"] == 2
    assert rows[("user", "alice")]["queued_jobs"] == 1
    assert rows[("project", "nlp")]["limits"] == {"max_running_jobs": 1}


@pytest.mark.parametrize("payload,message", [
    ({"scope": "team", "limits": {"max_running_jobs": 1}}, "scope must be one of"),
    ({"scope": "user", "limits": {"max_running_jobs": 1}}, "a user quota needs a name"),
    ({"scope": "user", "name": "a", "limits": {}}, "give at least one"),
    ({"scope": "user", "name": "a", "limits": {"max_gpus": 1}}, "unknown limit"),
    ({"scope": "user", "name": "a", "limits": {"max_running_jobs": -1}}, "integer >= 0"),
])
def test_quota_set_refuses_bad_requests(tmp_path, payload, message):
    core = make_core(tmp_path, FakeClock())
    status, body = core.handle("quota_set", payload)
    assert status == 400 and message in body["error"]


# --- suspend / resume --------------------------------------------------------------------------

def test_suspend_keeps_the_gpus_and_resume_continues(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    job = submit(core, gpus=1)
    other = submit(core, gpus=1)
    settle(core, False)
    status, body = core.handle("suspend", {"id": job})
    assert status == 200 and body["job"]["suspended_at"] == time_to_wire(clock.t)
    assert core.launcher_outbox[-1] == ("tree_signal", job, "SIGSTOP")
    settle(core, True)
    assert state(core, job) == "Running" and state(core, other) == "Queued"
    assert core.handle("suspend", {"id": job})[0] == 409
    assert core.handle("suspend", {"id": other})[0] == 409
    assert core.handle("resume", {"id": job})[0] == 200
    assert core.launcher_outbox[-1] == ("tree_signal", job, "SIGCONT")
    assert core.jobs[job].suspended_at is None
    assert core.handle("resume", {"id": job})[0] == 409


def test_cancelling_a_suspended_job_wakes_it_to_handle_the_signal(tmp_path):
    core = make_core(tmp_path, FakeClock())
    job = submit(core)
    settle(core, False)
    core.handle("suspend", {"id": job})
    core.launcher_outbox.clear()
    core.handle("transition", {"id": job, "action": "cancel"})
    assert [c[:3] for c in core.launcher_outbox] == [("signal", job, "SIGTERM"),
                                                    ("tree_signal", job, "SIGCONT")]


def test_only_the_owner_or_an_admin_suspends(tmp_path):
    core = make_core(tmp_path, FakeClock())
    accounts = {"root": 0, "alice": 1001, "bob": 1002}
    core.access = Access(SecurityConfig(), 0, "root", accounts.get)
    job = submit(core, submitted_by="alice")
    settle(core, False)
    bob = Caller(1002, "bob", ("bob",), "unix").to_wire()
    status, body = core.handle("suspend", {"id": job}, bob)
    assert status == 403 and "only alice or a gflow admin may suspend it" in body["error"]


# --- fair-share --------------------------------------------------------------------------------

FAIR = "[daemon.fair_share]\nenabled = true\nhalf_life = \"1h\"\n"


def test_fair_share_orders_equal_priorities_by_decayed_use(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1", config_text=FAIR)
    heavy = submit(core, gpus=1, submitted_by="alice")
    settle(core, True)
    clock.t += 3600                                   # alice used 1 GPU-hour
    core.on_exited(heavy, {"exit_code": 0, "finished_at": clock.t})
    a = submit(core, gpus=1, submitted_by="alice")
    b = submit(core, gpus=1, submitted_by="bob")      # submitted later, same priority
    urgent = submit(core, gpus=1, submitted_by="alice", priority=50)
    settle(core, True)
    assert state(core, urgent) == "Running"           # priority still comes first
    core.on_exited(urgent, {"exit_code": 0})
    settle(core, True)
    assert state(core, b) == "Running" and state(core, a) == "Queued"
    body = core.handle("fair_share", {})[1]
    assert body["enabled"] and body["half_life_secs"] == 3600
    assert body["users"]["alice"]["usage_gpu_hours"] == pytest.approx(1.0, rel=0.01)
    assert body["users"]["alice"]["factor"] < 1.0 and "bob" not in body["users"]  # no use yet
    # Half of it is forgotten after a half-life; the usage survives a restart.
    clock.t += 3600
    again = make_core(tmp_path, clock, gpus="1", config_text=FAIR)
    assert again.decayed_usage("alice", clock.t) == pytest.approx(1800, rel=0.01)


def test_fair_share_off_keeps_0413_order_but_still_counts(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="1")
    first = submit(core, gpus=1, submitted_by="alice")
    settle(core, True)
    clock.t += 100
    core.on_exited(first, {"exit_code": 0})
    a = submit(core, gpus=1, submitted_by="alice")
    submit(core, gpus=1, submitted_by="bob")
    settle(core, True)
    assert state(core, a) == "Running"
    assert core.fair_shares() is None and core.fair_usage["alice"][0] == pytest.approx(100)
    assert core.handle("fair_share", {})[1]["enabled"] is False


def test_a_retried_attempt_counts_once(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    job = submit(core, gpus=2, max_retries=1)
    settle(core, True)
    clock.t += 10
    core.on_exited(job, {"exit_code": 1, "finished_at": clock.t})
    assert core.fair_usage["u"][0] == pytest.approx(20)
