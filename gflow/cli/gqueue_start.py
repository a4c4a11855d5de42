"""`gqueue --start`: an estimated start time for each queued job (Slurm's `squeue --start`), from the time limits of what runs ahead of it."""

# A replay of the scheduler's order on a timeline, from what the client can see: each GPU
# is free when the time limit of the job on it ends (a job without a limit: never, so
# whatever needs that GPU is "unknown"); queued jobs take GPUs in the pass's order
# (priority, then the shorter time limit, then id), not before their begin time or the
# estimated end of their dependencies. Quotas, reservations, memory and foreign GPU
# processes are not replayed: it is an estimate, as Slurm's is.

from __future__ import annotations

import math
import time

from gflow.cli import render

INF = math.inf


def _bonus(limit) -> int:
    return 100 if limit is None else 200 + math.floor((1.0 - min(limit / 86400.0, 1.0)) * 100)


def estimate(jobs: list, gpu_indices: list, now: float) -> dict:
    """job id -> estimated start (epoch seconds), INF when unknown, for queued jobs."""
    free_at = {g: now for g in gpu_indices}
    ends: dict = {}
    for job in jobs:
        if job.get("state") != "Running":
            continue
        started = render.wire_time(job.get("started_at")) or now
        limit = render.wire_duration(job.get("time_limit"))
        end = INF if limit is None else max(started + limit, now)
        ends[job["id"]] = end
        for g in job.get("gpu_ids") or ():
            if g in free_at:
                free_at[g] = max(free_at[g], end)
    queued = sorted((j for j in jobs if j.get("state") == "Queued"),
                    key=lambda j: (-j.get("priority", 10),
                                   -_bonus(render.wire_duration(j.get("time_limit"))), j["id"]))
    out: dict = {}
    for job in queued:
        earliest = max(now, render.wire_time(job.get("scheduled_at")) or now)
        deps = list(job.get("depends_on_ids") or [])
        if job.get("depends_on") is not None and job["depends_on"] not in deps:
            deps.append(job["depends_on"])
        for dep in deps:
            known = {"Finished", "Failed", "Cancelled", "Timeout"}
            parent = next((j for j in jobs if j.get("id") == dep), None)
            if parent is None or parent.get("state") in known:
                continue
            earliest = max(earliest, ends.get(dep, INF))
        need = job.get("gpus", 0)
        if need > len(free_at):
            start = INF
        elif need == 0:
            start = earliest
        else:
            chosen = sorted(free_at, key=lambda g: (free_at[g], g))[:need]
            start = max(earliest, max(free_at[g] for g in chosen))
        limit = render.wire_duration(job.get("time_limit"))
        end = INF if start == INF or limit is None else start + limit
        if need and start != INF:
            for g in chosen:
                free_at[g] = end
        out[job["id"]] = start
        ends[job["id"]] = end
    return out


def start_text(t, now: float) -> str:
    if t is None or t == INF:
        return "unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(t, now)))


def table(client, shown: list, colour: bool) -> str:
    """The queued jobs of `shown` with START_TIME; estimated against everyone's jobs."""
    now = time.time()
    info = client.call("GET", "/info")
    allowed = info.get("allowed_gpu_indices")
    indices = [g.get("index") for g in info.get("gpus") or []
               if allowed is None or g.get("index") in allowed]
    starts = estimate(client.list_jobs(states=["Queued", "Running"]), indices, now)
    rows = [["JOBID", "NAME", "USER", "ST", "START_TIME", "NODES", "NODELIST(REASON)"]]
    for job in shown:
        if job.get("state") not in ("Queued", "Hold"):
            continue
        rows.append([str(job["id"]), render.safe(job.get("run_name") or "-"),
                     render.safe(job.get("submitted_by", "")),
                     render.STATE_SHORT.get(job.get("state"), "?"),
                     "N/A" if job.get("state") == "Hold" else start_text(starts.get(job["id"]),
                                                                         now),
                     str(job.get("gpus", 0)), render.safe(render.nodelist_cell(job))])
    if len(rows) == 1:
        return "No queued jobs."
    return render.table(rows, sep="  ")
