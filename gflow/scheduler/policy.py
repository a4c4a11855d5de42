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
   more host memory than it has, or whose group's limit is 0, is left queued with a
   detail saying so ("can never run here: needs 99 GPUs; this machine has 4") and blocks
   nobody.
4. **Greedy start.** Walking the order, a job starts when its group is below its
   `max_concurrent`, its memory fits what Running jobs leave free, and enough GPUs are
   free for it: exclusive jobs need GPUs with no gflow job and no foreign process;
   shared jobs need GPUs with no exclusive job whose shared memory total plus the request
   fits. GPUs are taken lowest index first (`sequential`) or in a shuffled order
   (`random`, shuffled by the caller's seeded generator). A job asking `--gpu-memory`
   gets only GPUs where that much is free now, other programs' use counted (memfit.py).
5. **Reservations.** A job holds its GPUs until its time limit ends (no limit: for
   ever), so it must not start on capacity that another user's reservation, active or
   upcoming, holds at any moment of that window: GPUs reserved by index are off limits,
   and for count reservations enough GPUs must be free at each moment to honour the
   outstanding count (a GPU is free again when the time limits of the jobs on it end;
   the owner's own jobs then count toward their reservation). Owners may use any free
   capacity beyond their reservation.
6. **No starvation.** Once the highest-ordered job that fits the machine but is blocked
   on GPUs (or memory) has waited longer than `starvation_secs`, lower-ordered jobs may
   no longer take GPUs (or memory): the free capacity is kept for it until it starts.
7. **Begin times and quotas** (issue 17). A job whose `begin_at` lies ahead waits
   (`BeginTime`, "starts at 14:00") and blocks nobody; `wake_at` says when the first one
   is due. A job whose user or project would go over `max_running_jobs` or
   `max_running_gpus` waits (`Quota`, "alice runs 4 of 4 GPUs allowed") and blocks nobody.
   Dependencies may be Slurm-style per parent: `afterok` (the default: it must finish),
   `afterany` (it must end, however), `afternotok` (it must end failed, cancelled or timed
   out).
8. **Fair-share** (when `shares` is given). Among jobs of equal priority, the user with
   less recent GPU use goes first (before the time-limit bonus and the id).
"""

from __future__ import annotations

import math
from itertools import chain
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Optional

from gflow.scheduler.memfit import MemoryFit

FINISHED = "Finished"
FAILED_STATES = frozenset({"Failed", "Cancelled", "Timeout"})
FINAL = frozenset({"Finished", "Failed", "Cancelled", "Timeout"})
INF = math.inf


@dataclass(frozen=True, slots=True)
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
    dep_conditions: tuple = ()          # per entry of `deps`; empty: all "afterok"
    begin_at: Optional[float] = None    # not before this (gbatch --begin)
    begin_text: str = ""                # begin_at as the waiting reason shows it ("14:00")
    project: Optional[str] = None


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
    ends_at: Optional[float] = None     # its time limit's end; None: may run for ever
    project: Optional[str] = None


@dataclass(frozen=True)
class Gpu:
    index: int
    memory_mb: int = 0
    foreign: bool = False        # a compute process that is not one of our jobs
    free_mb: Optional[int] = None   # memory free now, others' use counted (memfit.py)


@dataclass(frozen=True)
class ActiveReservation:
    """A live reservation: active now or upcoming (the name predates upcoming ones)."""
    user: str
    count: int = 0
    indices: tuple = ()
    until: str = ""              # for the waiting reason, already formatted ("14:00")
    start: Optional[float] = None   # None: already begun
    end: Optional[float] = None     # None: no end
    since: str = ""              # the start, formatted, for upcoming ones ("03:30")


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
    quotas: Optional[object] = None      # config_quota.QuotaConfig (file + overrides)
    shares: Optional[dict] = None        # fair-share: user -> recent GPU-seconds (rule 8)


@dataclass
class Decision:
    starts: list = field(default_factory=list)      # (job id, [gpu indices])
    cancels: list = field(default_factory=list)     # (job id, failed parent id)
    waiting: dict = field(default_factory=dict)     # job id -> (reason code, detail)
    protecting: bool = False                        # capacity is being kept for a starving job
    wake_at: Optional[float] = None                 # the first begin time still ahead


def time_bonus(time_limit: Optional[float]) -> int:
    if time_limit is None:
        return 100
    return 200 + math.floor((1.0 - min(time_limit / 86400.0, 1.0)) * 100)


def order_key(c: Candidate):
    return (-c.priority, -time_bonus(c.time_limit), c.id)


def dependency_verdict(condition: str, state: Optional[str]) -> str:
    """'ok', 'wait' or 'never' for one parent in `state` under a Slurm-style condition."""
    if condition == "afterany":
        return "ok" if state in FINAL else "wait"
    if condition == "afternotok":
        return "ok" if state in FAILED_STATES else ("never" if state == FINISHED else "wait")
    return "ok" if state == FINISHED else ("never" if state in FAILED_STATES else "wait")


def dependency_status(c: Candidate, dep_states: dict) -> tuple[str, Optional[int]]:
    """('ok'|'wait'|'never', offending parent id or the first unfinished one)."""
    if not c.deps:
        return "ok", None
    conds = c.dep_conditions or ("afterok",) * len(c.deps)
    verdicts = [(d, dependency_verdict(k, dep_states.get(d))) for d, k in zip(c.deps, conds)]
    if c.dep_mode_any:
        if any(v == "ok" for _, v in verdicts):
            return "ok", None
        if all(v == "never" for _, v in verdicts):
            return "never", verdicts[-1][0]
        return "wait", next(d for d, v in verdicts if v == "wait")
    for d, v in verdicts:
        if v == "never":
            return "never", d
    for d, v in verdicts:
        if v != "ok":
            return "wait", d
    return "ok", None


def never_reason(c: Candidate, parent: Optional[int]) -> str:
    """Why a dependency can never be met, in the words of its condition."""
    if dict(zip(c.deps, c.dep_conditions)).get(parent) == "afternotok":
        return f"job {parent} finished (afternotok needs it to fail)"
    return f"job {parent} did not finish"


class _Ledger:
    """Until when each GPU is held (a job's time limit; no limit or a foreign process: for
    ever) and what the reservations need of them, for rule 5."""

    def __init__(self, inp: PolicyInput, gpus: list):
        self.now = inp.now
        self.reservations = inp.reservations
        self.gpus = [g.index for g in gpus]
        self.busy_until: dict[int, float] = {g.index: INF for g in gpus if g.foreign}
        self.holds: list = []                      # (user, gpu, until)
        self._memo: dict = {}
        for o in inp.occupants:
            self.hold(o.user, o.gpu_ids, INF if o.ends_at is None else o.ends_at)

    def hold(self, user: str, gpu_ids, until: float) -> None:
        # A job past its limit (or with a zero limit) still holds its GPUs right now.
        until = max(until, self.now + 1e-3)
        for g in gpu_ids:
            self.busy_until[g] = max(self.busy_until.get(g, -INF), until)
            self.holds.append((user, g, until))
        if gpu_ids:
            self._memo.clear()

    def start_of(self, r: ActiveReservation) -> float:
        return self.now if r.start is None else max(r.start, self.now)

    def end_of(self, r: ActiveReservation) -> float:
        return INF if r.end is None else r.end

    def against(self, user: str, until: float) -> list:
        """Other users' reservations that hold GPUs at some moment of [now, until)."""
        return [r for r in self.reservations if r.user != user
                and self.start_of(r) < until and self.end_of(r) > self.now]

    def short(self, user: str, chosen: frozenset, until: float,
              against: list) -> Optional[ActiveReservation]:
        """The count reservation of another user that `user` holding `chosen` until `until`
        would leave short of free GPUs at some moment, if any."""
        counts = [r for r in against if r.count]
        if not counts:
            return None
        key = (user, chosen, until)
        if key in self._memo:
            return self._memo[key]
        # Free capacity only shrinks when a reservation begins or an owner's job ends.
        points = {self.now} | {self.start_of(r) for r in self.reservations
                               if self.start_of(r) < until}
        points |= {e for _, _, e in self.holds if self.now < e < until}
        found = None
        for t in sorted(points):
            live = [r for r in counts if self.start_of(r) <= t < self.end_of(r)]
            if not live:
                continue
            idx = {i for r in self.reservations if self.start_of(r) <= t < self.end_of(r)
                   for i in r.indices}
            free = sum(1 for g in self.gpus if g not in chosen and g not in idx
                       and self.busy_until.get(g, -INF) <= t)
            owed: dict[str, int] = {}
            for r in live:
                owed[r.user] = owed.get(r.user, 0) + r.count
            need = 0
            for owner, count in owed.items():
                held = {g for u, g, e in self.holds if u == owner and e > t and g not in idx}
                need += max(0, count - len(held))
            if free < need:
                found = live[0]
                break
        self._memo[key] = found
        return found

    def usable(self, user: str, free: list, until: float, against: list) -> int:
        """How many of `free` (taken in order) `user` could hold until `until`."""
        lo, hi = 0, len(free)               # lo always fits; find the largest that does
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.short(user, frozenset(g.index for g in free[:mid]), until, against):
                hi = mid - 1
            else:
                lo = mid
        return lo

    def describe(self, r: ActiveReservation, hint: bool = False) -> str:
        """Whose reservation, and when; `hint`: say that ending sooner would do."""
        text = f"GPUs reserved for {r.user}"
        upcoming = r.start is not None and r.start > self.now
        if upcoming and r.since:
            text += f" from {r.since}"
        text += f" until {r.until}" if r.until else ""
        if upcoming and hint:
            text += " (a job whose time limit ends before then may start)"
        return text


def held_back(c: Candidate, status: str, parent: Optional[int], now: float, out) -> bool:
    """The gates of every pass, local or hand-over: a dependency that can never be met
    (cancel, or wait where auto-cancel is off) and a begin time still ahead. True if `c`
    stops here, recorded in `out` (its `cancels`, `waiting` and `wake_at`)."""
    if status == "never":
        if c.auto_cancel:
            out.cancels.append((c.id, parent))
        else:
            out.waiting[c.id] = ("WaitingForDependency",
                                 f"dependency can never be met: {never_reason(c, parent)}")
        return True
    if c.begin_at is not None and c.begin_at > now:
        out.waiting[c.id] = ("BeginTime", f"starts at {c.begin_text}")
        out.wake_at = min(out.wake_at or INF, c.begin_at)
        return True
    return False


def _n_gpus(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


class _Quotas:
    """What each user and project runs now (and starts in this pass), against their
    quota (rule 7)."""

    def __init__(self, quotas, occupants: list):
        self.quotas = quotas
        self.jobs: dict = {}
        self.gpus: dict = {}
        for o in occupants:
            self.add(o.user, o.project, len(o.gpu_ids))

    def add(self, user: str, project: Optional[str], gpus: int) -> None:
        for key in (("user", user), ("project", project)):
            if key[1] is not None:
                self.jobs[key] = self.jobs.get(key, 0) + 1
                self.gpus[key] = self.gpus.get(key, 0) + gpus

    def blocked(self, c: Candidate) -> Optional[str]:
        """Why `c` may not start now under its user's or project's quota, or None."""
        for key, who, limits in (
                (("user", c.user), c.user, self.quotas.user_limits(c.user)),
                (("project", c.project), f"project {c.project}",
                 self.quotas.project_limits(c.project))):
            if limits is None:
                continue
            jobs, gpus = self.jobs.get(key, 0), self.gpus.get(key, 0)
            most = limits.max_running_jobs
            if most is not None and jobs >= most:
                return f"{who} runs {jobs} of {most} job{'' if most == 1 else 's'} allowed"
            most = limits.max_running_gpus
            if most is not None and c.gpus and gpus + c.gpus > most:
                text = f"{who} runs {gpus} of {_n_gpus(most)} allowed"
                if c.gpus > most:
                    text += f"; this job needs {c.gpus}, more than the quota ever allows"
                elif gpus < most:
                    text += f"; this job needs {c.gpus}"
                return text
        return None


def plan(inp: PolicyInput) -> Decision:
    return run_steps(plan_steps(inp))


def run_steps(steps):
    """What a `plan_steps` generator returns, all its steps run at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _ordered(inp: PolicyInput, every: Optional[int]):
    """Generator: the candidates in rule 2's order (its return value). They are grouped
    by all of the order but the id, `every` at a time (a yield after each); a group is
    sorted by id only if they did not come in id order (the core's do), so that no step
    sorts them all (100k in one group: 10-60 ms)."""
    shares, cands = inp.shares, inp.candidates
    bonus: dict = {}                    # time limit -> its bonus (few distinct limits)
    groups: dict = {}
    unsorted: set = set()
    size = every or max(len(cands), 1)
    for i in range(0, len(cands), size):
        if i:
            yield
        for c in cands[i:i + size]:
            b = bonus.get(c.time_limit)
            if b is None:
                b = bonus[c.time_limit] = time_bonus(c.time_limit)
            key = ((-c.priority, -b) if shares is None
                   else (-c.priority, shares.get(c.user, 0.0), -b))
            group = groups.get(key)
            if group is None:
                groups[key] = [c]
            else:
                if c.id < group[-1].id:
                    unsorted.add(key)
                group.append(c)
    return chain.from_iterable(sorted(groups[k], key=_ID) if k in unsorted else groups[k]
                               for k in sorted(groups))


_ID = attrgetter("id")


def plan_steps(inp: PolicyInput, every: Optional[int] = None):
    """`plan` as a generator that yields after every `every` candidates (never if None)
    and returns the Decision, so that a caller can do other work between its steps; its
    decision is the same however it is sliced."""
    decision = Decision()
    allowed_gpus = [g for g in sorted(inp.gpus, key=lambda g: g.index)
                    if inp.allowed is None or g.index in inp.allowed]
    n_allowed = len(allowed_gpus)

    # Current occupation.
    exclusive_holder: dict[int, int] = {}
    shared_used: dict[int, int] = {}
    group_running: dict[str, int] = {}
    memory_used = 0
    for o in inp.occupants:
        for g in o.gpu_ids:
            if o.shared:
                shared_used[g] = shared_used.get(g, 0) + (o.gpu_memory_mb or 0)
            else:
                exclusive_holder[g] = o.id
        if o.group_id is not None:
            group_running[o.group_id] = group_running.get(o.group_id, 0) + 1
        memory_used += o.memory_mb or 0
    ledger = _Ledger(inp, allowed_gpus)
    memfit = MemoryFit()            # --gpu-memory only where that much is free now
    quotas = None if inp.quotas is None or inp.quotas.empty else _Quotas(inp.quotas,
                                                                         inp.occupants)

    def free_gpus_for(c: Candidate) -> list[Gpu]:
        """GPUs this job could use now, reservations aside."""
        out = []
        for g in allowed_gpus:
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
            if not memfit.fits(c, g):
                continue
            out.append(g)
        return out

    never_text: dict = {}

    def never_fits(c: Candidate) -> Optional[str]:
        # Its answer depends on these three only: one text per kind of job, not per job
        # (a full pass over 100k queued jobs spent a fifth of its time formatting them).
        shape = (c.gpus, c.memory_mb,
                 c.group_id is not None and c.max_concurrent is not None
                 and c.max_concurrent <= 0)
        text = never_text.get(shape, False)
        if text is False:
            text = never_text[shape] = _never_fits(c)
        return text

    def _never_fits(c: Candidate) -> Optional[str]:
        total = len(inp.gpus)
        if c.gpus > n_allowed:
            have = (f"this machine has {total}" if n_allowed == total
                    else f"{n_allowed} of this machine's {total} are allowed")
            return f"can never run here: needs {_n_gpus(c.gpus)}; {have}"
        if (c.memory_mb is not None and inp.total_memory_mb is not None
                and c.memory_mb > inp.total_memory_mb):
            return (f"can never run here: needs {c.memory_mb} MB of memory, "
                    f"the machine has {inp.total_memory_mb} MB")
        if c.group_id is not None and c.max_concurrent is not None and c.max_concurrent <= 0:
            return "can never run: its group's limit is 0 (raise it with gctl set-limit)"
        return None

    ordered = yield from _ordered(inp, every)
    ahead = 0
    protect_gpus = False
    protect_memory = False
    left = every
    for c in ordered:
        if left is not None:
            left -= 1
            if not left:
                left = every
                yield
        status, parent = dependency_status(c, inp.dep_states)
        if held_back(c, status, parent, inp.now, decision):
            continue
        if status == "wait":
            decision.waiting[c.id] = ("WaitingForDependency", f"waiting for job {parent}")
            continue
        never = never_fits(c)
        if never:
            decision.waiting[c.id] = ("WaitingForResources", never)
            continue
        if c.group_id is not None and c.max_concurrent is not None:
            if group_running.get(c.group_id, 0) >= c.max_concurrent:
                decision.waiting[c.id] = (
                    "WaitingForResources",
                    f"group limit: {group_running.get(c.group_id, 0)} of "
                    f"{c.max_concurrent} running")
                continue
        over = quotas.blocked(c) if quotas is not None else None
        if over:
            decision.waiting[c.id] = ("Quota", over)
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
        until = INF if c.time_limit is None else inp.now + c.time_limit
        if c.gpus > 0:
            free_now = free_gpus_for(c)
            against = ledger.against(c.user, until)
            off = {i for r in against for i in r.indices}
            free = [g for g in free_now if g.index not in off] if off else list(free_now)
            if inp.shuffle is not None:
                inp.shuffle(free)
            blocker = None
            if not protect_gpus and len(free) >= c.gpus:
                blocker = ledger.short(c.user, frozenset(g.index for g in free[:c.gpus]),
                                       until, against)
            if protect_gpus or len(free) < c.gpus or blocker is not None:
                occupied = len(free_now) < c.gpus        # too few even without reservations
                # Only capacity held by jobs is kept for a starving job: a reservation ends
                # at a known time, and keeping GPUs from others would not hasten it.
                if (occupied and not protect_gpus
                        and inp.now - c.queued_since > inp.starvation_secs):
                    protect_gpus = True
                if blocker is None and against and len(free) < c.gpus:
                    blocker = next((r for r in against if set(r.indices) & {
                        g.index for g in free_now}), None) or (None if occupied else against[0])
                usable = ledger.usable(c.user, free, until, against) if against else len(free)
                if blocker is not None or (occupied and against):
                    detail = (f"waiting: {c.gpus} GPUs, {usable} free; "
                              f"{ledger.describe(blocker or against[0], hint=not occupied)}")
                elif protect_gpus and usable >= c.gpus:
                    detail = "waiting: GPUs kept for a job that has waited too long"
                else:
                    detail = f"waiting: {c.gpus} GPUs, {usable} free"
                detail += memfit.shortfall(c)
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
        ledger.hold(c.user, chosen, until)
        memfit.take(c, chosen)
        memory_used += mem_needed
        if quotas is not None:
            quotas.add(c.user, c.project, len(chosen))
        if c.group_id is not None:
            group_running[c.group_id] = group_running.get(c.group_id, 0) + 1
    decision.protecting = protect_gpus or protect_memory
    return decision
