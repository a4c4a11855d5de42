"""The pure scheduling policy, driven with explicit inputs (no clock, no GPUs)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gflow.scheduler.policy import (
    ActiveReservation, Candidate, Gpu, Occupant, PolicyInput, plan, time_bonus,
)


def gpus(n, mem=24576):
    return [Gpu(index=i, memory_mb=mem) for i in range(n)]


def run(cands, occupants=(), n_gpus=2, **kw):
    dep_states = kw.pop("dep_states", {})
    return plan(PolicyInput(candidates=list(cands), occupants=list(occupants),
                            dep_states=dep_states, gpus=kw.pop("gpu_list", gpus(n_gpus)), **kw))


def test_priority_order_and_disjoint_gpus():
    big = Occupant(id=1, user="a", gpu_ids=(0, 1))
    cands = [Candidate(id=2, user="a", gpus=1, priority=1),
             Candidate(id=3, user="a", gpus=1, priority=100),
             Candidate(id=4, user="a", gpus=1, priority=200)]
    assert run(cands, [big]).starts == []
    d = run(cands)
    assert d.starts == [(4, [0]), (3, [1])]
    assert d.waiting[2][0] == "WaitingForResources"


def test_time_bonus_and_id_tie_breakers():
    assert time_bonus(None) == 100
    assert time_bonus(86400 * 2) == 200
    assert time_bonus(0) == 300
    cands = [Candidate(id=5, user="a", gpus=1), Candidate(id=6, user="a", gpus=1, time_limit=60),
             Candidate(id=4, user="a", gpus=1)]
    assert [s[0] for s in run(cands, n_gpus=3).starts] == [6, 4, 5]


@pytest.mark.parametrize("mode_any,states,expect", [
    (False, {1: "Finished", 2: "Finished"}, "start"),
    (False, {1: "Finished", 2: "Running"}, "wait"),
    (False, {1: "Failed", 2: "Running"}, "cancel"),
    (True, {1: "Failed", 2: "Running"}, "wait"),       # Any: 2 may still succeed
    (True, {1: "Failed", 2: "Finished"}, "start"),
    (True, {1: "Failed", 2: "Cancelled"}, "cancel"),
])
def test_dependencies(mode_any, states, expect):
    c = Candidate(id=3, user="a", deps=(1, 2), dep_mode_any=mode_any)
    d = run([c], dep_states=states)
    got = "start" if d.starts else "cancel" if d.cancels else "wait"
    assert got == expect
    if expect == "cancel":
        assert d.cancels[0][0] == 3


def test_no_auto_cancel_stays_queued_with_detail():
    c = Candidate(id=3, user="a", deps=(1,), auto_cancel=False)
    d = run([c], dep_states={1: "Timeout"})
    assert not d.cancels and not d.starts
    assert "can never be met" in d.waiting[3][1]


def test_never_fitting_job_blocks_nobody():
    cands = [Candidate(id=1, user="a", gpus=3, priority=200),
             Candidate(id=2, user="a", gpus=1)]
    d = run(cands)
    assert d.starts == [(2, [0])]
    assert "can never run here" in d.waiting[1][1]


def test_allowed_gpus_and_foreign_processes():
    gl = [Gpu(0), Gpu(1, foreign=True), Gpu(2), Gpu(3)]
    d = run([Candidate(id=1, user="a", gpus=2)], gpu_list=gl, allowed=frozenset({1, 2, 3}))
    assert d.starts == [(1, [2, 3])]


def test_shared_jobs_share_by_memory_never_with_exclusive():
    gl = [Gpu(0, memory_mb=10000)]
    occ = [Occupant(id=1, user="a", gpu_ids=(0,), shared=True, gpu_memory_mb=6000)]
    fits = Candidate(id=2, user="a", gpus=1, shared=True, gpu_memory_mb=4000)
    too_big = Candidate(id=3, user="a", gpus=1, shared=True, gpu_memory_mb=4001)
    excl = Candidate(id=4, user="a", gpus=1)
    assert run([fits], occ, gpu_list=gl).starts == [(2, [0])]
    assert run([too_big], occ, gpu_list=gl).starts == []
    assert run([excl], occ, gpu_list=gl).starts == []


def test_memory_is_admitted_against_free_memory():
    occ = [Occupant(id=1, user="a", memory_mb=6000)]
    cands = [Candidate(id=2, user="a", memory_mb=5000), Candidate(id=3, user="a", memory_mb=4000)]
    d = run(cands, occ, total_memory_mb=10000)
    assert d.starts == [(3, [])]


def test_group_max_concurrent():
    occ = [Occupant(id=1, user="a", group_id="g")]
    cands = [Candidate(id=2, user="a", group_id="g", max_concurrent=2),
             Candidate(id=3, user="a", group_id="g", max_concurrent=2)]
    d = run(cands, occ)
    assert [s[0] for s in d.starts] == [2]
    assert "group limit" in d.waiting[3][1]


def test_starving_job_keeps_gpus_from_lower_jobs():
    occ = [Occupant(id=1, user="a", gpu_ids=(0,))]
    big = Candidate(id=2, user="a", gpus=2, priority=50, queued_since=0.0)
    small = Candidate(id=3, user="a", gpus=1, priority=10, queued_since=0.0)
    fresh = run([big, small], occ, now=100.0, starvation_secs=1800)
    assert fresh.starts == [(3, [1])]                 # greedy: the small one backfills
    starving = run([big, small], occ, now=5000.0, starvation_secs=1800)
    assert starving.starts == []                      # GPU 1 is kept for the big job
    zero = Candidate(id=4, user="a", gpus=0)
    assert run([big, zero], occ, now=5000.0, starvation_secs=1800).starts == [(4, [])]


def test_reservations_by_index_and_count():
    res = [ActiveReservation(user="bob", indices=(0,))]
    alice = Candidate(id=1, user="alice", gpus=1)
    bob = Candidate(id=2, user="bob", gpus=2)
    assert run([alice], reservations=res).starts == [(1, [1])]
    assert run([bob], reservations=res).starts == [(2, [0, 1])]   # owners may use more
    count = [ActiveReservation(user="bob", count=1)]
    assert run([Candidate(id=3, user="alice", gpus=2)], reservations=count).starts == []
    assert run([Candidate(id=3, user="alice", gpus=1)], reservations=count).starts == [(3, [0])]


def test_random_strategy_uses_the_given_shuffle():
    rng = random.Random(7)
    d = run([Candidate(id=1, user="a", gpus=2)], n_gpus=8, shuffle=rng.shuffle)
    assert len(set(d.starts[0][1])) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 255),
                          st.integers(0, 8000)), max_size=12),
       st.lists(st.integers(0, 3), max_size=3, unique=True),
       st.integers(1, 4))
def test_property_no_gpu_handed_out_twice(specs, busy, n):
    gl = gpus(n, mem=8000)
    occ = [Occupant(id=100 + i, user="x", gpu_ids=(g,)) for i, g in enumerate(busy) if g < n]
    cands = [Candidate(id=i + 1, user="a", gpus=g, shared=sh, priority=p,
                       gpu_memory_mb=m if sh else None)
             for i, (g, sh, p, m) in enumerate(specs)]
    d = run(cands, occ, gpu_list=gl)
    exclusive_taken = [g for o in occ for g in o.gpu_ids]
    shared_use: dict[int, int] = {}
    by_id = {c.id: c for c in cands}
    for job_id, ids in d.starts:
        c = by_id[job_id]
        assert len(ids) == c.gpus and len(set(ids)) == len(ids)
        for g in ids:
            assert 0 <= g < n
            assert g not in exclusive_taken
            if c.shared:
                shared_use[g] = shared_use.get(g, 0) + c.gpu_memory_mb
            else:
                exclusive_taken.append(g)
    assert all(g not in exclusive_taken for g in shared_use)
    assert all(used <= 8000 for used in shared_use.values())


def test_waiting_reason_names_the_reservation_owner():
    res = [ActiveReservation(user="bob", indices=(0, 1), until="14:00")]
    d = run([Candidate(id=1, user="alice", gpus=1)], reservations=res)
    assert d.waiting[1][1] == "waiting: 1 GPUs, 0 free; GPUs reserved for bob until 14:00"
