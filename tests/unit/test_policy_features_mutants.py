"""Issue 17's policy rules (rule 7 and 8 of `policy.py`, and `--gpu-memory`), driven through
`plan` for the mutants `test_features_policy.py` and the other selected tests let through.

See docs/testing.md, "Mutation testing of the core". Each test names the mutations it kills:
`never_reason_1` is mutmut's `gflow.scheduler.policy.x_never_reason__mutmut_1`, `plan_79` is
`x_plan__mutmut_79`, `blocked_11` is `xǁ_Quotasǁblocked__mutmut_11`, numbered as at 17f0e06.
Every expected value is written out by hand from the rules: a job waits for an
`afternotok` parent to fail; a job asking `--gpu-memory` goes only where that much is free
now; with `shares`, lower recent use goes first among equal priorities, then the time-limit
bonus (none: 100; 1 h: 200 + floor((1 - 1/24) * 100) = 295), then the id; a quota counts
the user's running jobs and GPUs, and the jobs started earlier in the same pass.
"""

from __future__ import annotations

from gflow.config_quota import QuotaConfig, QuotaLimits
from gflow.scheduler.policy import Candidate, Gpu, Occupant, PolicyInput, never_reason, plan


def gpus(n):
    return [Gpu(index=i, memory_mb=24576) for i in range(n)]


def run(cands, occupants=(), n_gpus=2, gpu_list=None, dep_states=None, **kw):
    return plan(PolicyInput(candidates=list(cands), occupants=list(occupants),
                            dep_states=dep_states or {},
                            gpus=gpus(n_gpus) if gpu_list is None else gpu_list, **kw))


# --- dependency conditions: the "never" text --------------------------------------------------

def test_never_met_names_the_afternotok_parent_that_finished():
    """Kills never_reason_1 (`.get(None)`: "did not finish"), never_reason_5
    (`dict(zip(conditions))`: ValueError), never_reason_8 and _9 (the condition's name
    changed, so an afternotok parent reads "did not finish")."""
    c = Candidate(id=3, user="a", deps=(1, 2), dep_conditions=("afterok", "afternotok"),
                  auto_cancel=False)
    d = run([c], dep_states={1: "Running", 2: "Finished"})
    assert d.waiting == {3: ("WaitingForDependency",
                             "dependency can never be met: "
                             "job 2 finished (afternotok needs it to fail)")}
    assert d.starts == [] and d.cancels == []
    assert never_reason(c, 2) == "job 2 finished (afternotok needs it to fail)"
    # The afterok parent that failed is told the other way.
    d = run([c], dep_states={1: "Failed", 2: "Failed"})
    assert d.waiting == {3: ("WaitingForDependency",
                             "dependency can never be met: job 1 did not finish")}


# --- --gpu-memory: only where that much is free now --------------------------------------------

def test_gpu_memory_skips_a_full_gpu_and_takes_the_next():
    """Kills plan_79 (`memfit.fits(c, None)`: every GPU fits, so it starts on full GPU 0)
    and plan_82 (`break` at the first GPU too full: no GPU left, so it waits)."""
    full_then_roomy = [Gpu(index=0, memory_mb=81920, free_mb=1024),
                       Gpu(index=1, memory_mb=81920, free_mb=40960)]
    c = Candidate(id=1, user="a", gpus=1, gpu_memory_mb=20480)
    d = run([c], gpu_list=full_then_roomy)
    assert d.starts == [(1, [1])] and d.waiting == {}
    # Only the full one: it waits, and says how full it is.
    d = run([c], gpu_list=full_then_roomy[:1])
    assert d.starts == []
    assert d.waiting == {1: ("WaitingForResources",
                             "waiting: 1 GPUs, 0 free; GPU 0 has 1.0G free, 20G requested")}


# --- fair-share (rule 8) ---------------------------------------------------------------------

def test_fair_share_a_user_without_recent_use_counts_as_zero():
    """Kills plan_118 and plan_120 (an unknown user's share None: TypeError against 0.5)
    and plan_121 (an unknown user's share 1.0: after alice's 0.5)."""
    cands = [Candidate(id=1, user="alice", gpus=1), Candidate(id=2, user="bob", gpus=1)]
    d = run(cands, n_gpus=1, shares={"alice": 0.5})
    assert d.starts == [(2, [0])]
    assert d.waiting == {1: ("WaitingForResources", "waiting: 1 GPUs, 0 free")}
    # Without shares, the id decides.
    assert run(cands, n_gpus=1).starts == [(1, [0])]


def test_fair_share_equal_use_falls_back_to_the_time_limit_bonus():
    """Kills plan_122 (`+time_bonus`: the job without a limit, 100 < 295, first) and
    plan_123 (`time_bonus(None)`: both 100, so the lower id first)."""
    cands = [Candidate(id=1, user="alice", gpus=1),
             Candidate(id=2, user="alice", gpus=1, time_limit=3600.0)]
    d = run(cands, n_gpus=1, shares={"alice": 3.0})
    assert d.starts == [(2, [0])]
    assert list(d.waiting) == [1]


# --- quotas (rule 7) --------------------------------------------------------------------------

def test_job_quota_of_one_for_a_user_with_nothing_running():
    """Kills blocked_11 and blocked_13 (no running job counted as None: TypeError),
    blocked_14 (as 1: the first job is refused too), blocked_24 and blocked_26 ("1 job",
    singular, spoiled)."""
    quotas = QuotaConfig(default_user=QuotaLimits(max_running_jobs=1))
    cands = [Candidate(id=1, user="a", gpus=1), Candidate(id=2, user="a", gpus=1)]
    d = run(cands, n_gpus=2, quotas=quotas)
    assert d.starts == [(1, [0])]
    assert d.waiting == {2: ("Quota", "a runs 1 of 1 job allowed")}


def test_gpu_quota_says_what_this_job_needs_when_it_could_fit_later():
    """Kills blocked_39 (`c.gpus >= most`: 2 of 2 called "more than the quota ever
    allows"), blocked_43 (`text =`: the "a runs 1 of 2" part lost) and blocked_44
    (`text -=`: TypeError)."""
    quotas = QuotaConfig(users={"a": QuotaLimits(max_running_gpus=2)})
    running = [Occupant(id=9, user="a", gpu_ids=(0,))]
    d = run([Candidate(id=2, user="a", gpus=2)], running, n_gpus=4, quotas=quotas)
    assert d.starts == []
    assert d.waiting == {2: ("Quota", "a runs 1 of 2 GPUs allowed; this job needs 2")}
    # More than the quota ever allows is said so.
    d = run([Candidate(id=3, user="a", gpus=3)], running, n_gpus=4, quotas=quotas)
    assert d.waiting == {3: ("Quota", "a runs 1 of 2 GPUs allowed; "
                                      "this job needs 3, more than the quota ever allows")}
