"""Which queued jobs gflow hands to an external executor (Slurm) now: gflow's own gates only (holds, dependencies it can map, begin times, quotas), never GPUs, which the executor places."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from gflow.scheduler.policy import (Candidate, Occupant, _Quotas, dependency_status,
                                    dependency_verdict, held_back, order_key)

# A parent in one of these states is still to run (or running) in the executor: a
# dependent can be handed over with the executor's own dependency on it.
_OPEN = ("Queued", "Hold", "Running")


@dataclass
class HandoverInput:
    candidates: list                     # policy.Candidate: queued jobs not handed over yet
    dep_states: dict                     # job id -> state name, every dependency named
    executor_ids: dict                   # job id -> executor key, for jobs handed over
    occupants: list = field(default_factory=list)   # running or handed over (quotas)
    now: float = 0.0
    quotas: Optional[object] = None


@dataclass
class Handover:
    submits: list = field(default_factory=list)   # (job id, {"conds": [[cond, key]], "any"})
    cancels: list = field(default_factory=list)   # (job id, failed parent id)
    waiting: dict = field(default_factory=dict)   # job id -> (reason code, detail)
    wake_at: Optional[float] = None


def _mapped(c: Candidate, inp: HandoverInput):
    """The executor dependency for `c`, or (None, parent) while a parent it needs is not
    in the executor yet. Parents already decided are left out (satisfied) or make `c`
    wait for the verdict of dependency_status (never met)."""
    conds = c.dep_conditions or ("afterok",) * len(c.deps)
    mapped = []
    for dep, cond in zip(c.deps, conds):
        state = inp.dep_states.get(dep)
        verdict = dependency_verdict(cond, state)
        if verdict in ("ok", "never"):
            continue        # met, or (with "any") one of several: dependency_status decided
        key = inp.executor_ids.get(dep)
        if key is None or state not in _OPEN:
            return None, dep
        mapped.append([cond, key])
    return {"conds": mapped, "any": c.dep_mode_any}, None


def plan(inp: HandoverInput) -> Handover:
    out = Handover()
    quotas = (None if inp.quotas is None or inp.quotas.empty
              else _Quotas(inp.quotas, inp.occupants))
    for c in sorted(inp.candidates, key=order_key):
        status, parent = dependency_status(c, inp.dep_states)
        if held_back(c, status, parent, inp.now, out):       # policy.py, as locally
            continue
        deps, blocking = ({"conds": [], "any": False}, None) if status == "ok" \
            else _mapped(c, inp)
        if deps is None:
            out.waiting[c.id] = ("WaitingForDependency", f"waiting for job {blocking}")
            continue
        over = quotas.blocked(c) if quotas is not None else None
        if over:
            out.waiting[c.id] = ("Quota", over)
            continue
        out.submits.append((c.id, deps))
        if quotas is not None:
            quotas.add(c.user, c.project, c.gpus)
    return out


def occupant(job_id: int, user: str, project: Optional[str], gpus: int) -> Occupant:
    """A job running or handed over, as the quota count sees it."""
    return Occupant(id=job_id, user=user, gpu_ids=tuple(range(gpus)), project=project)
