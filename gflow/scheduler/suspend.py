"""`gjob suspend|resume`: SIGSTOP / SIGCONT to a running job's whole tree; it keeps its GPUs meanwhile."""

from __future__ import annotations

from gflow.models import Job, JobState, job_to_wire
from gflow.scheduler.reply import Reply, error


class SuspendOps:
    """Mixed into SchedulerCore. A suspended job stays Running on the wire (0.4.13 has no
    such state); `suspended_at` says since when. Its time limit keeps counting."""

    def _running_job(self, payload, verb: str):
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return None, error(404, f"Job {payload.get('id')} not found")
        if job.state != JobState.RUNNING:
            return None, error(409, f"Job {job.id} is {job.state.value}: only a running job "
                                    f"can be {verb}")
        return job, None

    def op_suspend(self, payload) -> Reply:
        job, refused = self._running_job(payload, "suspended")
        if refused:
            return refused
        if job.suspended_at is not None:
            return error(409, f"Job {job.id} is already suspended")
        job.suspended_at = self.clock()
        self.save_job(job)
        self.launcher_outbox.append(("tree_signal", job.id, "SIGSTOP"))
        self.emit("job_suspended", job)
        return Reply(200, {"job": job_to_wire(job)})

    def op_resume(self, payload) -> Reply:
        job, refused = self._running_job(payload, "resumed")
        if refused:
            return refused
        if job.suspended_at is None:
            return error(409, f"Job {job.id} is not suspended")
        job.suspended_at = None
        self.save_job(job)
        self.launcher_outbox.append(("tree_signal", job.id, "SIGCONT"))
        self.emit("job_resumed", job)
        return Reply(200, {"job": job_to_wire(job)})

    def wake_if_suspended(self, job: Job) -> None:
        """After a stop signal (cancel, time limit): a stopped tree only acts on it once it
        runs again, so it gets SIGCONT right after (the signal is already pending)."""
        if job.suspended_at is None:
            return
        job.suspended_at = None
        self.save_job(job)
        self.launcher_outbox.append(("tree_signal", job.id, "SIGCONT"))
