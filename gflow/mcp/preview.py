"""A dry run of a submission: where and when a job would start, estimated from /info and the queue as a client sees them (stdlib only)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Request", "estimate", "secs", "time_bonus"]

INF = math.inf


def secs(t) -> Optional[float]:
    """Seconds since the epoch of the wire's SystemTime (or a Duration's seconds)."""
    if not isinstance(t, dict):
        return None
    if "secs_since_epoch" in t:
        return t["secs_since_epoch"] + t.get("nanos_since_epoch", 0) / 1e9
    if "secs" in t:
        return t["secs"] + t.get("nanos", 0) / 1e9
    return None


def time_bonus(limit: Optional[float]) -> int:
    """0.4.13's ordering bonus (spec/api.md §10): short time limits go first."""
    if limit is None:
        return 100
    return 200 + math.floor((1 - min(limit / 86400, 1)) * 100)


@dataclass
class Request:
    gpus: int = 0
    priority: int = 10
    time_limit: Optional[float] = None          # seconds
    shared: bool = False
    gpu_memory_mb: Optional[int] = None
    depends_on: list = field(default_factory=list)
    user: str = ""


@dataclass
class _Slot:
    """One queued or running job as the simulation sees it."""
    id: float
    gpus: int
    key: tuple = ()
    end: Optional[float] = None                 # when it releases its GPUs (None: never known)
    gpu_ids: tuple = ()


def _order_key(priority: int, limit: Optional[float], job_id: float) -> tuple:
    return (-priority, -time_bonus(limit), job_id)


def _reserved(info: dict, user: str, start: float, end: float) -> tuple[set, int, list]:
    """GPUs (by index) and a GPU count that other users' reservations hold at some moment of
    [start, end), and a note for each; the policy keeps a job off them (its rule 5)."""
    indices: set = set()
    count = 0
    notes = []
    for r in info.get("reservations") or ():
        if r.get("user") == user:
            continue
        r_start, r_end = r.get("start_time") or 0, r.get("end_time") or 0
        if r_end <= start or r_start >= end:
            continue
        if r.get("gpu_indices"):
            indices.update(r["gpu_indices"])
            what = "GPU " + ", ".join(map(str, r["gpu_indices"]))
        else:
            count += int(r.get("gpu_count") or 0)
            what = f"{r.get('gpu_count')} GPU(s)"
        notes.append(f"reservation {r.get('id')} holds {what} for {r.get('user')} "
                     f"{'now' if r.get('active') else 'from ' + _clock(r_start)}")
    return indices, count, notes


def _clock(t: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def estimate(info: dict, jobs: list, req: Request, now: float) -> dict:
    """Simulate the greedy start (spec/api.md §10) forward through the known ends of
    running jobs (their time limits) until the new job would start."""
    notes: list[str] = []
    all_gpus = sorted(g["index"] for g in info.get("gpus") or ())
    allowed = info.get("allowed_gpu_indices")
    usable = [i for i in all_gpus if allowed is None or i in allowed]
    by_id = {j["id"]: j for j in jobs}
    out = {"would_start": None, "estimated_start": None, "estimated_wait_secs": None,
           "gpus": [], "jobs_ahead": [], "blocked_by": [], "free_gpus_now": [],
           "notes": notes,
           "basis": ("estimate: assumes running and queued jobs use their whole time limit "
                     "(most end sooner), that no job with a higher priority is submitted "
                     "meanwhile, and ignores host-memory limits and group caps")}

    # Dependencies first: nothing else matters while they are unfinished.
    dep_states = {d: (by_id.get(d) or {}).get("state") for d in req.depends_on}
    missing = [d for d, s in dep_states.items() if s is None]
    if missing:
        out["would_start"] = "never"
        notes.append(f"dependency job(s) {missing} do not exist: the submission is refused")
        return out
    failed = [d for d, s in dep_states.items() if s in ("Failed", "Cancelled", "Timeout")]
    if failed:
        out["would_start"] = "never"
        notes.append(f"dependency job(s) {failed} ended without finishing: the job would be "
                     "cancelled (or wait for ever without auto-cancel)")
        return out
    waiting = [d for d, s in dep_states.items() if s != "Finished"]
    if req.gpus > len(usable):
        out["would_start"] = "never"
        notes.append(f"it asks for {req.gpus} GPU(s) but gflow may use {len(usable)} here "
                     f"({usable}); it would wait for ever")
        return out

    foreign = {g["index"] for g in info.get("gpus") or ()
               if g.get("reason") == "Unmanaged" or g.get("state") in ("foreign", "error")}
    if foreign:
        notes.append(f"GPU(s) {sorted(foreign)} are held by processes outside gflow (or "
                     "unusable); they count as busy with no known end")
    if req.gpu_memory_mb:
        # Where the daemon reports readings, it places a job only where that much GPU
        # memory is free now; a GPU that can never have it is left out.
        small = [g["index"] for g in info.get("gpus") or ()
                 if g.get("memory_total_mb") and g["memory_total_mb"] < req.gpu_memory_mb]
        if small:
            notes.append(f"GPU(s) {small} have less memory than the {req.gpu_memory_mb} MB "
                         "asked for")
            usable = [i for i in usable if i not in small]
            if req.gpus > len(usable):
                out["would_start"] = "never"
                return out
    holders: dict[int, list] = {}
    running = []
    for j in jobs:
        if j.get("state") != "Running":
            continue
        limit, started = secs(j.get("time_limit")), secs(j.get("started_at"))
        end = started + limit if limit is not None and started is not None else None
        slot = _Slot(j["id"], j.get("gpus") or 0, end=end, gpu_ids=tuple(j.get("gpu_ids") or ()))
        running.append(slot)
        for g in slot.gpu_ids:
            holders.setdefault(g, []).append(slot)
    free_now = [g for g in usable if g not in holders and g not in foreign]
    out["free_gpus_now"] = free_now

    shared_now: list[int] = []
    if req.shared and req.gpus:
        # A shared job may also join GPUs that only shared jobs hold, if its memory fits.
        for g in info.get("gpus") or ():
            claimed = (g.get("shared_memory_mb") or 0) + (req.gpu_memory_mb or 0)
            if g["index"] in usable and g.get("shared_jobs") and g.get("memory_mb") \
                    and claimed <= g["memory_mb"]:
                shared_now.append(g["index"])

    mine_key = _order_key(req.priority, req.time_limit, INF)
    ahead = []
    for j in jobs:
        if j.get("state") != "Queued":
            continue
        deps = list(j.get("depends_on_ids") or ())
        if j.get("depends_on") is not None and j["depends_on"] not in deps:
            deps.append(j["depends_on"])
        if any((by_id.get(d) or {}).get("state") != "Finished" for d in deps):
            continue                    # not a candidate until its own dependencies finish
        key = _order_key(j.get("priority", 10), secs(j.get("time_limit")), j["id"])
        if key < mine_key:
            ahead.append(_Slot(j["id"], j.get("gpus") or 0, key=key,
                               end=secs(j.get("time_limit"))))   # a duration until started
    ahead.sort(key=lambda s: s.key)
    out["jobs_ahead"] = [int(s.id) for s in ahead]

    if waiting:
        out["would_start"] = "after dependencies"
        out["blocked_by"] = waiting
        notes.append(f"it waits for job(s) {waiting} to finish first; when they do, it "
                     "competes for GPUs as below")

    # Walk forward: at each moment, start whatever fits in queue order (greedy, as the
    # policy does), then jump to the next moment a GPU is known to come free.
    t = now
    busy: dict[int, Optional[float]] = {}                 # gpu -> when it is free again
    for slot in running:
        for g in slot.gpu_ids:
            prev = busy.get(g, 0.0)
            busy[g] = None if prev is None or slot.end is None else max(prev, slot.end)
    for g in foreign:
        busy[g] = None
    queue = list(ahead)
    endless: set = set()                 # jobs ahead that would start and never end (known)
    for _step in range(10_000):
        free = [g for g in usable if g not in busy or (busy[g] is not None and busy[g] <= t)]
        for g in [g for g in busy if busy[g] is not None and busy[g] <= t]:
            del busy[g]
        my_end = INF if req.time_limit is None else t + req.time_limit
        res_idx, res_count, res_notes = _reserved(info, req.user, t, my_end)
        for slot in list(queue):
            if slot.gpus <= len(free):
                take, free = free[:slot.gpus], free[slot.gpus:]
                for g in take:
                    busy[g] = None if slot.end is None else t + slot.end
                queue.remove(slot)
                if slot.end is None and slot.gpus:
                    endless.add(int(slot.id))
        mine_free = [g for g in free if g not in res_idx]
        if t == now and req.shared:
            mine_free += [g for g in shared_now if g not in mine_free]
        if req.gpus <= max(len(mine_free) - res_count, 0) or req.gpus == 0:
            out["gpus"] = sorted(mine_free[:req.gpus])
            if res_notes:
                notes.extend(res_notes)
            if t == now and not waiting:
                out["would_start"] = "now"
                out["estimated_start"] = _clock(now)
                out["estimated_wait_secs"] = 0
            elif not waiting:
                out["would_start"] = "later"
                out["estimated_start"] = _clock(t)
                out["estimated_wait_secs"] = round(t - now)
            out["blocked_by"] = out["blocked_by"] or []
            return out
        upcoming = sorted(v for v in busy.values() if v is not None and v > t)
        if not upcoming:
            break
        t = upcoming[0]
    unknown = sorted({int(s.id) for s in running if s.end is None and
                      any(g in usable for g in s.gpu_ids)} | {int(s.id) for s in queue}
                     | endless)
    out["would_start"] = out["would_start"] or "unknown"
    out["blocked_by"] = (out["blocked_by"] or []) + unknown
    if res_notes:
        notes.extend(res_notes)
    notes.append("no start time can be estimated: the GPUs it needs are held by jobs "
                 f"without a time limit or by other processes ({unknown or sorted(foreign)})")
    return out
