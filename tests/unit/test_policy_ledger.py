"""Rule 5 of the policy, the reservation ledger (`policy._Ledger`), driven through `plan`.

Written for the mutants of `_Ledger` and of the reservation branch of `plan` that
`test_policy.py` and `test_mutants.py` let through (docs/testing.md, "Mutation testing of
the core"). Each test names the mutations it kills: `short_3` is mutmut's
`gflow.scheduler.policy.xǁ_Ledgerǁshort__mutmut_3`, `plan_269` is `x_plan__mutmut_269`,
numbered as at fda91d3. Every expected value is worked out by hand from the rules: a
reservation by index takes its GPUs off limits while it lasts; a count reservation needs
that many GPUs free (or held by its owner's jobs) at every moment of a job's window, from
now to the end of its time limit; a job holds its GPUs until its time limit ends (no
limit: for ever).
"""

from __future__ import annotations

from gflow.scheduler.policy import (
    ActiveReservation, Candidate, Gpu, Occupant, PolicyInput, _Ledger, plan,
)


def gpus(n):
    return [Gpu(index=i, memory_mb=24576) for i in range(n)]


def run(cands, occupants=(), n_gpus=2, reservations=(), now=0.0):
    return plan(PolicyInput(candidates=list(cands), occupants=list(occupants), dep_states={},
                            gpus=gpus(n_gpus), reservations=list(reservations), now=now))


def alice(gpus=1, time_limit=None, id=1):
    return Candidate(id=id, user="alice", gpus=gpus, time_limit=time_limit)


def bob_count(count=1, **kw):
    return ActiveReservation(user="bob", count=count, **kw)


# --- when a reservation holds GPUs: start_of, end_of, against -------------------------

def test_a_job_that_ends_when_an_index_reservation_begins_may_use_its_gpu():
    """against_5 (`start <= until`), start_of_2 (an upcoming start taken as now),
    start_of_4..7 (the `max(start, now)` of an upcoming start); plan_248 and 250 (a job's
    window: for ever, or `now - time_limit`)."""
    res = [ActiveReservation(user="bob", indices=(0,), start=100.0, until="05:00")]
    assert run([alice(time_limit=100)], n_gpus=1, reservations=res).starts == [(1, [0])]
    assert run([alice(time_limit=60)], n_gpus=1, reservations=res).starts == [(1, [0])]
    d = run([alice(time_limit=101)], n_gpus=1, reservations=res)
    assert d.starts == []
    assert d.waiting[1] == ("WaitingForResources",
                            "waiting: 1 GPUs, 0 free; GPUs reserved for bob until 05:00 "
                            "(a job whose time limit ends before then may start)")


def test_a_reservation_that_has_ended_holds_nothing():
    """against_7 (`end >= now`: one ending this instant still counted) and end_of_2 (every
    reservation taken to last for ever)."""
    for end in (100.0, 50.0):
        res = [ActiveReservation(user="bob", indices=(0,), end=end)]
        assert run([alice()], n_gpus=1, reservations=res, now=100.0).starts == [(1, [0])]


def test_an_upcoming_count_reservation_is_honoured_from_its_start():
    """short_6 (`{now} & starts`: no moment left to look at), short_22 (`continue` ->
    `break`: nothing live now ends the look-ahead), start_of_4..7, and the text of an
    upcoming reservation: describe_3, 8, 9, 16, 17, 18, 19; the hint that `plan` asks
    for: plan_287 (`len(free_now) <= c.gpus` taken as "occupied"), 325, 327, 330."""
    res = [bob_count(start=100.0, since="03:30", until="05:00")]
    d = run([alice()], n_gpus=1, reservations=res)
    assert d.starts == []
    assert d.waiting[1] == ("WaitingForResources",
                            "waiting: 1 GPUs, 0 free; GPUs reserved for bob from 03:30 "
                            "until 05:00 (a job whose time limit ends before then may start)")
    # One that ends before it begins may start; one that runs into it may not.
    assert run([alice(time_limit=100)], n_gpus=1, reservations=res).starts == [(1, [0])]
    assert run([alice(time_limit=101)], n_gpus=1, reservations=res).starts == []


def test_a_reservation_that_has_begun_is_not_called_upcoming():
    """describe_6 (`start >= now`) and describe_7 (`upcoming or since`): "from ..." and the
    hint only for a reservation that begins later."""
    for start in (100.0, None, 40.0):
        res = [ActiveReservation(user="bob", indices=(0,), start=start, since="03:30",
                                 until="05:00")]
        d = run([alice()], n_gpus=1, reservations=res, now=100.0)
        assert d.waiting[1] == ("WaitingForResources",
                                "waiting: 1 GPUs, 0 free; GPUs reserved for bob until 05:00")


def test_describe_without_an_end_text_and_without_the_hint_by_default():
    """describe_1 (the hint by default), describe_13 and 14 (" until " with no end text)."""
    ledger = _Ledger(PolicyInput(candidates=[], occupants=[], dep_states={}, gpus=gpus(1),
                                 now=0.0), gpus(1))
    upcoming = bob_count(start=100.0, since="03:30", until="05:00")
    assert ledger.describe(upcoming) == "GPUs reserved for bob from 03:30 until 05:00"
    assert ledger.describe(bob_count()) == "GPUs reserved for bob"
    assert ledger.describe(bob_count(), hint=True) == "GPUs reserved for bob"


# --- what is free for a count reservation: short ---------------------------------------

def test_the_owners_running_job_counts_toward_their_reservation():
    """__init___7 (occupants' user dropped), short_56 (`g in idx`), short_63 (`max(1, ..)`),
    short_64 (`count + held`)."""
    bobs_job = Occupant(id=9, user="bob", gpu_ids=(0,))
    assert run([alice()], [bobs_job], reservations=[bob_count()]).starts == [(1, [1])]


def test_another_users_running_job_is_neither_free_nor_the_owners():
    """short_35 (every GPU taken as idle), short_52, 53, 54 (other users' jobs counted as
    the owner's), hold_8 and hold_18 (what a hold records)."""
    carols_job = Occupant(id=9, user="carol", gpu_ids=(0,))
    d = run([alice()], [carols_job], reservations=[bob_count(until="14:00")])
    assert d.starts == []
    assert d.waiting[1] == ("WaitingForResources",
                            "waiting: 1 GPUs, 0 free; GPUs reserved for bob until 14:00")


def test_an_overdue_job_holds_its_gpu_now_and_no_longer():
    """hold_6 (`now - 1e-3`: free already now) and hold_7 (`now + 1.001`: held a second
    on): a job past its time limit still holds its GPU at this instant only."""
    overdue = Occupant(id=9, user="carol", gpu_ids=(0,), ends_at=990.0)
    assert run([alice()], [overdue], reservations=[bob_count()], now=1000.0).starts == []
    later = [bob_count(start=1000.5)]
    assert run([alice()], [overdue], reservations=later, now=1000.0).starts == [(1, [1])]


def test_a_gpu_is_free_again_when_the_time_limit_on_it_ends():
    """hold_17 (`get(g, +INF)`), __init___14 (every occupant held for ever), short_40
    (`busy_until < t`: not free at the very moment it ends)."""
    carols_job = Occupant(id=9, user="carol", gpu_ids=(0,), ends_at=100.0)
    for start in (100.0, 200.0):
        res = [bob_count(start=start)]
        assert run([alice()], [carols_job], reservations=res).starts == [(1, [1])]


def test_a_shared_gpu_is_held_until_its_last_job_ends():
    """hold_13 (`busy_until.get(None)`: the last hold replaces a longer one)."""
    forever = Occupant(id=8, user="carol", gpu_ids=(0,), shared=True, gpu_memory_mb=1000)
    short = Occupant(id=9, user="carol", gpu_ids=(0,), shared=True, gpu_memory_mb=1000,
                     ends_at=100.0)
    d = run([alice()], [forever, short], reservations=[bob_count(start=200.0, until="05:00")])
    assert d.starts == []
    assert d.waiting[1][1] == ("waiting: 1 GPUs, 0 free; GPUs reserved for bob until 05:00 "
                               "(a job whose time limit ends before then may start)")


def test_the_owners_job_stops_counting_when_its_limit_ends():
    """short_55 (`e >= t`): bob's shared job ends at 100 but the GPU stays busy with
    carol's job, so from 100 on bob's reservation needs a free GPU: alice's."""
    bobs = Occupant(id=8, user="bob", gpu_ids=(0,), shared=True, gpu_memory_mb=1000,
                    ends_at=100.0)
    carols = Occupant(id=9, user="carol", gpu_ids=(0,), shared=True, gpu_memory_mb=1000)
    assert run([alice()], [bobs, carols], reservations=[bob_count()]).starts == []
    # Up to 100 it is enough: alice may run until then.
    assert run([alice(time_limit=100)], [bobs, carols],
               reservations=[bob_count()]).starts == [(1, [1])]


def test_a_job_that_ends_when_an_index_reservation_begins_leaves_the_count_alone():
    """short_9 (`start <= until`) and short_13 (`e <= until`): the moment a job's window
    ends is not part of it. From 100 dave holds GPUs 1 and 2 by index; bob needs one GPU
    besides alice's, which only GPU 1 gives before 100."""
    res = [bob_count(), ActiveReservation(user="dave", indices=(1, 2), start=100.0)]
    carols = Occupant(id=9, user="carol", gpu_ids=(2,), ends_at=100.0)
    assert run([alice(time_limit=100)], [carols], n_gpus=3,
               reservations=res).starts == [(1, [0])]
    assert run([alice(time_limit=101)], [carols], n_gpus=3, reservations=res).starts == []


def test_a_reservation_that_ends_when_another_begins_is_not_counted_twice():
    """short_19 (count `t <= end`), short_26 (index `t <= end`), end_of_2."""
    carols = ActiveReservation(user="carol", count=1, start=100.0)
    by_count = [bob_count(end=100.0), carols]
    assert run([alice()], reservations=by_count).starts == [(1, [0])]
    by_index = [ActiveReservation(user="bob", indices=(1,), end=100.0), carols]
    assert run([alice()], reservations=by_index).starts == [(1, [0])]


def test_gpus_reserved_by_index_are_not_free_for_a_count_reservation():
    """short_25 (`start < t`: a reservation that has begun is left out at `now`)."""
    res = [ActiveReservation(user="dave", indices=(1,)), bob_count()]
    d = run([alice()], reservations=res)
    assert d.starts == []
    assert d.waiting[1] == ("WaitingForResources", "waiting: 1 GPUs, 0 free; GPUs reserved for bob")


def test_count_reservations_add_up():
    """short_30 (each free GPU counted twice), short_44 (one user's reservations not
    summed), short_57 (`need =`: only the last owner's need kept)."""
    for res in ([bob_count(count=2)],
                [bob_count(), bob_count()],
                [bob_count(), ActiveReservation(user="carol", count=1)]):
        d = run([alice()], reservations=res)
        assert d.starts == []
        assert d.waiting[1] == ("WaitingForResources",
                                "waiting: 1 GPUs, 0 free; GPUs reserved for bob")
    # Three GPUs leave two for bob and carol.
    res = [bob_count(), ActiveReservation(user="carol", count=1)]
    assert run([alice()], n_gpus=3, reservations=res).starts == [(1, [0])]


# --- how many GPUs a waiting job could have: usable and the memo of short -----------------

def test_the_free_count_is_the_most_a_job_could_take():
    """short_3 (one memo entry for every question), short_69 (`None` remembered),
    usable_21 (`hi = mid - 2`), plan_310 (every free GPU counted as usable)."""
    cases = [(1, 1, 1, "waiting: 1 GPUs, 0 free; GPUs reserved for bob"),
             (3, 3, 1, "waiting: 3 GPUs, 2 free; GPUs reserved for bob"),
             (3, 3, 2, "waiting: 3 GPUs, 1 free; GPUs reserved for bob")]
    for n_gpus, want, reserved, detail in cases:
        d = run([alice(gpus=want)], n_gpus=n_gpus, reservations=[bob_count(count=reserved)])
        assert d.starts == []
        assert d.waiting[1] == ("WaitingForResources", detail)


def test_the_free_count_is_asked_for_the_user_waiting():
    """usable_10 and plan_312 (`usable(None, ...)`), plan_273 (`short(None, ...)`): the
    answers for one user reused for the next, whose reservations differ. Alice
    may use one GPU beside bob's one; bob none beside alice's two."""
    res = [bob_count(count=1), ActiveReservation(user="alice", count=2)]
    d = run([alice(gpus=2), Candidate(id=2, user="bob", gpus=2)], reservations=res)
    assert d.starts == []
    assert d.waiting == {
        1: ("WaitingForResources", "waiting: 2 GPUs, 1 free; GPUs reserved for bob"),
        2: ("WaitingForResources",
            "waiting: 2 GPUs, 0 free; GPUs reserved for alice; priority: 1 jobs ahead"),
    }


# --- the reservation branch of `plan`: which reservation the waiting reason names -------

def test_the_waiting_reason_names_the_index_reservation_in_the_way():
    """plan_269 (`not protect_gpus or ...`: the count reservation asked even when too few
    GPUs are left), plan_300 (`found and against[0]`), plan_304 (`indices | free`): dave's
    GPUs 0 and 1 are what keeps alice waiting, not bob's count, which comes first."""
    res = [bob_count(), ActiveReservation(user="dave", indices=(0, 1), until="14:00")]
    d = run([alice()], reservations=res)
    assert d.waiting[1] == ("WaitingForResources",
                            "waiting: 1 GPUs, 0 free; GPUs reserved for dave until 14:00")


def test_a_job_short_of_gpus_names_the_reservation_it_would_also_meet():
    """plan_303 (`next(...)` without a default), plan_328 (`blocker and against[0]`),
    plan_329 (`against[1]`): too few GPUs are free (erin's job holds one) and bob's count
    reservation would want the other."""
    erins = Occupant(id=9, user="erin", gpu_ids=(0,))
    d = run([alice(gpus=2)], [erins], reservations=[bob_count()])
    assert d.waiting[1] == ("WaitingForResources",
                            "waiting: 2 GPUs, 0 free; GPUs reserved for bob")


def test_capacity_kept_for_a_starving_job_is_not_blamed_on_a_reservation():
    """plan_295 (`blocker is None and against or ...`) and plan_298 (`len(free) <=
    c.gpus`): carol's job has waited past starvation_secs for GPU 0, which erin's job holds
    and bob reserves; GPU 1 is kept for carol, and that is what alice is told."""
    erins = Occupant(id=9, user="erin", gpu_ids=(0,))
    res = [ActiveReservation(user="bob", indices=(0,))]
    carol = Candidate(id=1, user="carol", gpus=2, priority=50, queued_since=0.0)
    d = run([carol, Candidate(id=2, user="alice", gpus=1, priority=1)], [erins],
            reservations=res, now=1801.0)
    assert d.starts == [] and d.protecting
    assert d.waiting == {
        1: ("WaitingForResources", "waiting: 2 GPUs, 1 free; GPUs reserved for bob"),
        2: ("WaitingForResources",
            "waiting: GPUs kept for a job that has waited too long; priority: 1 jobs ahead"),
    }


def test_capacity_kept_for_a_starving_job_is_named_only_where_it_would_fit():
    """plan_331 (`protect_gpus or usable >= c.gpus`): with one GPU free, neither the
    starving job nor the two-GPU job behind it could start anyway; both are told so."""
    erins = Occupant(id=9, user="erin", gpu_ids=(0, 1))
    carol = Candidate(id=1, user="carol", gpus=2, priority=50, queued_since=0.0)
    d = run([carol, Candidate(id=2, user="alice", gpus=2, priority=1)], [erins], n_gpus=3,
            now=1801.0)
    assert d.starts == [] and d.protecting
    assert d.waiting == {
        1: ("WaitingForResources", "waiting: 2 GPUs, 1 free"),
        2: ("WaitingForResources", "waiting: 2 GPUs, 1 free; priority: 1 jobs ahead"),
    }


def test_the_owners_job_started_in_this_pass_counts_toward_their_reservation():
    """plan_364 (`ledger.hold(None, ...)`): bob starts on GPU 0, which covers his count
    reservation, so alice may take GPU 1 in the same pass."""
    d = run([Candidate(id=1, user="bob", gpus=1), Candidate(id=2, user="alice", gpus=1)],
            reservations=[bob_count()])
    assert d.starts == [(1, [0]), (2, [1])]
