"""Retries (`gbatch --max-retries N`): a failed attempt is kept on record and the job is queued again."""

from __future__ import annotations

from typing import Optional

from gflow.models import Job, JobState, time_to_wire


class RetryOps:
    """Mixed into SchedulerCore; the Running -> Queued edge it takes is outside 0.4.13's
    table (features.RETRY_EDGE), allowed by `transition(..., retry=True)` only.
    Only a run that failed by itself is retried (an exit code
    other than 0, a kill for memory, a monitor that vanished); a cancelled or timed-out
    job, or one failed with `gcancel --fail`, is not. While a job waits for its next
    attempt it is Queued, so its dependents keep waiting for the last attempt."""

    def retry_failed(self, job: Job, detail: str, end: float) -> bool:
        """Queue `job` again if it has retries left; False if its failure is final."""
        if not job.max_retries or len(job.attempts) >= job.max_retries:
            return False
        number = len(job.attempts) + 1
        job.attempts = [*job.attempts, {    # a new list: see models.EMPTY_LIST
            "attempt": number, "state": JobState.FAILED.value, "exit_code": job.exit_code,
            "started_at": time_to_wire(job.started_at), "finished_at": time_to_wire(end),
            "gpu_ids": list(job.gpu_ids or ()), "detail": detail}]
        self.account_run(job, end)                   # fair-share: this run's GPU use
        job.exit_code = job.started_at = job.finished_at = job.gpu_ids = None
        job.suspended_at = None
        self.queued_since[job.id] = self.clock()     # it waits afresh, like a release
        self.transition(job, JobState.QUEUED, retry=True,
                        detail=f"attempt {number} failed ({detail}); retry {number} of "
                               f"{job.max_retries}")
        return True

    def attempt_log(self, job: Job, attempt: Optional[int]):
        """(path, None) for attempt `attempt` (None or the current one: the job's log),
        or (None, (status, message))."""
        current = len(job.attempts) + 1
        if attempt is None or attempt == current:
            return self.paths.job_log(job.id), None
        if not isinstance(attempt, int) or isinstance(attempt, bool) or not 1 <= attempt < current:
            return None, (404, f"Job {job.id} has no attempt {attempt} (attempts: 1-{current})")
        return self.paths.job_attempt_log(job.id, attempt), None
