"""`gstats --gpu-hours`: GPU-hours per user and per project over a period (canhazgpu's report), as a table, JSON or CSV."""

# Counted from the job listing: every run (earlier attempts of retried jobs included)
# contributes its GPUs times the part of its run inside [since, until]; a running job
# counts up to now. Jobs without GPUs count nothing.

from __future__ import annotations

import json
import time

from gflow.cli import render


def _runs(job: dict, now: float):
    """(start, end, gpus) of each run of a job: its attempts, then the current one."""
    for attempt in job.get("attempts") or []:
        start = render.wire_time(attempt.get("started_at"))
        end = render.wire_time(attempt.get("finished_at"))
        if start is not None and end is not None:
            yield start, end, len(attempt.get("gpu_ids") or ()) or job.get("gpus", 0)
    start = render.wire_time(job.get("started_at"))
    if start is not None:
        end = render.wire_time(job.get("finished_at"))
        yield start, (now if end is None else end), job.get("gpus", 0)


def gpu_hours(jobs: list, since: float, until: float, now: float) -> dict:
    """{"users": {name: [hours, jobs]}, "projects": {...}} over [since, until]."""
    out: dict = {"users": {}, "projects": {}}
    for job in jobs:
        hours = 0.0
        for start, end, gpus in _runs(job, now):
            overlap = min(end, until) - max(start, since)
            if gpus and overlap > 0:
                hours += gpus * overlap / 3600
        if hours <= 0:
            continue
        for table, key in (("users", job.get("submitted_by") or "unknown"),
                           ("projects", job.get("project") or "-")):
            row = out[table].setdefault(key, [0.0, 0])
            row[0] += hours
            row[1] += 1
    return out


def report(client, since, until, fmt: str, users=None) -> str:
    now = time.time()
    since = 0.0 if since is None else float(since)
    until = now if until is None else float(until)
    jobs = client.list_jobs(users=users)
    data = gpu_hours(jobs, since, until, now)
    rows = {t: sorted(v.items(), key=lambda kv: (-kv[1][0], kv[0])) for t, v in data.items()}
    if fmt == "json":
        return render.safe_json(json.dumps({
            "since": int(since), "until": int(until),
            "users": [{"user": k, "gpu_hours": round(h, 6), "jobs": n}
                      for k, (h, n) in rows["users"]],
            "projects": [{"project": k, "gpu_hours": round(h, 6), "jobs": n}
                         for k, (h, n) in rows["projects"]]}, indent=2, ensure_ascii=False))
    if fmt == "csv":
        lines = ["kind,name,gpu_hours,jobs"]
        for kind, table in (("user", "users"), ("project", "projects")):
            lines += [f"{kind},{render.safe(k).replace(',', ' ')},{h:.2f},{n}"
                      for k, (h, n) in rows[table]]
        return "\n".join(lines)
    stamp = "%Y-%m-%d %H:%M"
    head = (f"GPU-hours from {time.strftime(stamp, time.localtime(since)) if since else 'the start'}"
            f" to {time.strftime(stamp, time.localtime(until))}")
    blocks = [head]
    for title, table in (("USER", "users"), ("PROJECT", "projects")):
        body = [[title, "GPU-HOURS", "JOBS"]]
        body += [[render.safe(k), f"{h:.2f}", str(n)] for k, (h, n) in rows[table]]
        total = sum(h for _k, (h, _n) in rows[table])
        body.append(["total", f"{total:.2f}", str(sum(n for _k, (_h, n) in rows[table]))])
        blocks.append(render.table(body, sep="  "))
    return "\n\n".join(blocks)
