"""Issue 17's scheduler additions in one mixin: begin times, retries, quotas, suspend, fair-share and Slurm-style dependencies.

SchedulerCore calls these hooks from its pass (`candidate_extras`, `effective_quotas`,
`after_pass`), its exits (`retry_failed`), its stops (`wake_if_suspended`) and its
loading and snapshots (`load_extras`, `store_extras`); the rules themselves are pure
and live in policy.py.
"""

from __future__ import annotations

from typing import Optional

from gflow.models import EMPTY_LIST, Job, JobState, own_dict
from gflow.scheduler.reply import error
from gflow.scheduler.begin import BeginOps
from gflow.scheduler.fairshare import FairShareOps
from gflow.scheduler.quota import QuotaOps
from gflow.scheduler.retries import RetryOps
from gflow.scheduler.suspend import SuspendOps

# The one edge outside 0.4.13's table: a failed attempt back to the queue (retries.py).
RETRY_EDGE = (JobState.RUNNING, JobState.QUEUED)
# Requests that change state (refused in read-only mode, journalled).
MUTATING = ("quota_set", "quota_remove", "suspend", "resume")
# Waiting codes of the pass that gqueue shows in NODELIST(REASON) (the wire `reason`
# stays one of 0.4.13's variants; these travel in the extra key `pending_reason`).
SHOWN_REASONS = ("BeginTime", "Quota")


class FeatureOps(BeginOps, RetryOps, QuotaOps, SuspendOps, FairShareOps):
    """Mixed into SchedulerCore (needs its jobs, clock, config, store and transition)."""

    def candidate_extras(self, job: Job) -> dict:
        """The policy.Candidate fields these features add."""
        conds = job.dependency_conditions
        return {
            "dep_conditions": (tuple(conds.get(str(d), "afterok")
                                     for d in job.all_dependencies()) if conds else ()),
            "begin_at": job.scheduled_at,
            "begin_text": self.format_clock(job.scheduled_at) if job.scheduled_at else "",
            "project": job.project,
        }

    def normalize_new(self, job: Job) -> None:
        """A job being admitted (submit, batch, redo): nothing of an earlier life, and
        conditions only for the dependencies it has (afterok, the default, is implied)."""
        job.attempts = EMPTY_LIST
        job.suspended_at = None
        job.pending_reason = None
        job.executor_id = None          # set only by the executor's report (ops_executor)
        deps = {str(d) for d in job.all_dependencies()}
        job.dependency_conditions = own_dict((k, v) for k, v in job.dependency_conditions.items()
                                             if k in deps and v != "afterok")

    def after_pass(self, decision, full: bool) -> None:
        """Remember when the first begin time is due (the worker arms a wake-up for it);
        a job the pass starts waits for nothing any more."""
        wake = decision.wake_at
        if not full and self.wake_at is not None and (wake is None or self.wake_at < wake):
            wake = self.wake_at          # an incremental pass saw only the new jobs
        self.wake_at = wake
        for job_id, _gpus in decision.starts:
            self._set_pending_reason(self.jobs[job_id], None)

    def note_waiting(self, job: Job, code: str) -> None:
        """A queued job the pass leaves waiting: whether for a reason gqueue names
        (BeginTime, Quota)."""
        self._set_pending_reason(job, code if code in SHOWN_REASONS else None)

    def _set_pending_reason(self, job: Job, reason: Optional[str]) -> None:
        if job.pending_reason != reason:
            job.pending_reason = reason              # ephemeral, like reason_detail
            self.changed(job.id)

    def check_admission(self, jobs: list):
        """A refusal for jobs that may not be admitted: e-mail asked of a daemon that
        sends none, or a queue quota (quota.py); None to admit them."""
        notes = self.config.notifications
        if any(j.notify for j in jobs) and not (notes.enabled and notes.email is not None):
            return error(400, "this gflowd sends no e-mail ([notifications] enabled and "
                              "[notifications.email] are not configured): submit without "
                              "--notify-email")
        return self.executor_refusal(jobs) or self.check_queue_quota(jobs)

    def job_mail(self, payload: dict) -> Optional[dict]:
        """The `gbatch --notify-email` of the job an event is about (notify_email.py)."""
        job = payload.get("job")
        found = self.jobs.get(job.get("id")) if isinstance(job, dict) else None
        return found.notify if found is not None else None

    # --- persistence of what is not a job -----------------------------------------------

    def load_extras(self, extras: dict) -> None:
        self.load_quota_overrides(extras.get("quotas"))
        self.load_fair_share(extras.get("fair_share"))

    def store_extras(self) -> dict:
        out = {}
        if not self.quota_overrides.empty:
            out["quotas"] = self.quota_overrides.to_wire()
        if self.fair_usage:
            out["fair_share"] = self.fair_share_wire()
        return out
