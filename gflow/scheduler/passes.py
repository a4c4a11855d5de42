"""The scheduling pass of SchedulerCore, run a slice per loop step when the queue is big.

A pass over more than PASS_SLICE queued jobs gathers its candidates, runs the policy
(`policy.plan_steps`) and applies its decision a slice per `run_pass` call;
`next_deadline()` keeps the loop from sleeping meanwhile. Requests handled between the
slices may change jobs, so the decision is applied optimistically: only to jobs still
queued with the very candidate the policy saw (any change drops the cached candidate),
only if the GPUs allowed, foreign processes, reservations and quotas it saw still hold,
and anything it could not apply asks for another pass. GPUs only become freer meanwhile:
nothing but a pass starts jobs, and one pass runs at a time.
"""

from __future__ import annotations

import time
from typing import Optional

from gflow.models import Job, JobState, shared_str
from gflow.scheduler import policy


class PassOps:
    """Mixed into SchedulerCore (needs its jobs, indexes, clock, config and transition)."""

    last_pass_secs: Optional[float] = None
    last_full_pass_secs = 0.0           # re-planning every queued job (service.py's tick)
    # A full pass first builds the candidate of every queued job that has none (after a
    # load, all: 0.3 s at 100k jobs), PREPARE_SLICE per run_pass call (a loop step), so
    # that requests are answered in between; next_deadline() keeps the loop from sleeping.
    PREPARE_SLICE = 500
    _unprepared: Optional[list] = None
    # Then a pass over more queued jobs than this takes this many per run_pass call in
    # each of its phases (a full pass over 100k jobs held the loop 0.1-1 s in one go).
    PASS_SLICE = 500
    _steps = None                       # the pass under way (a generator), if any
    _steps_secs = 0.0                   # what its steps took so far
    _pass_full = False                  # whether it re-plans every queued job

    # --- its inputs ------------------------------------------------------------------

    def _candidate(self, job: Job) -> policy.Candidate:
        cand = self._cand_cache.get(job.id)
        if cand is None:
            cand = self._cand_cache[job.id] = self._make_candidate(job)
        return cand

    def _make_candidate(self, job: Job) -> policy.Candidate:
        return policy.Candidate(
            id=job.id, user=job.submitted_by, priority=job.priority, gpus=job.gpus,
            shared=job.is_shared, gpu_memory_mb=job.gpu_memory_limit_mb,
            memory_mb=job.memory_limit_mb, time_limit=job.time_limit,
            deps=tuple(job.all_dependencies()), dep_mode_any=job.dependency_mode == "Any",
            auto_cancel=job.auto_cancel_on_dependency_failure, group_id=job.group_id,
            max_concurrent=job.max_concurrent, **self.candidate_extras(job),
            queued_since=self.queued_since.get(job.id, job.submitted_at or 0.0))

    def _dep_states(self, cands) -> dict:
        out = {}
        for c in cands:
            for d in c.deps:
                dep = self.jobs.get(d)
                out[d] = dep.state.value if dep else "Cancelled"
        return out

    def occupants(self) -> list:
        out = []
        for jid in self.running | self.draining:
            job = self.jobs[jid]
            out.append(policy.Occupant(
                id=job.id, user=job.submitted_by, gpu_ids=tuple(job.gpu_ids or ()),
                shared=job.is_shared, gpu_memory_mb=job.gpu_memory_limit_mb,
                memory_mb=job.memory_limit_mb, group_id=job.group_id, project=job.project,
                # Where a reservation lies ahead, a GPU is free again when its job's
                # limit ends; a stopped job's process is gone soon, but when is unknown.
                ends_at=(job.started_at + job.time_limit if job.state == JobState.RUNNING
                         and job.time_limit is not None and job.started_at is not None
                         else None)))
        return out

    def _fixed_inputs(self) -> tuple:
        """What a pass relies on beyond its candidates and what only frees up meanwhile."""
        return (self.allowed_gpu_indices, [(g.index, g.foreign) for g in self.gpu_view],
                self.policy_reservations(), self.effective_quotas())

    # --- its steps ---------------------------------------------------------------------

    @property
    def pass_wanted(self) -> bool:
        return self.pass_needed or bool(self.new_since_pass) or self._steps is not None

    @property
    def pass_under_way(self) -> bool:
        """Whether a big pass has begun (its candidates built or it run) in slices."""
        return self._steps is not None or self._unprepared is not None

    def run_pass(self) -> policy.Decision:
        """One step of the pass (all of it when the queue is small): its Decision when
        this call finished it, an empty one while it is under way."""
        if self._steps is None:
            if self._prepare_pass():
                return policy.Decision()        # the pass itself at a later call
            self._pass_full = self.pass_needed or self.protecting
            self._steps, self._steps_secs = self._pass_steps(self._pass_full), 0.0
        started = time.perf_counter()
        try:
            next(self._steps)
            return policy.Decision()
        except StopIteration as done:
            self._steps = None
            self.last_pass_secs = self._steps_secs + time.perf_counter() - started
            if self._pass_full:
                self.last_full_pass_secs = self.last_pass_secs
            return done.value
        except BaseException:
            self._steps = None                  # a broken pass is not resumed
            raise
        finally:
            self._steps_secs += time.perf_counter() - started

    def _prepare_pass(self) -> bool:
        """True when this call built a slice of candidates instead of running the pass."""
        todo = self._unprepared
        if todo is None:
            if (self.external or not (self.pass_needed or self.protecting)
                    or len(self.queued) - len(self._cand_cache) <= self.PREPARE_SLICE):
                return False
            todo = self._unprepared = [i for i in self.queued if i not in self._cand_cache]
        elif not todo:                          # the last slice was built by the last call
            self._unprepared = None
            return False
        for jid in (j for j in todo[-self.PREPARE_SLICE:] if j in self.queued):
            self._candidate(self.jobs[jid])
        del todo[-self.PREPARE_SLICE:]
        return True

    def _pass_steps(self, full: bool):
        """Generator: the pass, yielding between slices when the pool is big; returns
        its Decision as applied: the starts and cancels made (the waiting reasons it
        gave are on the jobs, not in it)."""
        if self.external:
            return self.handover_pass()         # Slurm places the jobs (ops_executor.py)
        self.update_reservations()
        # In id order (a set of ints is nearly so: cheap to sort), which spares the
        # policy sorting its candidates (policy._ordered).
        pool = sorted(self.queued if full else (self.new_since_pass & self.queued))
        self.pass_needed = False
        self.new_since_pass = set()
        every = self.PASS_SLICE if len(pool) > self.PASS_SLICE else None
        size = every or max(len(pool), 1)
        seen: dict = {}                         # id -> the candidate the policy sees
        dep_states: dict = {}
        for i in range(0, len(pool), size):
            if i:
                yield
            chunk = [self._candidate(self.jobs[j]) for j in pool[i:i + size]
                     if j in self.queued]       # it may have left the queue meanwhile
            dep_states.update(self._dep_states(chunk))
            seen.update({c.id: c for c in chunk})
        allowed = (None if self.allowed_gpu_indices is None
                   else frozenset(self.allowed_gpu_indices))
        shuffle = (self.rng.shuffle if self.config.daemon.gpu_allocation_strategy == "random"
                   else None)
        inp = policy.PolicyInput(
            candidates=list(seen.values()), occupants=self.occupants(),
            dep_states=dep_states, gpus=self.gpu_view, allowed=allowed,
            total_memory_mb=self.total_memory_mb,
            reservations=self.policy_reservations(), now=self.clock(),
            starvation_secs=self.config.scheduler.starvation_secs, shuffle=shuffle,
            quotas=self.effective_quotas(), shares=self.fair_shares())
        fixed = self._fixed_inputs() if every is not None else None
        decision = yield from policy.plan_steps(inp, every)
        if every is not None:
            yield
        moved = fixed is not None and fixed != self._fixed_inputs()
        yield from self._apply(decision, full, seen, moved)
        return decision

    def _apply(self, decision: policy.Decision, full: bool, seen: dict, moved: bool):
        """Generator: the decision applied to the jobs it is still right for (`seen`: id ->
        the candidate the policy saw; `moved`: what it relied on changed meanwhile), its
        starts and cancels at once, its waiting reasons PASS_SLICE at a time (taken out
        of `decision.waiting`)."""
        def live(jid: int) -> bool:
            # Every change to a job (its state included: `transition` saves it) drops
            # its cached candidate, so this one still cached means nothing changed.
            return self._cand_cache.get(jid) is seen[jid]

        starts = [] if moved else [s for s in decision.starts if live(s[0])]
        cancels = [c for c in decision.cancels if live(c[0])]
        if len(starts) < len(decision.starts) or len(cancels) < len(decision.cancels):
            self.pass_needed = True             # decided again on what holds now
        decision.starts, decision.cancels = starts, cancels
        self.after_pass(decision, full)         # begin-time wake-up, no waiting reason
        if full:
            self.protecting = decision.protecting
        self.cancel_for_dependencies(cancels)
        for job_id, gpu_ids in starts:
            job = self.jobs[job_id]
            job.gpu_ids = list(gpu_ids)
            self.transition(job, JobState.RUNNING)
            self.launcher_outbox.append(("start", self.launch_spec(job)))
        # Taken out as they are applied: freeing 100k of them at once took 20-40 ms.
        waiting, first = decision.waiting, True
        while waiting:
            if not first:
                yield
            first = False
            for _ in range(min(self.PASS_SLICE, len(waiting))):
                job_id, (code, detail) = waiting.popitem()
                if not live(job_id):
                    continue                    # changed meanwhile: the next pass says
                job = self.jobs[job_id]
                self.note_waiting(job, code)    # features.py: BeginTime, Quota
                if job.reason_detail != detail:      # ephemeral: recomputed every pass
                    job.reason_detail = shared_str(detail)      # one copy for many jobs
                    self.relabelled(job_id)

    def cancel_for_dependencies(self, cancels: list) -> None:
        """The pass's (job id, failed parent) pairs: queued jobs whose dependency can
        never be met, cancelled with the parent named, and their dependents after them."""
        for job_id, parent in cancels:
            job = self.jobs[job_id]
            if job.state == JobState.QUEUED:
                self.transition(job, JobState.CANCELLED, reason={"DependencyFailed": parent},
                                detail="dependency " + policy.never_reason(
                                    self._candidate(job), parent))
                self.cascade_from(job)
