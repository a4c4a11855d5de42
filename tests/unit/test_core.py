"""The scheduler core with a fake clock, fake GPUs and a real store in a temp dir."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_api_routes import FakeClock, make_core


def submit(core, **fields):
    status, body = core.handle("submit", {"command": "x", "submitted_by": "u", **fields})
    assert status == 201, body
    return body["id"]


def settle(core, full: bool):
    if full:
        core.pass_needed = True
    if core.pass_wanted:
        core.run_pass()
    core.store.commit()
    core.launcher_outbox.clear()


job_specs = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 255), st.booleans()),
                     min_size=1, max_size=15)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=job_specs)
def test_incremental_passes_decide_like_full_passes(tmp_path_factory, specs):
    cores = []
    for full in (False, True):
        core = make_core(tmp_path_factory.mktemp("c"), FakeClock(), gpus="3")
        for gpus, prio, settle_now in specs:
            submit(core, gpus=gpus, priority=prio)
            if settle_now:
                settle(core, full)
        settle(core, full)
        cores.append(core)
    inc, ful = cores
    assert {i: j.gpu_ids for i, j in inc.jobs.items() if j.state.value == "Running"} == \
        {i: j.gpu_ids for i, j in ful.jobs.items() if j.state.value == "Running"}


def test_exit_frees_gpus_and_starts_the_next_job(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    a = submit(core, gpus=2)
    b = submit(core, gpus=1)
    settle(core, False)
    assert core.jobs[a].state.value == "Running" and core.jobs[b].state.value == "Queued"
    assert "1 GPUs, 0 free" in core.jobs[b].reason_detail
    clock.t += 5
    core.on_exited(a, {"exit_code": 0, "finished_at": clock.t})
    settle(core, False)
    assert core.jobs[a].state.value == "Finished" and core.jobs[a].exit_code == 0
    assert core.jobs[b].state.value == "Running" and core.jobs[b].gpu_ids == [0]


def test_cancelled_job_keeps_its_gpus_until_its_process_exits(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="1")
    a = submit(core, gpus=1)
    settle(core, False)
    b = submit(core, gpus=1)
    assert core.handle("transition", {"id": a, "action": "cancel"})[0] == 200
    assert core.launcher_outbox[-1][:3] == ("signal", a, "SIGTERM")
    settle(core, False)
    assert core.jobs[b].state.value == "Queued"          # GPU 0 still draining
    core.on_exited(a, {"exit_code": 143, "detail": "killed by SIGTERM"})
    settle(core, False)
    assert core.jobs[b].state.value == "Running"
    assert core.jobs[a].state.value == "Cancelled" and core.jobs[a].exit_code == 143


def test_starving_big_job_is_not_overtaken_forever(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="2")
    first = submit(core, gpus=1)
    settle(core, False)
    big = submit(core, gpus=2, priority=50)
    small = submit(core, gpus=1)
    settle(core, False)
    assert core.jobs[small].state.value == "Running"     # backfills while the big one is fresh
    clock.t += 4000                                      # past starvation_secs (1800)
    core.on_exited(first, {"exit_code": 0})
    another = submit(core, gpus=1)
    settle(core, False)
    assert core.jobs[another].state.value == "Queued"    # GPU 0 is kept for the big job
    core.on_exited(small, {"exit_code": 0})
    settle(core, False)
    assert core.jobs[big].state.value == "Running" and core.jobs[big].gpu_ids == [0, 1]


def test_time_limit_times_out_and_cascades(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    a = submit(core, time_limit={"secs": 60, "nanos": 0})
    b = submit(core, depends_on_ids=[a], auto_cancel_on_dependency_failure=True)
    settle(core, False)
    assert core.next_deadline() == core.jobs[a].started_at + 60
    clock.t += 59
    core.enforce_time_limits()
    assert core.jobs[a].state.value == "Running"
    clock.t += 1
    core.enforce_time_limits()
    assert core.jobs[a].state.value == "Timeout"
    assert core.launcher_outbox[-1][:3] == ("signal", a, "SIGINT")
    assert core.jobs[b].reason == {"DependencyFailed": a}


def test_state_survives_reload_through_the_store(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    ids = [submit(core, gpus=9) for _ in range(3)]
    core.handle("transition", {"id": ids[1], "action": "hold"})
    core.store.commit()
    again = make_core(tmp_path, clock)
    assert [again.jobs[i].state.value for i in ids] == ["Queued", "Hold", "Queued"]
    assert again.next_job_id == 4
    assert again.queued == {ids[0], ids[2]} and again.held == {ids[1]}


# --- cascades reach held dependents (issue 24) ---------------------------------------------
# A held job is never a candidate of a pass, so only the cascade itself can cancel it: these
# fail if the cascade looks at Queued dependents only.

def hold(core, job_id):
    assert core.handle("transition", {"id": job_id, "action": "hold"})[0] == 200
    assert core.jobs[job_id].state.value == "Hold"


def test_failed_parent_cancels_held_dependents_transitively(tmp_path):
    core = make_core(tmp_path, FakeClock())
    parent = submit(core)
    settle(core, False)
    assert core.jobs[parent].state.value == "Running"
    child = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=True)
    grandchild = submit(core, depends_on_ids=[child], auto_cancel_on_dependency_failure=True)
    flagged = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=False)
    for jid in (child, grandchild, flagged):
        hold(core, jid)
    settle(core, False)
    core.on_exited(parent, {"exit_code": 1})
    # Cancelled by the exit itself (no pass ran yet), each naming its immediate parent.
    assert core.jobs[parent].state.value == "Failed"
    assert (core.jobs[child].state.value, core.jobs[child].reason) == (
        "Cancelled", {"DependencyFailed": parent})
    assert (core.jobs[grandchild].state.value, core.jobs[grandchild].reason) == (
        "Cancelled", {"DependencyFailed": child})
    # Without auto-cancel the held job stays held, flagged as never runnable.
    assert core.jobs[flagged].state.value == "Hold"
    assert core.jobs[flagged].reason_detail == (
        f"dependency can never be met: job {parent} did not finish")
    settle(core, True)
    again = make_core(tmp_path, FakeClock())        # and that is what was made durable
    assert [again.jobs[i].state.value for i in (child, grandchild, flagged)] == [
        "Cancelled", "Cancelled", "Hold"]


def test_cancelled_or_timed_out_parent_cancels_held_dependents(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock)
    cancelled = submit(core, gpus=9)                 # never starts: cancelled while queued
    timed = submit(core, time_limit={"secs": 60, "nanos": 0})
    settle(core, False)
    a = submit(core, depends_on_ids=[cancelled], auto_cancel_on_dependency_failure=True)
    b = submit(core, depends_on_ids=[timed], auto_cancel_on_dependency_failure=True)
    hold(core, a)
    hold(core, b)
    assert core.handle("transition", {"id": cancelled, "action": "cancel"})[0] == 200
    assert core.jobs[a].state.value == "Cancelled"
    assert core.jobs[a].reason == {"DependencyFailed": cancelled}
    clock.t += 60
    core.enforce_time_limits()
    assert core.jobs[timed].state.value == "Timeout"
    assert core.jobs[b].state.value == "Cancelled"
    assert core.jobs[b].reason == {"DependencyFailed": timed}


def test_cascade_leaves_satisfiable_and_finished_dependents_alone(tmp_path):
    core = make_core(tmp_path, FakeClock())
    bad, good = submit(core), submit(core)
    settle(core, False)
    any_mode = submit(core, depends_on_ids=[bad, good], dependency_mode="Any",
                      auto_cancel_on_dependency_failure=True)
    hold(core, any_mode)
    core.on_exited(bad, {"exit_code": 2})
    assert core.jobs[any_mode].state.value == "Hold"     # `good` may still finish
    assert core.jobs[any_mode].reason_detail != (
        f"dependency can never be met: job {bad} did not finish")
    core.on_exited(good, {"exit_code": 0})
    assert core.jobs[good].state.value == "Finished"
    assert core.jobs[any_mode].state.value == "Hold"


def test_cascade_looks_past_dependents_it_leaves_alone(tmp_path):
    # Children in id order: one already running (its Any-mode sibling parent finished),
    # one still satisfiable, then the one the failure dooms: the first two must not end
    # the cascade's walk.
    core = make_core(tmp_path, FakeClock())
    parent, other, slow = submit(core), submit(core), submit(core)
    settle(core, False)
    running = submit(core, depends_on_ids=[parent, other], dependency_mode="Any",
                     auto_cancel_on_dependency_failure=True)
    core.on_exited(other, {"exit_code": 0})
    settle(core, False)
    assert core.jobs[running].state.value == "Running"
    waiting = submit(core, depends_on_ids=[parent, slow], dependency_mode="Any",
                     auto_cancel_on_dependency_failure=True)
    doomed = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=True)
    flagged = submit(core, depends_on_ids=[parent], auto_cancel_on_dependency_failure=False)
    core.on_exited(parent, {"exit_code": 1})
    assert core.jobs[running].state.value == "Running"
    assert core.jobs[waiting].state.value == "Queued"           # `slow` may still finish
    assert core.jobs[doomed].state.value == "Cancelled"
    assert core.jobs[doomed].reason_detail == f"dependency job {parent} did not finish"
    assert core.jobs[flagged].state.value == "Queued"
    assert core.jobs[flagged].reason_detail == (
        f"dependency can never be met: job {parent} did not finish")
