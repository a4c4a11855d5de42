"""Fair-share (`[daemon.fair_share]`): each user's GPU-seconds, decayed exponentially, order the queued jobs of equal priority."""

from __future__ import annotations

from typing import Optional

from gflow.models import Job
from gflow.scheduler.reply import Reply


class FairShareOps:
    """Mixed into SchedulerCore. Usage is counted whether or not fair-share orders jobs
    (as upstream), when a run ends (a retried attempt included): GPUs x runtime, added to
    the user's usage decayed to that moment. While a job runs, its GPU-seconds so far
    count too, so a long run lowers its owner's share at once. Persisted in the state."""

    fair_usage: dict = {}                  # user -> (GPU-seconds, as of)

    def load_fair_share(self, wire) -> None:
        usage = {}
        for user, item in (wire or {}).items() if isinstance(wire, dict) else ():
            if (isinstance(item, (list, tuple)) and len(item) == 2
                    and all(isinstance(x, (int, float)) for x in item)):
                usage[str(user)] = (float(item[0]), float(item[1]))
        self.fair_usage = usage

    @property
    def half_life(self) -> float:
        return self.config.daemon.fair_share.half_life_secs

    def decayed_usage(self, user: str, now: float) -> float:
        value, as_of = self.fair_usage.get(user, (0.0, now))
        return value * 2.0 ** (-max(now - as_of, 0.0) / self.half_life)

    def account_run(self, job: Job, end: float) -> None:
        """A run of `job` ended at `end` (transition calls it for every run that ends;
        retry_failed for an attempt that goes back to the queue)."""
        if job.started_at is None:
            return
        gpus = len(job.gpu_ids or ()) or job.gpus
        used = gpus * max(end - job.started_at, 0.0)
        if used <= 0:
            return
        user = job.submitted_by
        usage = dict(self.fair_usage)       # a copy: never the class-level default
        usage[user] = (self.decayed_usage(user, end) + used, end)
        self.fair_usage = usage
        self.save_meta(extras={"fair_share": self.fair_share_wire()})

    def fair_share_wire(self) -> dict:
        return {u: [v, t] for u, (v, t) in sorted(self.fair_usage.items())}

    def current_usage(self) -> dict:
        """user -> decayed GPU-seconds now, the running jobs' use so far included."""
        now = self.clock()
        out = {u: self.decayed_usage(u, now) for u in self.fair_usage}
        for jid in self.running:
            job = self.jobs[jid]
            if job.started_at is not None:
                gpus = len(job.gpu_ids or ()) or job.gpus
                out[job.submitted_by] = (out.get(job.submitted_by, 0.0)
                                         + gpus * max(now - job.started_at, 0.0))
        return out

    def fair_shares(self) -> Optional[dict]:
        """The pass's input: user -> usage, or None when fair-share does not order jobs."""
        return self.current_usage() if self.config.daemon.fair_share.enabled else None

    def op_fair_share(self, payload) -> Reply:
        """Each user's recent use and factor: 2^(-N * use / total use) over the N users with
        use (1 for no use; below 1, the more of the total a user had recently)."""
        usage = {u: v for u, v in self.current_usage().items() if v > 0}
        total, n = sum(usage.values()), len(usage)
        users = {u: {"usage_gpu_hours": round(v / 3600, 6),
                     "factor": round(2.0 ** (-n * v / total), 6) if total else 1.0}
                 for u, v in sorted(usage.items())}
        cfg = self.config.daemon.fair_share
        return Reply(200, {"enabled": cfg.enabled, "half_life_secs": cfg.half_life_secs,
                           "users": users})
