"""Request handlers that report on the daemon: health, statistics, debug dumps, metrics gauges."""

from __future__ import annotations

from gflow import __version__
from gflow.models import JobState, job_to_wire
from gflow.scheduler.reply import Reply


class StatusOps:
    """Mixed into `SchedulerCore`: read-only views of its state."""

    # --- health ----------------------------------------------------------------------

    def op_health(self, _payload) -> Reply:
        import os
        body = {"pid": os.getppid() if self._under_master else os.getpid(), "status": "ok",
                "version": __version__, "uptime_secs": round(self.clock() - self.started_at, 3),
                "gpus": len(self.gpu_view), "gpu_source": self.gpu_inventory.source,
                "jobs": {"queued": len(self.queued), "running": len(self.running),
                         "held": len(self.held)}}
        if self.external:       # Slurm mode: whether the controller answers (ops_executor)
            body["executor"] = dict(self.executor_health or {
                "kind": self.config.executor.kind, "ok": None, "detail": "not checked yet"})
        if self.mode == "journal":
            body.update(status="recovery", mode="journal", detail=self.recovery.get("detail"),
                        journal=str(self.paths.journal_file),
                        journal_error=self.recovery.get("journal_error"),
                        state_backup=self.recovery.get("state_backup"))
        elif self.mode == "read_only":
            body.update(status="read_only", detail=self.recovery.get("detail"),
                        journal=str(self.paths.journal_file),
                        journal_error=self.recovery.get("journal_error"),
                        state_backup=self.recovery.get("state_backup"))
            return Reply(503, body)
        return Reply(200, body)

    _under_master = True

    # --- statistics ------------------------------------------------------------------

    def op_stats(self, payload) -> Reply:
        user, since = payload.get("user"), payload.get("since")
        now = self.clock()
        jobs = self.select_jobs(users=[user] if user is not None else None,
                                created_after=since)
        counts = {s: 0 for s in JobState}
        waits, runtimes, top = [], [], []
        gpu_hours = 0.0
        for job in jobs:
            counts[job.state] += 1
            if job.started_at is not None and job.submitted_at is not None:
                waits.append(job.started_at - job.submitted_at)
            if job.started_at is not None:
                end = job.finished_at if job.finished_at is not None else now
                rt = max(end - job.started_at, 0.0)
                gpu_hours += job.gpus * rt / 3600
                if job.state in (JobState.FINISHED, JobState.FAILED, JobState.TIMEOUT):
                    runtimes.append(rt)
                top.append({"id": job.id, "name": job.run_name, "runtime_secs": rt,
                            "gpus": job.gpus})
        decided = sum(counts[s] for s in (JobState.FINISHED, JobState.FAILED,
                                          JobState.CANCELLED, JobState.TIMEOUT))
        top.sort(key=lambda t: -t["runtime_secs"])
        total = len(jobs)
        return Reply(200, {
            "user": user, "since": since, "total_jobs": total,
            "completed_jobs": counts[JobState.FINISHED], "failed_jobs": counts[JobState.FAILED],
            "cancelled_jobs": counts[JobState.CANCELLED],
            "timeout_jobs": counts[JobState.TIMEOUT], "running_jobs": counts[JobState.RUNNING],
            "queued_jobs": counts[JobState.QUEUED], "held_jobs": counts[JobState.HOLD],
            "avg_wait_secs": sum(waits) / len(waits) if waits else None,
            "avg_runtime_secs": sum(runtimes) / len(runtimes) if runtimes else None,
            "total_gpu_hours": gpu_hours,
            "jobs_with_gpus": sum(1 for j in jobs if j.gpus > 0),
            "avg_gpus_per_job": sum(j.gpus for j in jobs) / total if total else 0.0,
            "peak_gpu_usage": max((j.gpus for j in jobs), default=0),
            "success_rate": counts[JobState.FINISHED] / decided * 100 if decided else 0.0,
            "top_jobs": top[:5],
            **self.gpu_usage_stats(jobs),       # ours: sampled GPU use (ops_gpu_insight)
        })

    def op_debug_state(self, _payload) -> Reply:
        return Reply(200, {
            "jobs": [job_to_wire(j) for j in self.jobs.values()],
            "next_job_id": self.next_job_id, "total_memory_mb": self.total_memory_mb,
            "available_memory_mb": (None if self.total_memory_mb is None else
                                    self.total_memory_mb - sum(
                                        self.jobs[i].memory_limit_mb or 0
                                        for i in self.running | self.draining)),
            "gpu_slots": self.op_info({})[1]["gpus"],
            "allowed_gpu_indices": self.allowed_gpu_indices})

    def op_debug_job(self, payload) -> Reply:
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return Reply(404, None)
        out = job_to_wire(job)
        now = self.clock()
        rt = None if job.started_at is None else now - job.started_at
        out["runtime_seconds"] = rt
        out["time_remaining_seconds"] = (None if rt is None or job.time_limit is None
                                         else max(0.0, job.time_limit - rt))
        return Reply(200, out)

    def op_metrics_gauges(self, _payload) -> Reply:
        claimed = sum(self.jobs[i].memory_limit_mb or 0 for i in self.running | self.draining)
        return Reply(200, {"queued": len(self.queued), "running": len(self.running),
                           "memory_total_mb": self.total_memory_mb,
                           "memory_available_mb": (None if self.total_memory_mb is None
                                                   else self.total_memory_mb - claimed),
                           "pass_seconds": self.last_pass_secs})

    def op_debug_metrics(self, _payload) -> Reply:
        by_state: dict = {}
        by_user: dict = {}
        for job in self.jobs.values():
            by_state[job.state.value] = by_state.get(job.state.value, 0) + 1
            u = by_user.setdefault(job.submitted_by, {"submitted": 0, "running": 0,
                                                      "finished": 0, "failed": 0})
            u["submitted"] += 1
            if job.state == JobState.RUNNING:
                u["running"] += 1
            elif job.state == JobState.FINISHED:
                u["finished"] += 1
            elif job.state == JobState.FAILED:
                u["failed"] += 1
        return Reply(200, {"jobs_by_state": by_state, "jobs_by_user": by_user})
