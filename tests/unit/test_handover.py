"""Which queued jobs gflow hands to Slurm now (gflow/scheduler/handover.py): gflow's own
gates only — dependencies it can map to Slurm's, begin times, quotas — never GPUs.

Expected values are written out by hand; nothing is computed with the code under test."""

from __future__ import annotations

from gflow.config_quota import QuotaConfig, QuotaLimits
from gflow.scheduler import handover
from gflow.scheduler.handover import HandoverInput, plan
from gflow.scheduler.policy import Candidate, Occupant

NO_DEPS = {"conds": [], "any": False}


def run(cands, dep_states=None, executor_ids=None, **kw):
    return plan(HandoverInput(candidates=list(cands), dep_states=dep_states or {},
                              executor_ids=executor_ids or {}, **kw))


# --- no dependencies --------------------------------------------------------------------

def test_job_without_dependencies_is_submitted():
    out = run([Candidate(id=1, user="alice", gpus=2)])
    assert out.submits == [(1, {"conds": [], "any": False})]
    assert out.cancels == []
    assert out.waiting == {}
    assert out.wake_at is None


def test_gpus_never_gate_a_handover():
    # 64 GPUs asked, none known here: Slurm places jobs, gflow does not
    out = run([Candidate(id=1, user="alice", gpus=64, memory_mb=10**7)])
    assert out.submits == [(1, NO_DEPS)]


def test_empty_input():
    out = run([])
    assert (out.submits, out.cancels, out.waiting, out.wake_at) == ([], [], {}, None)


def test_submits_follow_priority_then_id():
    cands = [Candidate(id=3, user="a"), Candidate(id=1, user="a"),
             Candidate(id=2, user="a", priority=50)]
    assert [jid for jid, _ in run(cands).submits] == [2, 1, 3]


# --- dependencies on jobs already in Slurm ----------------------------------------------

def test_dependent_of_a_running_handed_over_parent_gets_slurms_dependency():
    out = run([Candidate(id=2, user="alice", deps=(1,))],
              dep_states={1: "Running"}, executor_ids={1: "123"})
    assert out.submits == [(2, {"conds": [["afterok", "123"]], "any": False})]
    assert out.waiting == {}


def test_dependent_of_a_queued_handed_over_parent():
    out = run([Candidate(id=2, user="alice", deps=(1,), dep_conditions=("afterany",))],
              dep_states={1: "Queued"}, executor_ids={1: "120_4"})
    assert out.submits == [(2, {"conds": [["afterany", "120_4"]], "any": False})]


def test_dependent_of_a_held_handed_over_parent():
    out = run([Candidate(id=2, user="alice", deps=(1,),
                         dep_conditions=("afternotok",))],
              dep_states={1: "Hold"}, executor_ids={1: "130"})
    assert out.submits == [(2, {"conds": [["afternotok", "130"]], "any": False})]


def test_several_parents_mapped_in_order_any_mode():
    c = Candidate(id=5, user="alice", deps=(1, 2), dep_conditions=("afterok", "afterany"),
                  dep_mode_any=True)
    out = run([c], dep_states={1: "Queued", 2: "Running"},
              executor_ids={1: "130", 2: "120_4"})
    assert out.submits == [(5, {"conds": [["afterok", "130"], ["afterany", "120_4"]],
                                "any": True})]


def test_finished_parent_left_out_of_slurms_dependency():
    c = Candidate(id=5, user="alice", deps=(1, 2))
    out = run([c], dep_states={1: "Finished", 2: "Running"},
              executor_ids={1: "128", 2: "129"})
    assert out.submits == [(5, {"conds": [["afterok", "129"]], "any": False})]


def test_any_mode_failed_parent_left_out_the_open_one_mapped():
    c = Candidate(id=5, user="alice", deps=(1, 2), dep_mode_any=True)
    out = run([c], dep_states={1: "Failed", 2: "Running"},
              executor_ids={1: "128", 2: "129"})
    assert out.submits == [(5, {"conds": [["afterok", "129"]], "any": True})]
    assert out.cancels == []


# --- dependencies on jobs not in Slurm yet ----------------------------------------------

def test_dependent_waits_for_a_parent_not_handed_over_yet():
    out = run([Candidate(id=2, user="alice", deps=(1,))],
              dep_states={1: "Queued"}, executor_ids={})
    assert out.submits == []
    assert out.waiting == {2: ("WaitingForDependency", "waiting for job 1")}


def test_dependent_waits_for_the_first_parent_not_handed_over():
    c = Candidate(id=5, user="alice", deps=(1, 2, 3))
    out = run([c], dep_states={1: "Running", 2: "Queued", 3: "Queued"},
              executor_ids={1: "128"})
    assert out.waiting == {5: ("WaitingForDependency", "waiting for job 2")}
    assert out.submits == []


def test_parent_and_dependent_in_the_same_pass():
    # the parent is handed over now; its dependent follows once Slurm's id is known
    out = run([Candidate(id=1, user="alice"), Candidate(id=2, user="alice", deps=(1,))],
              dep_states={1: "Queued"})
    assert out.submits == [(1, NO_DEPS)]
    assert out.waiting == {2: ("WaitingForDependency", "waiting for job 1")}


def test_any_mode_waits_while_an_open_parent_is_not_in_slurm():
    c = Candidate(id=5, user="alice", deps=(1, 2), dep_mode_any=True)
    out = run([c], dep_states={1: "Queued", 2: "Running"}, executor_ids={2: "129"})
    assert out.waiting == {5: ("WaitingForDependency", "waiting for job 1")}


# --- parents already decided ------------------------------------------------------------

def test_finished_parent_submits_with_no_conditions():
    out = run([Candidate(id=2, user="alice", deps=(1,))],
              dep_states={1: "Finished"}, executor_ids={1: "123"})
    assert out.submits == [(2, {"conds": [], "any": False})]


def test_finished_parent_never_handed_over_still_submits():
    out = run([Candidate(id=2, user="alice", deps=(1,))], dep_states={1: "Finished"})
    assert out.submits == [(2, NO_DEPS)]


def test_failed_parent_with_auto_cancel_cancels():
    out = run([Candidate(id=2, user="alice", deps=(1,), auto_cancel=True)],
              dep_states={1: "Failed"}, executor_ids={1: "123"})
    assert out.cancels == [(2, 1)]
    assert out.submits == []
    assert out.waiting == {}


def test_timeout_and_cancelled_parents_cancel_too():
    cands = [Candidate(id=3, user="a", deps=(1,)), Candidate(id=4, user="a", deps=(2,))]
    out = run(cands, dep_states={1: "Timeout", 2: "Cancelled"})
    assert out.cancels == [(3, 1), (4, 2)]


def test_failed_parent_without_auto_cancel_waits_saying_never():
    out = run([Candidate(id=2, user="alice", deps=(1,), auto_cancel=False)],
              dep_states={1: "Failed"})
    assert out.cancels == []
    assert out.submits == []
    assert out.waiting == {2: ("WaitingForDependency",
                               "dependency can never be met: job 1 did not finish")}


def test_afterany_on_a_failed_parent_submits():
    out = run([Candidate(id=2, user="alice", deps=(1,), dep_conditions=("afterany",))],
              dep_states={1: "Failed"}, executor_ids={1: "123"})
    assert out.submits == [(2, {"conds": [], "any": False})]
    assert out.cancels == []


def test_afternotok_on_a_failed_parent_submits():
    out = run([Candidate(id=2, user="alice", deps=(1,), dep_conditions=("afternotok",))],
              dep_states={1: "Failed"})
    assert out.submits == [(2, NO_DEPS)]


def test_afternotok_on_a_finished_parent_can_never_be_met():
    c = Candidate(id=2, user="alice", deps=(1,), dep_conditions=("afternotok",),
                  auto_cancel=False)
    out = run([c], dep_states={1: "Finished"})
    assert out.waiting == {2: (
        "WaitingForDependency",
        "dependency can never be met: job 1 finished (afternotok needs it to fail)")}
    c = Candidate(id=3, user="alice", deps=(1,), dep_conditions=("afternotok",))
    assert run([c], dep_states={1: "Finished"}).cancels == [(3, 1)]


def test_any_mode_with_every_parent_failed_cancels():
    c = Candidate(id=5, user="alice", deps=(1, 2), dep_mode_any=True)
    out = run([c], dep_states={1: "Failed", 2: "Cancelled"})
    assert out.cancels == [(5, 2)]


def test_any_mode_one_finished_parent_is_enough():
    c = Candidate(id=5, user="alice", deps=(1, 2), dep_mode_any=True)
    out = run([c], dep_states={1: "Queued", 2: "Finished"})
    assert out.submits == [(5, NO_DEPS)]


# --- begin times ------------------------------------------------------------------------

def test_begin_at_in_the_future_waits_with_begintime_and_wake_at():
    c = Candidate(id=3, user="alice", begin_at=5000.0, begin_text="14:00")
    out = run([c], now=1000.0)
    assert out.submits == []
    assert out.waiting == {3: ("BeginTime", "starts at 14:00")}
    assert out.wake_at == 5000.0


def test_wake_at_is_the_earliest_begin_time():
    cands = [Candidate(id=3, user="a", begin_at=5000.0, begin_text="14:00"),
             Candidate(id=4, user="a", begin_at=2000.0, begin_text="13:10"),
             Candidate(id=5, user="a", begin_at=9000.0, begin_text="15:00")]
    out = run(cands, now=1000.0)
    assert out.wake_at == 2000.0
    assert out.waiting == {3: ("BeginTime", "starts at 14:00"),
                           4: ("BeginTime", "starts at 13:10"),
                           5: ("BeginTime", "starts at 15:00")}


def test_begin_at_reached_submits():
    cands = [Candidate(id=3, user="a", begin_at=1000.0, begin_text="12:00"),
             Candidate(id=4, user="a", begin_at=500.0, begin_text="11:50")]
    out = run(cands, now=1000.0)
    assert out.submits == [(3, NO_DEPS), (4, NO_DEPS)]
    assert out.wake_at is None


def test_failed_dependency_decides_before_the_begin_time():
    c = Candidate(id=3, user="a", deps=(1,), begin_at=5000.0, begin_text="14:00")
    out = run([c], dep_states={1: "Failed"}, now=1000.0)
    assert out.cancels == [(3, 1)]
    assert out.waiting == {}
    assert out.wake_at is None


def test_begin_time_then_dependency():
    c = Candidate(id=3, user="a", deps=(1,), begin_at=5000.0, begin_text="14:00")
    out = run([c], dep_states={1: "Queued"}, now=1000.0)
    assert out.waiting == {3: ("BeginTime", "starts at 14:00")}
    out = run([c], dep_states={1: "Queued"}, now=6000.0)
    assert out.waiting == {3: ("WaitingForDependency", "waiting for job 1")}


# --- quotas -----------------------------------------------------------------------------

def alice_jobs(n):
    return QuotaConfig(users={"alice": QuotaLimits(max_running_jobs=n)})


def test_quota_blocks_once_occupants_reach_it():
    occupants = [handover.occupant(10, "alice", None, 1)]
    cands = [Candidate(id=1, user="alice"), Candidate(id=2, user="alice"),
             Candidate(id=3, user="alice"), Candidate(id=4, user="bob")]
    out = run(cands, occupants=occupants, quotas=alice_jobs(2))
    assert out.submits == [(1, NO_DEPS), (4, NO_DEPS)]
    assert out.waiting == {2: ("Quota", "alice runs 2 of 2 jobs allowed"),
                           3: ("Quota", "alice runs 2 of 2 jobs allowed")}


def test_quota_already_full_blocks_everything_of_that_user():
    occupants = [handover.occupant(10, "alice", None, 0),
                 handover.occupant(11, "alice", None, 0)]
    out = run([Candidate(id=1, user="alice")], occupants=occupants, quotas=alice_jobs(2))
    assert out.submits == []
    assert out.waiting == {1: ("Quota", "alice runs 2 of 2 jobs allowed")}


def test_quota_singular_wording_and_priority_order():
    cands = [Candidate(id=1, user="alice"), Candidate(id=2, user="alice", priority=50)]
    out = run(cands, quotas=alice_jobs(1))
    assert out.submits == [(2, NO_DEPS)]
    assert out.waiting == {1: ("Quota", "alice runs 1 of 1 job allowed")}


def test_quota_other_users_occupants_do_not_count():
    occupants = [handover.occupant(10, "bob", None, 1), handover.occupant(11, "bob", None, 1)]
    out = run([Candidate(id=1, user="alice")], occupants=occupants, quotas=alice_jobs(1))
    assert out.submits == [(1, NO_DEPS)]


def test_default_user_quota_applies_to_everyone():
    quotas = QuotaConfig(default_user=QuotaLimits(max_running_jobs=1))
    cands = [Candidate(id=1, user="alice"), Candidate(id=2, user="alice"),
             Candidate(id=3, user="bob"), Candidate(id=4, user="bob")]
    out = run(cands, quotas=quotas)
    assert out.submits == [(1, NO_DEPS), (3, NO_DEPS)]
    assert out.waiting == {2: ("Quota", "alice runs 1 of 1 job allowed"),
                           4: ("Quota", "bob runs 1 of 1 job allowed")}


def test_gpu_quota():
    quotas = QuotaConfig(users={"alice": QuotaLimits(max_running_gpus=2)})
    occupants = [handover.occupant(10, "alice", None, 1)]
    cands = [Candidate(id=1, user="alice", gpus=2), Candidate(id=2, user="alice", gpus=3),
             Candidate(id=3, user="alice", gpus=1), Candidate(id=4, user="alice", gpus=0)]
    out = run(cands, occupants=occupants, quotas=quotas)
    assert out.submits == [(3, NO_DEPS), (4, NO_DEPS)]
    assert out.waiting == {
        1: ("Quota", "alice runs 1 of 2 GPUs allowed; this job needs 2"),
        2: ("Quota", "alice runs 1 of 2 GPUs allowed; this job needs 3, more than the "
                     "quota ever allows")}


def test_project_quota():
    quotas = QuotaConfig(projects={"vision": QuotaLimits(max_running_jobs=1)})
    occupants = [handover.occupant(10, "bob", "vision", 2)]
    cands = [Candidate(id=1, user="alice", project="vision"),
             Candidate(id=2, user="alice", project="nlp"),
             Candidate(id=3, user="alice")]
    out = run(cands, occupants=occupants, quotas=quotas)
    assert out.submits == [(2, NO_DEPS), (3, NO_DEPS)]
    assert out.waiting == {1: ("Quota", "project vision runs 1 of 1 job allowed")}


def test_jobs_waiting_for_other_reasons_take_no_quota():
    cands = [Candidate(id=1, user="alice", deps=(9,)),
             Candidate(id=2, user="alice", begin_at=5000.0, begin_text="14:00"),
             Candidate(id=3, user="alice")]
    out = run(cands, dep_states={9: "Queued"}, now=1000.0, quotas=alice_jobs(1))
    assert out.submits == [(3, NO_DEPS)]
    assert out.waiting == {1: ("WaitingForDependency", "waiting for job 9"),
                           2: ("BeginTime", "starts at 14:00")}


def test_mapped_dependent_counts_against_the_quota():
    cands = [Candidate(id=2, user="alice", deps=(1,)), Candidate(id=3, user="alice")]
    out = run(cands, dep_states={1: "Running"}, executor_ids={1: "123"},
              quotas=alice_jobs(1))
    assert out.submits == [(2, {"conds": [["afterok", "123"]], "any": False})]
    assert out.waiting == {3: ("Quota", "alice runs 1 of 1 job allowed")}


def test_no_or_empty_quota_config_blocks_nothing():
    occupants = [handover.occupant(i, "alice", None, 1) for i in range(10, 20)]
    cands = [Candidate(id=1, user="alice"), Candidate(id=2, user="alice")]
    assert len(run(cands, occupants=occupants, quotas=None).submits) == 2
    assert len(run(cands, occupants=occupants, quotas=QuotaConfig()).submits) == 2


def test_occupant():
    assert handover.occupant(5, "alice", "vision", 2) == Occupant(
        id=5, user="alice", gpu_ids=(0, 1), project="vision")
    assert handover.occupant(6, "bob", None, 0) == Occupant(
        id=6, user="bob", gpu_ids=(), project=None)
