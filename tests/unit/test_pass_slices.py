"""A big pass in slices: the same decision however sliced, and nothing changed meanwhile overruled."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gflow.models import JobState
from gflow.scheduler import passes
from gflow.scheduler.policy import (
    ActiveReservation, Candidate, Gpu, Occupant, PolicyInput, plan, plan_steps,
)
from test_api_routes import FakeClock, make_core

T0 = 1_795_500_000.0

cand_specs = st.lists(st.tuples(
    st.integers(0, 3),                          # priority
    st.sampled_from([None, 60.0, 3600.0, 86400.0 * 2]),     # time limit
    st.integers(0, 3),                          # gpus
    st.sampled_from(["a", "b", "c"]),           # user
    st.integers(0, 4000),                       # queued for (s)
    st.booleans()), min_size=0, max_size=40)


def steps_and_decision(inp, every):
    gen, steps = plan_steps(inp, every), 0
    while True:
        try:
            next(gen)
            steps += 1
        except StopIteration as done:
            return steps, done.value


@settings(max_examples=150, deadline=None)
@given(cand_specs, st.integers(1, 7), st.booleans(), st.booleans(), st.randoms())
def test_a_sliced_plan_decides_as_the_whole_one(specs, every, shares, reserve, rnd):
    """Priorities, time bonuses, fair-share, starvation and reservations: same starts,
    waiting reasons and cancels however many candidates a step takes, in any input order."""
    cands = [Candidate(id=i + 1, user=user, priority=prio, gpus=gpus, time_limit=limit,
                       queued_since=T0 - since, deps=(999,) if dep else (),
                       auto_cancel=bool(i % 2))
             for i, (prio, limit, gpus, user, since, dep) in enumerate(specs)]
    rnd.shuffle(cands)

    def inp():
        return PolicyInput(
            candidates=list(cands), occupants=[Occupant(id=1000, user="b", gpu_ids=(0,))],
            dep_states={999: "Failed"}, gpus=[Gpu(index=i, memory_mb=100) for i in range(4)],
            now=T0, reservations=[ActiveReservation(user="c", count=1, start=T0 + 600)]
            if reserve else [], shares={"a": 5.0, "b": 1.0} if shares else None)
    whole = plan(inp())
    steps, sliced = steps_and_decision(inp(), every)
    assert (sliced.starts, sliced.waiting, sliced.cancels, sliced.protecting,
            sliced.wake_at) == (whole.starts, whole.waiting, whole.cancels,
                                whole.protecting, whole.wake_at)
    assert steps >= (len(cands) - 1) // every           # it did yield between slices
    assert steps_and_decision(inp(), None)[0] == 0


# --- the core ----------------------------------------------------------------------------

def submit(core, **fields):
    status, body = core.handle("submit", {"command": "x", "submitted_by": "u", **fields})
    assert status == 201, body
    return body["id"]


def steps_of_pass(core) -> int:
    """Runs one whole pass a step at a time; how many steps it took."""
    steps = 0
    while True:
        core.run_pass()
        steps += 1
        if core._steps is None and core._unprepared is None:
            core.store.commit()
            return steps
        assert core.pass_wanted and core.next_deadline() == core.clock()   # no sleep


def sliced(monkeypatch, n=3):
    monkeypatch.setattr(passes.PassOps, "PASS_SLICE", n)


def begin_pass(core, calls=4):
    """The pass's first steps, past the gathering of its inputs (8 jobs, 3 a slice)."""
    core.pass_needed = True
    for _ in range(calls):
        assert core.run_pass().starts == [] and core._steps is not None


def test_a_big_pass_runs_in_slices_and_starts_what_a_whole_one_starts(tmp_path, monkeypatch):
    cores = []
    for name, slice_size in (("whole", 4000), ("sliced", 3)):
        monkeypatch.setattr(passes.PassOps, "PASS_SLICE", slice_size)
        (tmp_path / name).mkdir()
        core = make_core(tmp_path / name, FakeClock(T0), gpus="4")
        rnd = random.Random(7)
        for _ in range(20):
            submit(core, gpus=rnd.randint(1, 3), priority=rnd.randint(0, 5))
        core.store.commit()
        steps = steps_of_pass(core)
        assert (steps == 1) == (slice_size == 4000)
        cores.append(core)
    whole, cut = cores
    assert sorted(whole.running) == sorted(cut.running) and whole.running
    for jid, job in whole.jobs.items():
        assert (cut.jobs[jid].state, cut.jobs[jid].gpu_ids, cut.jobs[jid].reason_detail) == \
            (job.state, job.gpu_ids, job.reason_detail)
    assert cut.last_pass_secs is not None and cut.last_full_pass_secs == cut.last_pass_secs


def test_no_other_pass_runs_while_one_is_under_way(tmp_path, monkeypatch):
    """A job submitted mid-pass waits for its own pass, after this one."""
    sliced(monkeypatch)
    core = make_core(tmp_path, FakeClock(T0), gpus="1")
    for _ in range(8):
        submit(core, gpus=1, priority=1)
    core.store.commit()
    begin_pass(core)
    late = submit(core, gpus=1, priority=20)     # first in the order, but too late
    while core._steps is not None:
        core.run_pass()
    assert core.jobs[1].state == JobState.RUNNING
    assert core.jobs[late].state == JobState.QUEUED and late in core.new_since_pass


@pytest.mark.parametrize("change", ["cancel", "hold", "update"])
def test_a_job_changed_mid_pass_is_not_started_by_it(tmp_path, monkeypatch, change):
    sliced(monkeypatch)
    core = make_core(tmp_path, FakeClock(T0), gpus="2")
    first = submit(core, gpus=1, priority=20)
    for _ in range(8):
        submit(core, gpus=1)
    core.store.commit()
    begin_pass(core)
    if change == "update":
        status, _ = core.handle("update", {"id": first, "changes": {"gpus": 2}})
    else:
        status, _ = core.handle("transition", {"id": first, "action": change})
    assert status == 200
    core.pass_needed = False                   # only this pass's own asking counts
    while core._steps is not None:
        core.run_pass()
    # The pass took it for a one-GPU job on GPU 0: not applied to what it is now.
    assert core.jobs[first].state != JobState.RUNNING
    assert core.jobs[2].state == JobState.RUNNING      # decided on what did not change
    assert core.pass_needed                             # and the rest decided again
    core.store.commit()
    steps_of_pass(core)
    if change == "update":
        assert core.jobs[first].state == JobState.QUEUED        # 2 GPUs: one is busy
    assert len(core.running) == 2


def test_gpus_restricted_mid_pass_start_nothing_on_what_it_saw(tmp_path, monkeypatch):
    sliced(monkeypatch)
    core = make_core(tmp_path, FakeClock(T0), gpus="2")
    for _ in range(8):
        submit(core, gpus=1)
    core.store.commit()
    begin_pass(core)
    assert core.handle("set_gpus", {"allowed_indices": [1]})[0] == 200
    while core._steps is not None:
        core.run_pass()
    assert not core.running and core.pass_needed
    core.store.commit()
    steps_of_pass(core)
    assert [core.jobs[j].gpu_ids for j in core.running] == [[1]]


def test_a_reservation_made_mid_pass_is_honoured(tmp_path, monkeypatch):
    sliced(monkeypatch)
    core = make_core(tmp_path, FakeClock(T0), gpus="1")
    for _ in range(8):
        submit(core, gpus=1, submitted_by="alice")
    core.store.commit()
    begin_pass(core)
    assert core.handle("reservation_create", {
        "user": "bob", "gpu_count": 1, "duration_secs": 3600,
        "start_time": {"secs_since_epoch": int(T0), "nanos_since_epoch": 0}})[0] == 200
    while core._steps is not None:
        core.run_pass()
    core.store.commit()
    steps_of_pass(core)
    assert not core.running


job_specs = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=4,
                     max_size=14)
actions = st.lists(st.tuples(st.integers(0, 40), st.sampled_from(
    ["cancel", "hold", "release", "update", "submit", "exit"]), st.integers(0, 20)),
    max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job_specs, actions)
def test_requests_between_slices_never_double_book_a_gpu(tmp_path_factory, specs, acts):
    """Whatever comes between the slices, a started job was queued as the pass saw it,
    and no two exclusive jobs ever hold one GPU."""
    passes.PassOps.PASS_SLICE, old = 2, passes.PassOps.PASS_SLICE
    try:
        core = make_core(tmp_path_factory.mktemp("c"), FakeClock(T0), gpus="3")
        for gpus, prio in specs:
            submit(core, gpus=gpus, priority=prio)
        acts = sorted(acts)
        for step in range(60):
            if not core.pass_wanted:
                core.pass_needed = True
            for at, what, n in acts:
                if at == step:
                    act(core, what, n)
            core.run_pass()
            core.store.commit()
            held = [g for j in core.running | core.draining for g in core.jobs[j].gpu_ids]
            assert len(held) == len(set(held)) and set(held) <= {0, 1, 2}
            for jid in core.running:
                assert core.jobs[jid].gpu_ids is not None
                assert len(core.jobs[jid].gpu_ids) == core.jobs[jid].gpus
    finally:
        passes.PassOps.PASS_SLICE = old


def act(core, what, n):
    ids = sorted(core.jobs)
    jid = ids[n % len(ids)]
    if what in ("cancel", "hold", "release"):
        core.handle("transition", {"id": jid, "action": what})
    elif what == "update":
        core.handle("update", {"id": jid, "changes": {"gpus": n % 3}})
    elif what == "submit":
        submit(core, gpus=n % 3, priority=n % 4)
    elif what == "exit" and jid in core.running:
        core.on_exited(jid, {"exit_code": 0})


def test_the_reasons_a_pass_gives_keep_the_candidates(tmp_path):
    """A waiting reason is no input of the pass: the next pass reuses every candidate
    (rebuilding 100k of them held the loop 20-90 ms a slice), and listings show it."""
    core = make_core(tmp_path, FakeClock(T0), gpus="1")
    ids = [submit(core, gpus=1) for _ in range(4)]
    core.handle("list_jobs", {})                      # every job's JSON cached
    steps_of_pass(core)
    kept = {j: core._cand_cache[j] for j in ids[1:]}
    shown = json.loads(core.handle("get_job", {"id": ids[1]})[1])["reason_detail"]
    assert shown == core.jobs[ids[1]].reason_detail == "waiting: 1 GPUs, 0 free"
    core.pass_needed = True
    steps_of_pass(core)
    assert all(core._cand_cache[j] is c for j, c in kept.items())


def test_the_loop_does_one_of_a_pass_slice_and_a_chunk_of_encoding(tmp_path, monkeypatch):
    """Idle time encodes jobs for listings, but not in a step that runs a slice of a pass:
    both in one step held requests 90 ms at 100k jobs."""
    from test_api_hardening import loop_for
    sliced(monkeypatch)
    core = make_core(tmp_path, FakeClock(T0), gpus="1")
    for _ in range(8):
        submit(core, gpus=1)
    core.store.commit()
    loop = loop_for(core)
    warmed = []
    monkeypatch.setattr(core, "warm_cache", lambda budget: warmed.append(core.pass_wanted))
    core.pass_needed = True
    while core.pass_wanted:
        loop.step(0.0)
    assert core.running and warmed == []
    loop.step(0.0)
    assert warmed == [False]


def test_answers_do_not_wait_for_a_slice_of_the_pass_under_way(tmp_path, monkeypatch):
    """A submit handled while a big pass is under way is made durable and answered
    before the step runs the next slice; a small pass still goes before the answers,
    so that a start is committed with the request that made it."""
    from test_api_hardening import FakePeer, loop_for, run
    sliced(monkeypatch)
    core = make_core(tmp_path, FakeClock(T0), gpus="1")
    for _ in range(8):
        submit(core, gpus=1)
    core.store.commit()
    loop, peer = loop_for(core), FakePeer()
    core.pass_needed = True
    loop.step(0.0)
    assert core.pass_under_way
    seen = []
    run_pass = core.run_pass
    monkeypatch.setattr(core, "run_pass", lambda: (
        seen.append((dict(peer.replies), core.store.pending)), run_pass())[1])
    [(status, body)] = run(loop, ("submit", {"command": "x", "submitted_by": "u"}),
                           peer=peer)
    assert status == 201 and seen == [({0: (status, body)}, False)]
    while core.pass_under_way:
        loop.step(0.0)
    seen.clear()
    peer.replies.clear()
    run(loop, ("submit", {"command": "x", "submitted_by": "u"}), peer=peer)
    assert seen == [({}, True)]                     # the new job's own pass went first


def test_what_survives_a_full_collection_is_frozen():
    """The scheduler worker's gc callback: a full collection's survivors are not walked
    again by the next one (each walked 100k jobs submitted since the start: 60-90 ms)."""
    import gc
    from gflow.scheduler.service import freeze_survivors
    before = gc.get_freeze_count()
    kept = [{"job": [i]} for i in range(100)]
    try:
        freeze_survivors("start", {"generation": 2})
        freeze_survivors("stop", {"generation": 1})
        assert gc.get_freeze_count() == before
        freeze_survivors("stop", {"generation": 2})
        assert gc.get_freeze_count() >= before + len(kept)
    finally:
        if not before:              # frozen more than before otherwise: harmless here
            gc.unfreeze()
