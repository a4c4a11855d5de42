"""The scheduler's side of the Slurm executor (gflow/scheduler/ops_executor.py, mixed into
SchedulerCore): the hand-over pass and what it does with the executor's reports, with a
fake clock, fake GPUs and a real store in a temp dir; no launcher, no Slurm.

Expected values are written out by hand; nothing is computed with the code under test."""

from __future__ import annotations


from gflow.models import job_to_wire, time_to_wire
from test_api_routes import FakeClock, make_core
from test_core import submit

T0 = 1_795_500_000.0         # FakeClock's default now
SLURM = '[executor]\nkind = "slurm"\n'
NO_DEPS = {"conds": [], "any": False}
REFUSED = ("Slurm refused it: sbatch: error: Batch job submission failed: Requested node "
           "configuration is not available")


def slurm_core(tmp_path, clock=None):
    return make_core(tmp_path, clock or FakeClock(), config_text=SLURM)


def state(core, job_id):
    return core.jobs[job_id].state.value


def take(core):
    out = list(core.launcher_outbox)
    core.launcher_outbox.clear()
    return out


def submits(outbox):
    return [m for m in outbox if m[0] == "submit"]


def handed(core, job_id, key):
    """Pass, then the executor's acknowledgement."""
    core.run_pass()
    core.on_submitted(job_id, key)
    take(core)


def test_the_config_names_slurm(tmp_path):
    core = slurm_core(tmp_path)
    assert core.config.executor.kind == "slurm"
    assert core.external is True


# --- the hand-over pass -----------------------------------------------------------------

def test_queued_job_is_handed_over_with_its_slurm_deps(tmp_path):
    core = slurm_core(tmp_path)
    j = submit(core, gpus=2, time_limit={"secs": 90, "nanos": 0}, memory_limit_mb=2048)
    core.run_pass()
    out = take(core)
    assert [m[0] for m in out] == ["submit"]
    assert len(out[0][1]) == 1
    spec = out[0][1][0]
    assert spec["id"] == j
    assert spec["command"] == "x"
    assert spec["gpus"] == 2
    assert spec["gpu_ids"] == []
    assert spec["time_limit"] == 90.0
    assert spec["memory_limit_mb"] == 2048
    assert spec["slurm_deps"] == {"conds": [], "any": False}
    assert spec["attempt"] == 1
    assert spec["group_id"] is None and spec["max_concurrent"] is None
    # Still Queued in gflow (Slurm says when it runs); no GPUs chosen here.
    assert state(core, j) == "Queued"
    assert core.jobs[j].gpu_ids is None
    assert core.jobs[j].reason_detail == "being handed to Slurm"
    # Not sent again while the executor has not answered.
    core.pass_needed = True
    core.run_pass()
    assert submits(take(core)) == []


def test_gpus_never_gate_a_handover(tmp_path):
    core = slurm_core(tmp_path)                     # the fake box has 4 GPUs
    j = submit(core, gpus=64)
    core.run_pass()
    assert [s["id"] for m in submits(take(core)) for s in m[1]] == [j]


def test_dependent_waits_for_its_parent_to_be_acknowledged(tmp_path):
    core = slurm_core(tmp_path)
    parent = submit(core)
    child = submit(core, depends_on_ids=[parent])
    core.run_pass()
    assert [[s["id"] for s in m[1]] for m in submits(take(core))] == [[parent]]
    assert state(core, child) == "Queued"
    assert core.jobs[child].reason_detail == f"waiting for job {parent}"
    core.pass_needed = True
    core.run_pass()
    assert submits(take(core)) == []
    core.on_submitted(parent, "101")
    assert core.pass_wanted
    core.run_pass()
    out = submits(take(core))
    assert [[s["id"] for s in m[1]] for m in out] == [[child]]
    assert out[0][1][0]["slurm_deps"] == {"conds": [["afterok", "101"]], "any": False}


def test_dependent_of_any_with_conditions(tmp_path):
    core = slurm_core(tmp_path)
    a, b = submit(core), submit(core)
    c = submit(core, depends_on_ids=[a, b], dependency_mode="Any",
               dependency_conditions={str(b): "afterany"})
    handed(core, a, "101")
    core.on_submitted(b, "102_3")
    take(core)
    core.run_pass()
    out = submits(take(core))
    assert out[0][1][0]["id"] == c
    assert out[0][1][0]["slurm_deps"] == {
        "conds": [["afterok", "101"], ["afterany", "102_3"]], "any": True}


def test_on_submitted_journals_the_slurm_id(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    j = submit(core)
    core.run_pass()
    take(core)
    records = []
    real_append = core.store.append
    core.store.append = lambda record: (records.append(record), real_append(record))[1]
    core.on_submitted(j, "101")
    journalled = [r["job"] for r in records if r["op"] == "job" and r["job"]["id"] == j]
    assert [r["executor_id"] for r in journalled] == ["101"]
    assert core.jobs[j].executor_id == "101"
    assert core.jobs[j].reason_detail == "Slurm job 101"
    assert job_to_wire(core.jobs[j], with_env=True)["executor_id"] == "101"
    assert job_to_wire(core.jobs[j])["executor_id"] == "101"
    # Acknowledged: never handed over again; a restart re-attaches through the journal.
    core.pass_needed = True
    core.run_pass()
    assert submits(take(core)) == []
    core.store.commit()
    again = slurm_core(tmp_path, clock)
    assert again.jobs[j].executor_id == "101"
    again.run_pass()
    assert submits(again.launcher_outbox) == []


def test_on_submitted_for_a_job_cancelled_meanwhile_cancels_it_in_slurm(tmp_path):
    core = slurm_core(tmp_path)
    j = submit(core)
    core.run_pass()
    take(core)
    assert core.handle("transition", {"id": j, "action": "cancel"})[0] == 200
    assert take(core) == [("cancel", j)]
    core.on_submitted(j, "101")
    assert take(core) == [("cancel", j)]
    assert state(core, j) == "Cancelled"


# --- started and ended ------------------------------------------------------------------

def test_on_started_moves_queued_to_running_at_the_reported_time(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    j = submit(core, gpus=2)
    handed(core, j, "101")
    clock.t = T0 + 10
    core.on_started(j, {"key": "101", "gpu_ids": [1, 3], "started_at": T0 + 4})
    job = core.jobs[j]
    assert job.state.value == "Running"
    assert job.started_at == T0 + 4
    assert job.gpu_ids == [1, 3]
    assert job.reason_detail is None
    assert j in core.running and j not in core.queued


def test_on_started_in_the_future_is_clamped_to_now(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    j = submit(core)
    handed(core, j, "101")
    clock.t = T0 + 10
    core.on_started(j, {"key": "101", "gpu_ids": [0], "started_at": T0 + 500})
    assert core.jobs[j].started_at == T0 + 10


def test_on_exited_timeout(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    j = submit(core)
    child = submit(core, depends_on_ids=[j], auto_cancel_on_dependency_failure=True)
    handed(core, j, "101")
    core.on_submitted(child, "102")
    take(core)
    core.on_started(j, {"key": "101", "gpu_ids": [0], "started_at": T0})
    clock.t = T0 + 70
    core.on_exited(j, {"exit_code": None, "finished_at": T0 + 61, "state": "Timeout",
                       "detail": "Slurm: time limit reached (TimeLimit)"})
    job = core.jobs[j]
    assert job.state.value == "Timeout"
    assert job.finished_at == T0 + 61
    assert job.exit_code is None
    assert job.reason_detail == "Slurm: time limit reached (TimeLimit)"
    assert state(core, child) == "Cancelled"
    assert core.jobs[child].reason == {"DependencyFailed": j}
    out = take(core)
    assert ("forget", j) in out
    assert ("cancel", child) in out


def test_on_exited_finished_and_failed(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    a, b = submit(core), submit(core)
    for jid, key in ((a, "101"), (b, "102")):
        handed(core, jid, key)
        core.on_started(jid, {"key": key, "gpu_ids": [], "started_at": T0})
    clock.t = T0 + 20
    core.on_exited(a, {"exit_code": 0, "finished_at": T0 + 5})
    core.on_exited(b, {"exit_code": 3, "finished_at": T0 + 6})
    assert state(core, a) == "Finished" and core.jobs[a].finished_at == T0 + 5
    assert state(core, b) == "Failed" and core.jobs[b].exit_code == 3
    assert core.jobs[b].reason_detail == "exit code 3"


def test_cancelled_in_slurm_while_queued_cancels_it_and_its_dependents(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    j = submit(core)
    child = submit(core, depends_on_ids=[j], auto_cancel_on_dependency_failure=True)
    grandchild = submit(core, depends_on_ids=[child], auto_cancel_on_dependency_failure=True)
    handed(core, j, "101")
    clock.t = T0 + 5
    core.on_exited(j, {"exit_code": None, "finished_at": T0 + 4, "state": "Cancelled",
                       "detail": "Slurm: cancelled"})
    assert state(core, j) == "Cancelled"
    assert core.jobs[j].reason_detail == "Slurm: cancelled"
    assert state(core, child) == "Cancelled"
    assert core.jobs[child].reason == {"DependencyFailed": j}
    assert state(core, grandchild) == "Cancelled"
    assert core.jobs[grandchild].reason == {"DependencyFailed": child}


# --- gflow's own changes carried to Slurm -----------------------------------------------

def test_hold_release_and_cancel_of_a_handed_over_job(tmp_path):
    core = slurm_core(tmp_path)
    j = submit(core)
    handed(core, j, "101")
    assert core.handle("transition", {"id": j, "action": "hold"})[0] == 200
    assert take(core) == [("hold", j)]
    assert core.handle("transition", {"id": j, "action": "release"})[0] == 200
    assert take(core) == [("release", j)]
    core.run_pass()
    assert submits(take(core)) == []                # released: still in Slurm, not again
    assert core.handle("transition", {"id": j, "action": "cancel"})[0] == 200
    assert take(core) == [("cancel", j)]
    assert state(core, j) == "Cancelled"


def test_hold_before_the_acknowledgement_follows_it(tmp_path):
    core = slurm_core(tmp_path)
    j = submit(core)
    core.run_pass()
    take(core)
    assert core.handle("transition", {"id": j, "action": "hold"})[0] == 200
    assert take(core) == []                         # no Slurm id to hold yet
    core.on_submitted(j, "101")
    assert take(core) == [("hold", j)]


def test_hold_of_a_job_not_handed_over_says_nothing_to_slurm(tmp_path):
    core = slurm_core(tmp_path)
    j = submit(core)
    assert core.handle("transition", {"id": j, "action": "hold"})[0] == 200
    assert core.handle("transition", {"id": j, "action": "release"})[0] == 200
    assert core.handle("transition", {"id": j, "action": "cancel"})[0] == 200
    assert take(core) == []


# --- refusals ---------------------------------------------------------------------------

def test_refused_job_stays_queued_until_its_gpus_change(tmp_path):
    core = slurm_core(tmp_path)
    j = submit(core, gpus=3)
    core.run_pass()
    take(core)
    core.on_refused(j, REFUSED)
    assert state(core, j) == "Queued"
    assert core.jobs[j].reason_detail.startswith("can never run as it is: ")
    assert core.jobs[j].reason_detail == "can never run as it is: " + REFUSED
    core.pass_needed = True
    core.run_pass()
    assert submits(take(core)) == []
    assert core.jobs[j].reason_detail == "can never run as it is: " + REFUSED
    # A change the refusal was not about does not ask again ...
    assert core.handle("update", {"id": j, "changes": {"priority": 40}})[0] == 200
    core.run_pass()
    assert submits(take(core)) == []
    # ... fewer GPUs do.
    assert core.handle("update", {"id": j, "changes": {"gpus": 2}})[0] == 200
    core.run_pass()
    out = submits(take(core))
    assert [[(s["id"], s["gpus"]) for s in m[1]] for m in out] == [[(j, 2)]]
    assert core.jobs[j].reason_detail == "being handed to Slurm"


# --- admission --------------------------------------------------------------------------

def test_shared_gpus_are_refused_at_admission(tmp_path):
    core = slurm_core(tmp_path)
    status, body = core.handle("submit", {"command": "x", "submitted_by": "u",
                                          "gpu_sharing_mode": "Shared",
                                          "gpu_memory_limit_mb": 4000})
    assert status == 400
    assert "does not exist with the Slurm executor" in body["error"]
    status, body = core.handle("submit", {"command": "x", "submitted_by": "u",
                                          "gpu_memory_limit_mb": 4000})
    assert status == 400
    assert "does not exist with the Slurm executor" in body["error"]
    status, body = core.handle("submit_batch", [
        {"command": "x", "submitted_by": "u"},
        {"command": "y", "submitted_by": "u", "gpu_sharing_mode": "Shared",
         "gpu_memory_limit_mb": 4000}])
    assert status == 400
    assert "does not exist with the Slurm executor" in body["error"]
    assert core.jobs == {}


def test_shared_gpus_are_admitted_in_local_mode(tmp_path):
    core = make_core(tmp_path, FakeClock())
    status, _body = core.handle("submit", {"command": "x", "submitted_by": "u",
                                           "gpu_sharing_mode": "Shared",
                                           "gpu_memory_limit_mb": 4000})
    assert status == 201


# --- a (re)connected executor -----------------------------------------------------------

def test_launcher_connected_adopts_with_executor_ids(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    waiting = submit(core)
    running = submit(core)
    handing = submit(core, priority=1)
    later = submit(core, scheduled_at=time_to_wire(T0 + 3600))     # --begin: not yet
    core.run_pass()
    core.on_submitted(waiting, "101")
    core.on_submitted(running, "102")
    core.on_started(running, {"key": "102", "gpu_ids": [0], "started_at": T0})
    take(core)
    core.on_launcher_connected()
    out = take(core)
    assert [m[0] for m in out] == ["adopt"]
    assert [(s["id"], s["executor_id"]) for s in out[0][1]] == [
        (waiting, "101"), (running, "102"), (handing, None)]
    assert core.jobs[later].executor_id is None
    assert core.jobs[later].pending_reason == "BeginTime"


# --- local mode is unchanged --------------------------------------------------------------

def test_local_mode_starts_jobs_itself(tmp_path):
    core = make_core(tmp_path, FakeClock())
    assert core.config.executor.kind == "local"
    assert core.external is False
    j = submit(core, gpus=1)
    child = submit(core, depends_on_ids=[j])
    core.run_pass()
    out = take(core)
    assert [(m[0], m[1]["id"], m[1]["gpu_ids"]) for m in out] == [("start", j, [0])]
    assert "slurm_deps" not in out[0][1]
    assert state(core, j) == "Running"
    assert state(core, child) == "Queued"
    assert core.jobs[child].executor_id is None
    core.on_launcher_connected()
    out = take(core)
    assert [m[0] for m in out] == ["adopt"]
    assert [s["id"] for s in out[0][1]] == [j]
    assert "executor_id" not in out[0][1][0]
    # Hold / release / cancel of a queued job say nothing to the launcher.
    assert core.handle("transition", {"id": child, "action": "hold"})[0] == 200
    assert core.handle("transition", {"id": child, "action": "release"})[0] == 200
    assert core.handle("transition", {"id": child, "action": "cancel"})[0] == 200
    assert take(core) == []


# --- retries ------------------------------------------------------------------------------

def test_a_retried_job_is_handed_over_again_as_a_new_slurm_job(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    j = submit(core, max_retries=1)
    handed(core, j, "101")
    core.on_started(j, {"key": "101", "gpu_ids": [0], "started_at": T0})
    clock.t = T0 + 10
    core.on_exited(j, {"exit_code": 1, "finished_at": T0 + 9})
    assert state(core, j) == "Queued"
    assert core.jobs[j].executor_id is None
    take(core)
    core.run_pass()
    out = submits(take(core))
    assert [[(s["id"], s["attempt"]) for s in m[1]] for m in out] == [[(j, 2)]]


def test_a_dependent_survives_its_parents_retried_failure(tmp_path):
    clock = FakeClock()
    core = slurm_core(tmp_path, clock)
    parent = submit(core, max_retries=1)
    child = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=True)
    handed(core, parent, "101")
    core.run_pass()
    handed_deps = {s["id"]: s["slurm_deps"] for m in submits(take(core)) for s in m[1]}
    if child in handed_deps:
        core.on_submitted(child, "102")
    take(core)
    core.on_started(parent, {"key": "101", "gpu_ids": [0], "started_at": T0})
    clock.t = T0 + 10
    core.on_exited(parent, {"exit_code": 1, "finished_at": T0 + 9})     # attempt 1 fails
    assert state(core, parent) == "Queued"                              # it is retried
    out = take(core)
    # What Slurm does next: a dependent still in Slurm whose afterok named 101 is
    # cancelled by --kill-on-invalid-dep, unless gflow cancelled it there itself.
    if core.jobs[child].executor_id is not None and ("cancel", child) not in out and \
            ["afterok", "101"] in handed_deps.get(child, {}).get("conds", []):
        clock.t = T0 + 12
        core.on_exited(child, {"exit_code": None, "finished_at": T0 + 11,
                               "state": "Cancelled",
                               "detail": "Slurm: cancelled (DependencyNeverSatisfied)"})
    assert state(core, child) == "Queued"
    # gflow took it back from Slurm itself, and waits for the parent's new Slurm job.
    assert ("cancel", child) in out
    assert core.jobs[child].executor_id is None
    # Slurm's late word on the old Slurm job of the child changes nothing.
    core.on_exited(child, {"exit_code": None, "finished_at": T0 + 11, "state": "Cancelled",
                           "detail": "Slurm: cancelled (DependencyNeverSatisfied)",
                           "key": "102"})
    assert state(core, child) == "Queued"
    core.run_pass()
    assert [s["id"] for m in submits(take(core)) for s in m[1]] == [parent]
    core.on_submitted(parent, "103")
    core.run_pass()
    again = [s for m in submits(take(core)) for s in m[1]]
    assert [(s["id"], s["slurm_deps"]) for s in again] == [
        (child, {"conds": [["afterok", "103"]], "any": False})]


def test_an_update_of_a_job_waiting_in_slurm_hands_it_over_again(tmp_path):
    core = slurm_core(tmp_path)
    parent = submit(core, gpus=1)
    child = submit(core, depends_on_ids=[parent])
    handed(core, parent, "201")
    handed(core, child, "202")
    assert core.handle("update", {"id": parent, "changes": {"gpus": 2}})[0] == 200
    out = take(core)
    assert ("cancel", parent) in out and ("cancel", child) in out
    assert core.jobs[parent].executor_id is None and core.jobs[child].executor_id is None
    core.run_pass()
    specs = [s for m in submits(take(core)) for s in m[1]]
    assert [(s["id"], s["gpus"]) for s in specs] == [(parent, 2)]
    core.on_submitted(parent, "203")
    core.run_pass()
    specs = [s for m in submits(take(core)) for s in m[1]]
    assert [(s["id"], s["slurm_deps"]) for s in specs] == [
        (child, {"conds": [["afterok", "203"]], "any": False})]
    # A change Slurm does not see (the priority) leaves it where it is.
    core.on_submitted(child, "204")
    take(core)
    assert core.handle("update", {"id": child, "changes": {"priority": 20}})[0] == 200
    assert take(core) == [] and core.jobs[child].executor_id == "204"


def test_gpu_sharing_cannot_be_set_by_an_update_in_slurm_mode(tmp_path):
    core = slurm_core(tmp_path)
    j = submit(core, gpus=1)
    rep = core.handle("update", {"id": j, "changes": {"gpu_memory_limit_mb": 1024}})
    status, body = rep
    assert status == 400 and "does not exist with the Slurm executor" in body["error"]
