"""Jobs, reservations, their states and allowed transitions, and their 0.4.13 wire encoding."""

from __future__ import annotations

import enum
import math
import operator
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Optional


class JobState(str, enum.Enum):
    QUEUED = "Queued"
    HOLD = "Hold"
    RUNNING = "Running"
    FINISHED = "Finished"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMEOUT = "Timeout"

    @property
    def short(self) -> str:
        return _SHORT[self]

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @classmethod
    def parse(cls, text: str) -> "JobState":
        """Long or short form, exact case as 0.4.13 accepts (`Queued`, `PD`, `pd`)."""
        try:
            return _PARSE[text]
        except KeyError:
            raise ValueError(f"unknown job state {text!r}") from None


_SHORT = {
    JobState.QUEUED: "PD", JobState.HOLD: "H", JobState.RUNNING: "R",
    JobState.FINISHED: "CD", JobState.FAILED: "F", JobState.CANCELLED: "CA",
    JobState.TIMEOUT: "TO",
}
_PARSE: dict[str, JobState] = {}
for _s, _code in _SHORT.items():
    _PARSE[_s.value] = _s
    _PARSE[_code] = _s
    _PARSE[_code.lower()] = _s

ORDERED_STATES = list(JobState)  # enum order is 0.4.13's order (gqueue -r state)
FINAL_STATES = frozenset({JobState.FINISHED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.HOLD, JobState.RUNNING})

# The allowed-transitions table (spec/scheduler.md §2.3); everything else is refused.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.HOLD, JobState.CANCELLED}),
    JobState.HOLD: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.FINISHED, JobState.FAILED, JobState.CANCELLED,
                                 JobState.TIMEOUT}),
    JobState.FINISHED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMEOUT: frozenset(),
}


def can_transition(src: JobState, dst: JobState) -> bool:
    return dst in ALLOWED_TRANSITIONS[src]


class ReservationStatus(str, enum.Enum):
    PENDING = "Pending"
    ACTIVE = "Active"
    COMPLETED = "Completed"
    CANCELLED = "Cancelled"


# --- primitive wire encodings -------------------------------------------------------

def time_to_wire(t: Optional[float]) -> Optional[dict]:
    if t is None:
        return None
    secs = math.floor(t)
    nanos = min(int(round((t - secs) * 1e9)), 999_999_999)
    return {"secs_since_epoch": secs, "nanos_since_epoch": nanos}


def duration_to_wire(d: Optional[float]) -> Optional[dict]:
    if d is None:
        return None
    secs = math.floor(d)
    return {"secs": secs, "nanos": min(int(round((d - secs) * 1e9)), 999_999_999)}


def _uint(value: Any, name: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > maximum:
        raise ValueError(f"{name}: expected an integer in 0..={maximum}, got {value!r}")
    return value


def _pair(value: Any, name: str, k_secs: str, k_nanos: str) -> float:
    if isinstance(value, list) and len(value) == 2:
        secs, nanos = value
    elif isinstance(value, dict):
        for key in (k_secs, k_nanos):
            if key not in value:
                raise ValueError(f"{name}: missing field `{key}`")
        secs, nanos = value[k_secs], value[k_nanos]
    else:
        raise ValueError(f"{name}: expected {{{k_secs!r}, {k_nanos!r}}}, got {value!r}")
    return _uint(secs, name, 2**64 - 1) + _uint(nanos, name, 999_999_999) / 1e9


def time_from_wire(value: Any, name: str = "time") -> Optional[float]:
    if value is None:
        return None
    return _pair(value, name, "secs_since_epoch", "nanos_since_epoch")


def duration_from_wire(value: Any, name: str = "duration") -> Optional[float]:
    if value is None:
        return None
    return _pair(value, name, "secs", "nanos")


def reason_is_valid(reason: Any) -> bool:
    """True for the JobStateReason encodings 0.4.13's clients accept."""
    if reason is None:
        return True
    if isinstance(reason, str):
        return reason in ("CancelledByUser", "JobHeldUser", "WaitingForDependency",
                          "WaitingForResources")
    if isinstance(reason, dict) and len(reason) == 1:
        (key, val), = reason.items()
        if key == "DependencyFailed":
            return isinstance(val, int) and not isinstance(val, bool) and val >= 0
        if key == "SystemError":
            return isinstance(val, str)
    return False


def reason_display(reason: Any) -> Optional[str]:
    """0.4.13's Display form: `CancelledByUser`, `DependencyFailed:5`, `Resources`."""
    if reason is None:
        return None
    if isinstance(reason, str):
        return {"WaitingForDependency": "Dependency", "WaitingForResources": "Resources"}.get(
            reason, reason)
    (key, val), = reason.items()
    return f"{key}:{val}"


# --- the Job -------------------------------------------------------------------------

# Most jobs have no dependencies, parameters, attempts or conditions: one shared empty
# list or dict stands for all of theirs (at 100k jobs, four new empties each took ~24 MB).
# Code gives a job a new container instead of changing its own (`job.attempts =
# [*job.attempts, record]`); these refuse to change, so a missed place fails loudly
# instead of changing every job at once.


def _refuse(self, *args, **kwargs):
    raise TypeError("a job's shared empty value cannot change: assign a new one")


class _EmptyList(list):
    __slots__ = ()
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self):
        return "EMPTY_LIST"         # pickle and copy give back the shared one


class _EmptyDict(dict):
    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return "EMPTY_DICT"


EMPTY_LIST: list = _EmptyList()
EMPTY_DICT: dict = _EmptyDict()


def own_list(items) -> list:
    """A job's list field holding `items`: the shared empty one when there are none."""
    return list(items) or EMPTY_LIST


def own_dict(items) -> dict:
    """A job's dict field holding `items` (a mapping or pairs): the shared empty one when
    there are none."""
    return dict(items) or EMPTY_DICT


@dataclass(slots=True)
class Job:
    """One job: 0.4.13's thirty wire fields in wire order, then our additions."""

    id: int = 0
    script: Optional[str] = None
    command: Optional[str] = None
    gpus: int = 0
    conda_env: Optional[str] = None
    run_dir: str = "."
    priority: int = 10
    depends_on: Optional[int] = None
    depends_on_ids: list = field(default_factory=lambda: EMPTY_LIST)
    dependency_mode: Optional[str] = None          # "All" | "Any" | None (= All)
    auto_cancel_on_dependency_failure: bool = False
    task_id: Optional[int] = None
    gpu_sharing_mode: str = "Exclusive"             # "Exclusive" | "Shared"
    gpu_memory_limit_mb: Optional[int] = None
    time_limit: Optional[float] = None              # seconds
    memory_limit_mb: Optional[int] = None
    submitted_by: str = "unknown"
    redone_from: Optional[int] = None
    auto_close_tmux: bool = False
    parameters: dict = field(default_factory=lambda: EMPTY_DICT)
    group_id: Optional[str] = None
    max_concurrent: Optional[int] = None
    run_name: Optional[str] = None
    project: Optional[str] = None
    state: JobState = JobState.QUEUED
    gpu_ids: Optional[list] = None
    submitted_at: Optional[float] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    reason: Any = None
    # Our additions (DESIGN.md §2b): extra keys 0.4.13's clients ignore.
    exit_code: Optional[int] = None
    reason_detail: Optional[str] = None
    env: Optional[dict] = None
    umask: Optional[int] = None                     # the submitter's; None = 022
    # Issue 17 (see gflow/scheduler/features.py): also extra keys.
    scheduled_at: Optional[float] = None            # gbatch --begin: not to start before
    max_retries: Optional[int] = None               # gbatch --max-retries: failed re-runs
    attempts: list = field(default_factory=lambda: EMPTY_LIST)  # earlier runs' wire dicts
    dependency_conditions: dict = field(default_factory=lambda: EMPTY_DICT)  # "id" -> condition
    suspended_at: Optional[float] = None            # gjob suspend: SIGSTOPped since
    pending_reason: Optional[str] = None            # BeginTime | Quota while queued (display)
    notify: Optional[dict] = None                   # --notify-email: {"email": [..], "on": [..]}
    # Issue 18 (gflow/scheduler/ops_gpu_insight.py): sampled GPU use while it ran,
    # {"peak_memory_mb", "mean_util_percent", "samples"}; None until first sampled.
    gpu_usage: Optional[dict] = None
    # Issue 20 (an external executor, gflow/launcher/slurm): the executor's own id of the
    # job ("123", or "120_4" for an array task); None while gflow has not handed it over.
    executor_id: Optional[str] = None

    def all_dependencies(self) -> list[int]:
        """`depends_on_ids` plus the legacy `depends_on` when it is not already listed."""
        deps = list(self.depends_on_ids)
        if self.depends_on is not None and self.depends_on not in deps:
            deps.append(self.depends_on)
        return deps

    @property
    def is_shared(self) -> bool:
        return self.gpu_sharing_mode == "Shared"

    def copy(self) -> "Job":
        clone = Job(**{f.name: getattr(self, f.name) for f in fields(Job)})
        clone.depends_on_ids = own_list(self.depends_on_ids)
        clone.parameters = own_dict(self.parameters)
        clone.gpu_ids = None if self.gpu_ids is None else list(self.gpu_ids)
        clone.env = None if self.env is None else dict(self.env)
        clone.attempts = own_list(self.attempts)
        clone.dependency_conditions = own_dict(self.dependency_conditions)
        return clone


WIRE_KEYS = (
    "id", "script", "command", "gpus", "conda_env", "run_dir", "priority", "depends_on",
    "depends_on_ids", "dependency_mode", "auto_cancel_on_dependency_failure", "task_id",
    "gpu_sharing_mode", "gpu_memory_limit_mb", "time_limit", "memory_limit_mb",
    "submitted_by", "redone_from", "auto_close_tmux", "parameters", "group_id",
    "max_concurrent", "run_name", "project", "state", "gpu_ids", "submitted_at",
    "started_at", "finished_at", "reason",
)
EXTRA_KEYS = ("exit_code", "reason_detail", "scheduled_at", "max_retries", "attempts",
              "dependency_conditions", "suspended_at", "pending_reason", "gpu_usage", "executor_id")
_TIME_KEYS = ("submitted_at", "started_at", "finished_at")


def job_to_wire(job: Job, *, with_env: bool = False) -> dict:
    """The Job JSON of spec/api.md §3 (all 30 keys, in order) plus our extra keys.

    `env` is only included on request: it can be kilobytes per job and has no place in
    job listings.
    """
    out = {
        "id": job.id, "script": job.script, "command": job.command, "gpus": job.gpus,
        "conda_env": job.conda_env, "run_dir": job.run_dir, "priority": job.priority,
        "depends_on": job.depends_on, "depends_on_ids": list(job.depends_on_ids),
        "dependency_mode": job.dependency_mode,
        "auto_cancel_on_dependency_failure": job.auto_cancel_on_dependency_failure,
        "task_id": job.task_id, "gpu_sharing_mode": job.gpu_sharing_mode,
        "gpu_memory_limit_mb": job.gpu_memory_limit_mb,
        "time_limit": duration_to_wire(job.time_limit),
        "memory_limit_mb": job.memory_limit_mb, "submitted_by": job.submitted_by,
        "redone_from": job.redone_from, "auto_close_tmux": job.auto_close_tmux,
        "parameters": dict(job.parameters), "group_id": job.group_id,
        "max_concurrent": job.max_concurrent, "run_name": job.run_name,
        "project": job.project, "state": job.state.value,
        "gpu_ids": None if job.gpu_ids is None else list(job.gpu_ids),
        "submitted_at": time_to_wire(job.submitted_at),
        "started_at": time_to_wire(job.started_at),
        "finished_at": time_to_wire(job.finished_at),
        "reason": job.reason,
        "exit_code": job.exit_code, "reason_detail": job.reason_detail,
        "gpu_usage": None if job.gpu_usage is None else dict(job.gpu_usage),
    }
    # Issue 17's keys (scheduler/features.py) only where they hold something, so that a
    # listing of 100k jobs stays the size it was; the full record (with_env: what the
    # store keeps) has them all.
    extra = {"scheduled_at": time_to_wire(job.scheduled_at), "max_retries": job.max_retries,
             "attempts": list(job.attempts),
             "dependency_conditions": dict(job.dependency_conditions),
             "suspended_at": time_to_wire(job.suspended_at),
             "pending_reason": job.pending_reason, "executor_id": job.executor_id}
    out.update(extra if with_env else {k: v for k, v in extra.items() if v})
    if with_env:
        out["env"] = job.env
        out["umask"] = job.umask
        out["notify"] = job.notify      # addresses: the owner's business, as the env
    return out


_U32 = 2**32 - 1
_U64 = 2**64 - 1


def _str(name):
    def check(v):
        if not isinstance(v, str):
            raise ValueError(f"{name}: expected a string, got {v!r}")
        return v
    return check


def _bool(name):
    def check(v):
        if not isinstance(v, bool):
            raise ValueError(f"{name}: expected a boolean, got {v!r}")
        return v
    return check


def _u(name, maximum):
    return lambda v: _uint(v, name, maximum)


def _u32_list(name):
    def check(v):
        if not isinstance(v, list):
            raise ValueError(f"{name}: expected a list of job ids, got {v!r}")
        return [_uint(x, name, _U32) for x in v]
    return check


def _enum(name, allowed):
    def check(v):
        if v not in allowed:
            raise ValueError(f"{name}: unknown variant {v!r}, expected one of "
                             + ", ".join(f"`{a}`" for a in allowed))
        return v
    return check


def _params(v):
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in v.items()):
        raise ValueError(f"parameters: expected a map of strings to strings, got {v!r}")
    return dict(v)


def _uuid(v):
    import uuid as _uuid_mod  # only needed when a group id arrives
    if not isinstance(v, str):
        raise ValueError(f"group_id: expected a UUID string, got {v!r}")
    try:
        return str(_uuid_mod.UUID(v))
    except ValueError:
        raise ValueError(f"group_id: Invalid UUID string: {v}") from None


def _reason(v):
    if not reason_is_valid(v):
        raise ValueError(f"reason: unknown variant {v!r}")
    return v


def _env(v):
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in v.items()):
        raise ValueError("env: expected a map of strings to strings")
    return dict(v)


def _attempts(v):
    if not isinstance(v, list) or not all(isinstance(a, dict) for a in v):
        raise ValueError("attempts: expected a list of attempt records")
    return [dict(a) for a in v]


DEPENDENCY_CONDITIONS = ("afterok", "afterany", "afternotok")


def _conditions(v):
    if not isinstance(v, dict) or not all(
            isinstance(k, str) and k.isdigit() and x in DEPENDENCY_CONDITIONS
            for k, x in v.items()):
        raise ValueError("dependency_conditions: expected a map of job ids to afterok, "
                         "afterany or afternotok")
    return {str(int(k)): x for k, x in v.items()}


def _gpu_usage(v):
    if not isinstance(v, dict) or not all(
            isinstance(k, str) and (x is None or (isinstance(x, (int, float))
                                                  and not isinstance(x, bool)))
            for k, x in v.items()):
        raise ValueError("gpu_usage: expected a map of names to numbers")
    return dict(v)


# What a job's own e-mail (`gbatch --notify-on`) may be about.
NOTIFY_EVENTS = ("job_submitted", "job_started", "job_completed", "job_failed",
                 "job_cancelled", "job_timeout", "job_held", "job_released", "job_retrying",
                 "job_suspended", "job_resumed")


def _notify(v):
    import re
    if not isinstance(v, dict) or set(v) - {"email", "on"}:
        raise ValueError('notify: expected {"email": [addresses], "on": [events]}')
    emails, on = v.get("email") or [], v.get("on") or []
    if (not isinstance(emails, list) or not 0 < len(emails) <= 10 or not all(
            isinstance(a, str) and re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+", a) for a in emails)):
        raise ValueError("notify.email: expected 1 to 10 e-mail addresses")
    if not isinstance(on, list) or not all(e in NOTIFY_EVENTS for e in on):
        raise ValueError("notify.on: expected events among " + ", ".join(NOTIFY_EVENTS))
    return {"email": list(emails), "on": list(on)}


_STATE_BY_VALUE = {s.value: s for s in JobState}

# name -> (checker, allows null). Non-Option fields reject null as 0.4.13 does (422).
_FIELD_CHECKS = {
    "id": (_u("id", _U32), False),
    "script": (_str("script"), True),
    "command": (_str("command"), True),
    "gpus": (_u("gpus", _U32), False),
    "conda_env": (_str("conda_env"), True),
    "run_dir": (_str("run_dir"), False),
    "priority": (_u("priority", 255), False),
    "depends_on": (_u("depends_on", _U32), True),
    "depends_on_ids": (_u32_list("depends_on_ids"), False),
    "dependency_mode": (_enum("dependency_mode", ("All", "Any")), True),
    "auto_cancel_on_dependency_failure": (_bool("auto_cancel_on_dependency_failure"), False),
    "task_id": (_u("task_id", _U32), True),
    "gpu_sharing_mode": (_enum("gpu_sharing_mode", ("Exclusive", "Shared")), False),
    "gpu_memory_limit_mb": (_u("gpu_memory_limit_mb", _U64), True),
    "time_limit": (lambda v: duration_from_wire(v, "time_limit"), True),
    "memory_limit_mb": (_u("memory_limit_mb", _U64), True),
    "submitted_by": (_str("submitted_by"), False),
    "redone_from": (_u("redone_from", _U32), True),
    "auto_close_tmux": (_bool("auto_close_tmux"), False),
    "parameters": (_params, False),
    "group_id": (_uuid, True),
    "max_concurrent": (_u("max_concurrent", _U64), True),
    "run_name": (_str("run_name"), True),
    "project": (_str("project"), True),
    "state": (lambda v: _STATE_BY_VALUE.get(v) if isinstance(v, str) and v in _STATE_BY_VALUE
              else JobState(_enum("state", list(_STATE_BY_VALUE))(v)), False),
    "gpu_ids": (_u32_list("gpu_ids"), True),
    "submitted_at": (lambda v: time_from_wire(v, "submitted_at"), True),
    "started_at": (lambda v: time_from_wire(v, "started_at"), True),
    "finished_at": (lambda v: time_from_wire(v, "finished_at"), True),
    "reason": (_reason, True),
    "exit_code": (lambda v: v if isinstance(v, int) and not isinstance(v, bool)
                  else _str("exit_code")(v), True),
    "reason_detail": (_str("reason_detail"), True),
    "env": (_env, True),
    "umask": (_u("umask", 0o777), True),
    "scheduled_at": (lambda v: time_from_wire(v, "scheduled_at"), True),
    "max_retries": (_u("max_retries", 255), True),
    "attempts": (_attempts, False),
    "dependency_conditions": (_conditions, False),
    "suspended_at": (lambda v: time_from_wire(v, "suspended_at"), True),
    "pending_reason": (_str("pending_reason"), True),
    "notify": (lambda v: _notify(v), True),
    "gpu_usage": (lambda v: _gpu_usage(v), True),
    "executor_id": (_str("executor_id"), True),
}


def job_from_wire(data: Any) -> Job:
    """Decode a Job JSON/msgpack map tolerantly (missing keys take defaults).

    Raises ValueError naming the field when a present key has the wrong type, as
    0.4.13 answers 422 for those.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a job object, got {type(data).__name__}")
    kwargs = {}
    for name, (check, nullable) in _FIELD_CHECKS.items():
        if name not in data:
            continue
        value = data[name]
        if value is None:
            if not nullable:
                raise ValueError(f"{name}: invalid type: null")
            kwargs[name] = None
        else:
            kwargs[name] = check(value)
    job = Job(**kwargs)
    share_strings(job)
    return job


_JOB_FIELDS = frozenset(f.name for f in fields(Job))


def _pair_fast(v):
    if v is None:
        return None
    if isinstance(v, list):
        return v[0] + v[1] / 1e9
    return (v.get("secs_since_epoch", v.get("secs", 0))
            + v.get("nanos_since_epoch", v.get("nanos", 0)) / 1e9)


def job_from_trusted_wire(data: dict) -> Job:
    """Decode a job map that `job_from_wire` already checked (the store normalises every
    record on load), without checking it again: loading 100k jobs twice as fast."""
    try:
        job = Job(*_ALL_FIELDS(data))       # positional: a third of the keyword call
    except KeyError:                        # not a full record: defaults for the rest
        job = Job(**{k: v for k, v in data.items() if k in _JOB_FIELDS})
    job.state = _STATE_BY_VALUE[data.get("state", "Queued")]
    if job.time_limit is not None:
        job.time_limit = _pair_fast(job.time_limit)
    if job.submitted_at is not None:
        job.submitted_at = _pair_fast(job.submitted_at)
    if job.started_at is not None:
        job.started_at = _pair_fast(job.started_at)
    if job.finished_at is not None:
        job.finished_at = _pair_fast(job.finished_at)
    if job.scheduled_at is not None:
        job.scheduled_at = _pair_fast(job.scheduled_at)
    if job.suspended_at is not None:
        job.suspended_at = _pair_fast(job.suspended_at)
    share_strings(job)
    return job


_ALL_FIELDS = operator.itemgetter(*(f.name for f in fields(Job)))

# One copy of each text that many jobs repeat (command, run dir, user, sharing mode, a
# waiting reason's detail...): at 100k jobs, a copy per job took ~30 MB. sys.intern keeps
# a text only while something uses it.


def shared_str(text):
    """The one kept copy of `text` (anything but a str as it is)."""
    return sys.intern(text) if type(text) is str else text


def share_strings(job: Job) -> None:
    """Replace the job's often repeated texts by their kept copies (see shared_str), and
    its empty lists and dicts by the shared ones (EMPTY_LIST, EMPTY_DICT)."""
    intern = sys.intern
    if not job.depends_on_ids:
        job.depends_on_ids = EMPTY_LIST
    if not job.parameters:
        job.parameters = EMPTY_DICT
    if not job.attempts:
        job.attempts = EMPTY_LIST
    if not job.dependency_conditions:
        job.dependency_conditions = EMPTY_DICT
    if type(job.command) is str:
        job.command = intern(job.command)
    if type(job.run_dir) is str:
        job.run_dir = intern(job.run_dir)
    if type(job.submitted_by) is str:
        job.submitted_by = intern(job.submitted_by)
    if type(job.gpu_sharing_mode) is str:
        job.gpu_sharing_mode = intern(job.gpu_sharing_mode)
    if type(job.conda_env) is str:
        job.conda_env = intern(job.conda_env)
    if type(job.project) is str:
        job.project = intern(job.project)
    if type(job.reason_detail) is str:
        job.reason_detail = intern(job.reason_detail)


# --- reservations --------------------------------------------------------------------

@dataclass(slots=True)
class Reservation:
    id: int
    user: str
    gpu_spec: dict                  # {"count": n} or {"indices": [..]}
    start_time: float
    duration: float                 # seconds
    status: ReservationStatus = ReservationStatus.PENDING
    created_at: float = 0.0
    cancelled_at: Optional[float] = None

    @property
    def end_time(self) -> float:
        return self.start_time + self.duration


def reservation_to_wire(r: Reservation) -> dict:
    return {
        "id": r.id, "user": r.user, "gpu_spec": r.gpu_spec,
        "start_time": time_to_wire(r.start_time), "duration": duration_to_wire(r.duration),
        "status": r.status.value, "created_at": time_to_wire(r.created_at),
        "cancelled_at": time_to_wire(r.cancelled_at),
    }


def reservation_from_wire(d: dict) -> Reservation:
    return Reservation(
        id=d["id"], user=d["user"], gpu_spec=dict(d["gpu_spec"]),
        start_time=time_from_wire(d["start_time"], "start_time"),
        duration=duration_from_wire(d["duration"], "duration"),
        status=ReservationStatus(d["status"]),
        created_at=time_from_wire(d["created_at"], "created_at"),
        cancelled_at=time_from_wire(d.get("cancelled_at"), "cancelled_at"),
    )
