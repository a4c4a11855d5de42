"""Prometheus exposition of the scheduler's counters and gauges (prometheus_client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest


def render_metrics(by: dict, info: dict, gauges: dict) -> bytes:
    """A fresh registry per scrape: the numbers live in the scheduler, not in this worker."""
    reg = CollectorRegistry()
    per_user = Gauge("gflow_jobs_by_user", "Jobs per user and outcome", ["user", "outcome"],
                     registry=reg)
    for user, counts in (by.get("jobs_by_user") or {}).items():
        for outcome, n in counts.items():
            per_user.labels(user=user, outcome=outcome).set(n)
    by_state = Gauge("gflow_jobs", "Jobs per state", ["state"], registry=reg)
    for state, n in (by.get("jobs_by_state") or {}).items():
        by_state.labels(state=state).set(n)
    Gauge("gflow_jobs_queued", "Queued jobs", registry=reg).set(gauges.get("queued", 0))
    Gauge("gflow_jobs_running", "Running jobs", registry=reg).set(gauges.get("running", 0))
    gpus = info.get("gpus") or []
    available = sum(1 for g in gpus if g.get("available"))
    Gauge("gflow_gpus_total", "GPUs detected", registry=reg).set(len(gpus))
    Gauge("gflow_gpus_available", "GPUs available", registry=reg).set(available)
    Gauge("gflow_gpu_utilization_ratio", "Share of GPUs in use", registry=reg).set(
        (len(gpus) - available) / len(gpus) if gpus else 0.0)
    idle = Gauge("gflow_gpu_idle_held_seconds",
                 "Seconds a process has held GPU memory below [gpu] idle_util_percent, for "
                 "those flagged (idle longer than [gpu] idle_after)",
                 ["gpu", "pid", "user", "job"], registry=reg)
    for g in gpus:
        for p in g.get("processes") or () if isinstance(g, dict) else ():
            if isinstance(p, dict) and p.get("idle"):
                idle.labels(gpu=str(g.get("index")), pid=str(p.get("pid")),
                            user=str(p.get("job_user") or p.get("user") or ""),
                            job="" if p.get("job_id") is None else str(p["job_id"])
                            ).set(p.get("idle_secs") or 0)
    total = gauges.get("memory_total_mb")
    free = gauges.get("memory_available_mb")
    if total:
        Gauge("gflow_memory_total_mb", "Host memory", registry=reg).set(total)
        Gauge("gflow_memory_available_mb", "Host memory not claimed by jobs",
              registry=reg).set(free or 0)
        Gauge("gflow_memory_utilization_ratio", "Share of memory claimed", registry=reg).set(
            (total - (free or 0)) / total)
    pass_hist = gauges.get("pass_seconds")
    if pass_hist is not None:
        Gauge("gflow_scheduler_last_pass_seconds", "Duration of the last scheduling pass",
              registry=reg).set(pass_hist)
    return generate_latest(reg)
