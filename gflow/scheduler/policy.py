"""The pure scheduling policy: which queued jobs start now, on which GPUs, and which are cancelled.

No I/O and no clock: everything, `now` included, comes in through `PolicyInput`.

The rules, in the order one pass applies them:

1. **Dependencies.** A queued job's dependencies are *satisfied* when every one is
   Finished (mode All, the default) or at least one is Finished (mode Any). They are
   *unsatisfiable* when, in All mode, any dependency ended Failed/Cancelled/Timeout, or,
   in Any mode, every dependency is final and none Finished. An unsatisfiable job with
   `auto_cancel_on_dependency_failure` is cancelled with `DependencyFailed:<parent>`;
   without it, it stays queued and its detail says the dependency can never be met.
2. **Order.** Candidates are sorted by priority (higher first), then 0.4.13's time bonus
   (100 without a time limit, else 200 + floor((1 - min(limit/24h, 1)) * 100); higher
   first), then id (lower first).
3. **Never-fits.** A job that asks for more GPUs than are allowed on this machine, or
   more host memory than it has, is left queued with a detail saying so and blocks
   nobody.
4. **Greedy start.** Walking the order, a job starts when its group is below its
   `max_concurrent`, its memory fits what Running jobs leave free, and enough GPUs are
   free for it: exclusive jobs need GPUs with no gflow job and no foreign process;
   shared jobs need GPUs with no exclusive job whose shared memory total plus the request
   fits. GPUs are taken lowest index first (`sequential`) or in a shuffled order
   (`random`, shuffled by the caller's seeded generator).
5. **Reservations.** GPUs reserved by index for another user are off limits; for count
   reservations, other users' jobs may only start if enough GPUs stay free to honour
   the outstanding reserved count. Owners may use any free capacity beyond their
   reservation.
6. **No starvation.** Once the highest-ordered job that fits the machine but is blocked
   on GPUs (or memory) has waited longer than `starvation_secs`, lower-ordered jobs may
   no longer take GPUs (or memory): the free capacity is kept for it until it starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

FINISHED = "Finished"
FAILED_STATES = frozenset({"Failed", "Cancelled", "Timeout"})
FINAL = frozenset({"Finished", "Failed", "Cancelled", "Timeout"})


@dataclass(frozen=True)
class Candidate:
    """What the policy needs to know about one queued job."""
    id: int
    user: str
    priority: int = 10
    gpus: int = 0
    shared: bool = False
    gpu_memory_mb: Optional[int] = None
    memory_mb: Optional[int] = None
    time_limit: Optional[float] = None
    deps: tuple = ()
    dep_mode_any: bool = False
    auto_cancel: bool = True
    group_id: Optional[str] = None
    max_concurrent: Optional[int] = None
    queued_since: float = 0.0


@dataclass(frozen=True)
class Occupant:
    """A job holding resources: Running, or cancelled/timed out but not yet exited."""
    id: int
    user: str
    gpu_ids: tuple = ()
    shared: bool = False
    gpu_memory_mb: Optional[int] = None
    memory_mb: Optional[int] = None
    group_id: Optional[str] = None


@dataclass(frozen=True)
class Gpu:
    index: int
    memory_mb: int = 0
    foreign: bool = False        # a compute process that is not one of our jobs


@dataclass(frozen=True)
class ActiveReservation:
    user: str
    count: int = 0
    indices: tuple = ()
    until: str = ""              # for the waiting reason, already formatted ("14:00")


@dataclass
class PolicyInput:
    candidates: list
    occupants: list
    dep_states: dict                    # job id -> state name, for every dependency named
    gpus: list
    allowed: Optional[frozenset] = None  # None: every GPU
    total_memory_mb: Optional[int] = None
    reservations: list = field(default_factory=list)
    now: float = 0.0
    starvation_secs: float = 1800.0
    shuffle: Optional[object] = None     # callable(list) -> None, for the random strategy


@dataclass
class Decision:
    starts: list = field(default_factory=list)      # (job id, [gpu indices])
    cancels: list = field(default_factory=list)     # (job id, failed parent id)
    waiting: dict = field(default_factory=dict)     # job id -> (reason code, detail)
    protecting: bool = False                        # capacity is being kept for a starving job


def time_bonus(time_limit: Optional[float]) -> int:
    if time_limit is None:
        return 100
    return 200 + math.floor((1.0 - min(time_limit / 86400.0, 1.0)) * 100)


def order_key(c: Candidate):
    return (-c.priority, -time_bonus(c.time_limit), c.id)


def dependency_status(c: Candidate, dep_states: dict) -> tuple[str, Optional[int]]:
    """('ok'|'wait'|'never', offending parent id or the first unfinished one)."""
    if not c.deps:
        return "ok", None
    states = [(d, dep_states.get(d)) for d in c.deps]
    if c.dep_mode_any:
        if any(s == FINISHED for _, s in states):
            return "ok", None
        if all(s in FINAL for _, s in states):
            return "never", states[-1][0]
        return "wait", next(d for d, s in states if s not in FINAL)
    for d, s in states:
        if s in FAILED_STATES:
            return "never", d
    for d, s in states:
        if s != FINISHED:
            return "wait", d
    return "ok", None


def _fmt_ids(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in ids)


def plan(inp: PolicyInput) -> Decision:
    decision = Decision()
    allowed_gpus = [g for g in sorted(inp.gpus, key=lambda g: g.index)
                    if inp.allowed is None or g.index in inp.allowed]
    n_allowed = len(allowed_gpus)

    # Current occupation.
    exclusive_holder: dict[int, int] = {}
    shared_used: dict[int, int] = {}
    group_running: dict[str, int] = {}
    memory_used = 0
    owner_gpus_in_use: dict[str, int] = {}
    for o in inp.occupants:
        for g in o.gpu_ids:
            if o.shared:
                shared_used[g] = shared_used.get(g, 0) + (o.gpu_memory_mb or 0)
            else:
                exclusive_holder[g] = o.id
        owner_gpus_in_use[o.user] = owner_gpus_in_use.get(o.user, 0) + len(o.gpu_ids)
        if o.group_id is not None:
            group_running[o.group_id] = group_running.get(o.group_id, 0) + 1
        memory_used += o.memory_mb or 0

    reserved_index_owner: dict[int, str] = {}
    count_reserved: dict[str, int] = {}
    for r in inp.reservations:
        for i in r.indices:
            reserved_index_owner[i] = r.user
        if r.count:
            count_reserved[r.user] = count_reserved.get(r.user, 0) + r.count

    def outstanding_count_for_others(user: str) -> int:
        # GPUs still owed to count reservations of users other than `user`.
        total = 0
        for owner, count in count_reserved.items():
            if owner != user:
                total += max(0, count - owner_gpus_in_use.get(owner, 0))
        return total

    def reserved_against(c: Candidate) -> str:
        """Who holds GPUs this job may not take, for its waiting reason."""
        for r in inp.reservations:
            if r.user != c.user:
                return f"GPUs reserved for {r.user}" + (f" until {r.until}" if r.until else "")
        return ""

    def free_gpus_for(c: Candidate) -> list[Gpu]:
        out = []
        for g in allowed_gpus:
            owner = reserved_index_owner.get(g.index)
            if owner is not None and owner != c.user:
                continue
            if g.index in exclusive_holder:
                continue
            if c.shared:
                used = shared_used.get(g.index, 0)
                if g.foreign and used == 0:
                    continue
                if g.memory_mb and used + (c.gpu_memory_mb or 0) > g.memory_mb:
                    continue
            else:
                if g.foreign or g.index in shared_used:
                    continue
            out.append(g)
        return out

    ordered = sorted(inp.candidates, key=order_key)
    ahead = 0
    protect_gpus = False
    protect_memory = False
    for c in ordered:
        status, parent = dependency_status(c, inp.dep_states)
        if status == "never":
            if c.auto_cancel:
                decision.cancels.append((c.id, parent))
            else:
                decision.waiting[c.id] = (
                    "WaitingForDependency",
                    f"dependency can never be met: job {parent} did not finish")
            continue
        if status == "wait":
            decision.waiting[c.id] = ("WaitingForDependency", f"waiting for job {parent}")
            continue
        if c.gpus > n_allowed:
            decision.waiting[c.id] = (
                "WaitingForResources",
                f"can never run here: needs {c.gpus} GPUs, {n_allowed} allowed")
            continue
        if (c.memory_mb is not None and inp.total_memory_mb is not None
                and c.memory_mb > inp.total_memory_mb):
            decision.waiting[c.id] = (
                "WaitingForResources",
                f"can never run here: needs {c.memory_mb} MB of memory, "
                f"the machine has {inp.total_memory_mb} MB")
            continue
        if c.group_id is not None and c.max_concurrent is not None:
            if group_running.get(c.group_id, 0) >= c.max_concurrent:
                decision.waiting[c.id] = (
                    "WaitingForResources",
                    f"group limit: {group_running.get(c.group_id, 0)} of "
                    f"{c.max_concurrent} running")
                continue
        free_mem = None
        if inp.total_memory_mb is not None:
            free_mem = inp.total_memory_mb - memory_used
        mem_needed = c.memory_mb or 0
        if mem_needed and (protect_memory or (free_mem is not None and mem_needed > free_mem)):
            if not protect_memory and inp.now - c.queued_since > inp.starvation_secs:
                protect_memory = True
            decision.waiting[c.id] = (
                "WaitingForResources",
                f"waiting: {mem_needed} MB of memory, {max(free_mem or 0, 0)} MB free"
                + (" (kept for a job that waited too long)" if protect_memory else ""))
            ahead += 1
            continue
        chosen: list[int] = []
        if c.gpus > 0:
            free = free_gpus_for(c)
            if inp.shuffle is not None:
                inp.shuffle(free)
            held_back = outstanding_count_for_others(c.user)
            usable = len(free) - held_back if not c.shared else len(free)
            if protect_gpus or usable < c.gpus:
                if not protect_gpus and inp.now - c.queued_since > inp.starvation_secs:
                    protect_gpus = True
                reserved = reserved_against(c)
                if reserved and (held_back or any(
                        reserved_index_owner.get(g.index, c.user) != c.user
                        and g.index not in exclusive_holder for g in allowed_gpus)):
                    detail = f"waiting: {c.gpus} GPUs, {max(usable, 0)} free; {reserved}"
                elif protect_gpus and usable >= c.gpus:
                    detail = "waiting: GPUs kept for a job that has waited too long"
                else:
                    detail = f"waiting: {c.gpus} GPUs, {max(usable, 0)} free"
                if ahead:
                    detail += f"; priority: {ahead} jobs ahead"
                decision.waiting[c.id] = ("WaitingForResources", detail)
                ahead += 1
                continue
            chosen = [g.index for g in free[:c.gpus]]
            if inp.shuffle is None:
                chosen.sort()
        # Start it: account for what it takes.
        decision.starts.append((c.id, chosen))
        for g in chosen:
            if c.shared:
                shared_used[g] = shared_used.get(g, 0) + (c.gpu_memory_mb or 0)
            else:
                exclusive_holder[g] = c.id
        owner_gpus_in_use[c.user] = owner_gpus_in_use.get(c.user, 0) + len(chosen)
        memory_used += mem_needed
        if c.group_id is not None:
            group_running[c.group_id] = group_running.get(c.group_id, 0) + 1
    decision.protecting = protect_gpus or protect_memory
    return decision
