"""The scheduler's side of an external executor (`[executor] kind = "slurm"`): the hand-over pass, and what the executor reports back (handed over, started, ended, waiting, refused, its health)."""

from __future__ import annotations

from typing import Optional

from gflow.models import FINAL_STATES, Job, JobState
from gflow.scheduler import handover, policy
from gflow.scheduler.reply import error


class ExecutorOps:
    """Mixed into SchedulerCore. In local mode none of this runs: the pass starts jobs
    on GPUs it chose. In Slurm mode the pass hands jobs over once gflow's own gates
    pass, and the job becomes Running when Slurm says it runs."""

    executor_health: Optional[dict] = None       # the executor's last health report

    @property
    def external(self) -> bool:
        return self.config.executor.kind != "local"

    # --- admission -------------------------------------------------------------------

    def executor_refusal(self, jobs: list):
        """What an external executor cannot run: gflow's GPU sharing by memory."""
        if not self.external:
            return None
        if any(j.is_shared or j.gpu_memory_limit_mb for j in jobs):
            return error(400, "GPU sharing (--shared, --gpu-memory) does not exist with the "
                              "Slurm executor: Slurm gives each job whole GPUs")
        return None

    # --- the hand-over pass ----------------------------------------------------------

    def handover_pass(self) -> policy.Decision:
        handing, refused = self._handing, self._refused
        self.update_reservations()
        self.pass_needed = False
        self.new_since_pass = set()
        cands = []
        for jid in sorted(self.queued):
            job = self.jobs[jid]
            if job.executor_id is not None or jid in handing:
                continue
            if jid in refused:
                if refused[jid][0] == _asked(job):
                    continue
                del refused[jid]                       # changed since (gjob update)
            cands.append(self._candidate(job))
        dep_states = self._dep_states(cands)
        executor_ids = {d: self.jobs[d].executor_id for c in cands for d in c.deps
                        if d in self.jobs and self.jobs[d].executor_id}
        quotas = self.effective_quotas()
        # What runs or waits in Slurm counts only against quotas: not looked at without.
        occupants = ([] if quotas is None or quotas.empty else
                     [handover.occupant(j.id, j.submitted_by, j.project, j.gpus)
                      for j in self.jobs_in_executor()])
        plan = handover.plan(handover.HandoverInput(
            candidates=cands, dep_states=dep_states, executor_ids=executor_ids,
            occupants=occupants, now=self.clock(), quotas=quotas))
        self.wake_at = plan.wake_at
        decision = policy.Decision(cancels=plan.cancels, waiting=plan.waiting,
                                   wake_at=plan.wake_at)
        for job_id, (code, detail) in plan.waiting.items():
            job = self.jobs[job_id]
            self._set_pending_reason(job, code if code in ("BeginTime", "Quota") else None)
            self._set_detail(job, detail)
        self.cancel_for_dependencies(plan.cancels)             # core.py
        specs = []
        for job_id, deps in plan.submits:
            job = self.jobs[job_id]
            spec = dict(self.launch_spec(job), gpus=job.gpus, time_limit=job.time_limit,
                        slurm_deps=deps, group_id=job.group_id,
                        max_concurrent=job.max_concurrent, gpu_ids=[])
            handing[job_id] = spec
            specs.append(spec)
            self._set_pending_reason(job, None)
            self._set_detail(job, self._handing_detail())
        if specs:
            self.launcher_outbox.append(("submit", specs))
        return decision

    def jobs_in_executor(self) -> list:
        handing = self._handing
        live = (self.jobs[i] for i in sorted(self.running | self.queued | self.held))
        return [j for j in live if j.state == JobState.RUNNING
                or j.executor_id is not None or j.id in handing]

    def _set_detail(self, job: Job, detail: Optional[str]) -> None:
        if job.reason_detail != detail:
            job.reason_detail = detail                 # ephemeral: not journalled
            self.changed(job.id)

    # --- what the executor reports ---------------------------------------------------

    def on_submitted(self, job_id: int, key: str) -> None:
        handing = self._handing
        handing.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is None or job.state in FINAL_STATES:
            self.launcher_outbox.append(("cancel", job_id))    # cancelled meanwhile
            return
        if job.executor_id == key:
            return
        job.executor_id = key
        job.reason_detail = f"Slurm job {key}"
        self._asked_at_handover[job_id] = _asked(job)
        self.save_job(job)                              # durable: a restart re-attaches
        self.pass_needed = True                         # its dependents can follow it now
        if job.state == JobState.HOLD:
            self.launcher_outbox.append(("hold", job_id))

    def on_started(self, job_id: int, info: dict) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state not in (JobState.QUEUED, JobState.HOLD):
            return
        if job.executor_id is None and isinstance(info.get("key"), str):
            job.executor_id = info["key"]
            self._handing.pop(job_id, None)
        if job.state == JobState.HOLD:
            # Slurm started it before the hold reached it: it runs.
            self.transition(job, JobState.QUEUED)
        job.gpu_ids = [int(i) for i in info.get("gpu_ids") or () if isinstance(i, int)]
        started = info.get("started_at")
        now = self.clock()
        at = min(float(started), now) if isinstance(started, (int, float)) else now
        self.transition(job, JobState.RUNNING, at=at)
        job.reason_detail = None

    def on_refused(self, job_id: int, detail: str) -> None:
        handing, refused = self._handing, self._refused
        handing.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is None or job.state != JobState.QUEUED:
            return
        refused[job_id] = (_asked(job), detail)
        self._set_detail(job, "can never run as it is: " + detail)

    def _handing_detail(self) -> str:
        health = self.executor_health
        if health is None or health.get("ok") is not False:
            return "being handed to Slurm"
        return f"waiting: {health.get('detail') or 'Slurm does not answer'}"

    def on_executor_health(self, info: dict) -> None:
        self.executor_health = dict(info)
        for job in self.jobs_in_executor():
            if job.state == JobState.QUEUED and job.executor_id is None:
                self._set_detail(job, self._handing_detail())

    def on_executor_waiting(self, reasons: dict) -> None:
        for job_id, reason in reasons.items():
            job = self.jobs.get(job_id)
            if job is not None and job.state in (JobState.QUEUED, JobState.HOLD) \
                    and job.executor_id is not None:
                self._set_detail(job, f"Slurm job {job.executor_id}: {reason}")

    def executor_ended(self, job: Job, info: dict, end: float) -> bool:
        """An end the local launcher never reports: Slurm timed the job out or someone
        cancelled it in Slurm (scancel), perhaps before it ever ran. True if handled."""
        ended = info.get("state")
        detail = info.get("detail")
        key = info.get("key")
        if key is not None and key != job.executor_id:
            return True         # an earlier Slurm job of this gflow job (pulled back)
        if job.state in (JobState.QUEUED, JobState.HOLD):
            if ended is None:
                # It ran, and ended before gflow saw it run (a record only scontrol
                # still had): record the run, then its end as usual.
                if job.state == JobState.HOLD:
                    self.transition(job, JobState.QUEUED)
                self.transition(job, JobState.RUNNING, at=min(end, self.clock()))
                return False
            self.transition(job, JobState.CANCELLED, detail=detail or "ended in Slurm")
            self.cascade_from(job)
            return True
        if job.state == JobState.RUNNING and ended in ("Timeout", "Cancelled"):
            job.exit_code = info.get("exit_code")
            dst = JobState.TIMEOUT if ended == "Timeout" else JobState.CANCELLED
            self.transition(job, dst, detail=detail, at=end)
            self.cascade_from(job)
            return True
        return False

    # --- following gflow's own changes ---------------------------------------------------

    def follow_executor(self, job: Job, src: JobState, dst: JobState) -> None:
        """Carry a change of a handed-over job to the executor (called by `transition`
        before the job is journalled)."""
        if not self.external:
            return
        handing = self._handing
        in_executor = job.executor_id is not None or job.id in handing
        if src in (JobState.QUEUED, JobState.HOLD) and dst in FINAL_STATES and in_executor:
            handing.pop(job.id, None)
            self.launcher_outbox.append(("cancel", job.id))
        elif (src, dst) == (JobState.QUEUED, JobState.HOLD) and job.executor_id:
            self.launcher_outbox.append(("hold", job.id))
        elif (src, dst) == (JobState.HOLD, JobState.QUEUED) and job.executor_id:
            self.launcher_outbox.append(("release", job.id))
        elif (src, dst) == (JobState.RUNNING, JobState.QUEUED):
            job.executor_id = None                      # a retry is a new Slurm job
            self._pull_back_dependents(job)

    # --- taking a job back from the executor -------------------------------------------

    def pull_back_if_changed(self, job: Job) -> None:
        """After `gjob update`: a job waiting in Slurm whose command or resources changed
        is cancelled there and handed over again with what it asks now."""
        asked = self._asked_at_handover.get(job.id)
        if (self.external and job.executor_id is not None
                and job.state in (JobState.QUEUED, JobState.HOLD)
                and asked is not None and asked != _asked(job)):
            self._pull_back(job)

    def _pull_back(self, job: Job) -> None:
        self.launcher_outbox.append(("cancel", job.id))
        job.executor_id = None
        self._asked_at_handover.pop(job.id, None)
        self._refused.pop(job.id, None)
        self.save_job(job)
        self._pull_back_dependents(job)
        self.pass_needed = True

    def _pull_back_dependents(self, parent: Job) -> None:
        """Dependents waiting in Slurm on a Slurm job that will never succeed now (the
        parent is retried or handed over again under a new id): Slurm would cancel
        them (--kill-on-invalid-dep), so take them back; they follow the new id."""
        for child_id in sorted(self.dependents.get(parent.id, ())):
            child = self.jobs.get(child_id)
            if child is not None and child.executor_id is not None and \
                    child.state in (JobState.QUEUED, JobState.HOLD):
                self._pull_back(child)

    def drop_other_executors_jobs(self) -> None:
        """Running jobs the other kind of executor started (gflowd was switched between
        local and Slurm while they ran): this executor cannot follow them, so they end
        as Failed, saying where they may still run."""
        for jid in sorted(self.running):
            job = self.jobs[jid]
            if self.external and job.executor_id is None:
                detail = ("was running on this machine when gflowd switched to Slurm; "
                          "gflow no longer follows it (its processes may still run)")
            elif not self.external and job.executor_id is not None:
                detail = (f"was running in Slurm (job {job.executor_id}) when gflowd "
                          f"switched to the local executor; gflow no longer follows it "
                          f"(scancel {job.executor_id} if it still runs)")
            else:
                continue
            self.transition(job, JobState.FAILED, detail=detail)
            self.draining.discard(jid)          # no process of ours to wait for
            self.cascade_from(job)
        if not self.external:
            # Waiting in Slurm: started here too it would run twice.
            for jid in sorted(self.queued | self.held):
                job = self.jobs[jid]
                if job.executor_id is not None:
                    self.transition(job, JobState.CANCELLED, detail=(
                        f"was handed to Slurm (job {job.executor_id}) before gflowd "
                        f"switched to the local executor (scancel {job.executor_id}; "
                        "gjob redo to run it here)"))
                    self.cascade_from(job)

    def executor_adopt_specs(self) -> list:
        """On a (re)connected executor: every job it should know, with its Slurm id."""
        handing = self._handing
        specs = []
        for job in self.jobs_in_executor():
            spec = handing.get(job.id) or dict(self.launch_spec(job))
            specs.append(dict(spec, executor_id=job.executor_id))
        for jid in sorted(self.draining):
            specs.append(dict(self.launch_spec(self.jobs[jid]),
                              executor_id=self.jobs[jid].executor_id))
        return specs


def _asked(job: Job) -> tuple:
    """What a refusal was about: a `gjob update` of any of these asks again."""
    return (job.gpus, job.memory_limit_mb, job.time_limit, job.command, job.script)
