"""The scheduler's state machine: the one owner and writer of jobs, reservations and the GPU view.

`SchedulerCore` has no sockets and no threads and reads time only through the `clock`
it is given, so tests drive it directly. The worker loop (`service.py`) feeds it
requests and launcher events, commits the journal once per batch (group commit), and
only then sends the replies and the launcher commands the batch produced.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from typing import Any, Callable, Optional

from gflow import __version__
from gflow.models import (
    ACTIVE_STATES, FINAL_STATES, Job, JobState, Reservation, ReservationStatus,
    can_transition, job_from_trusted_wire, job_from_wire, job_to_wire, reservation_from_wire,
    reservation_to_wire,
)
from gflow.scheduler import policy

log = logging.getLogger("gflow.scheduler")

MAX_BATCH = 1000
MAX_PROJECT_LEN = 64

# Which HTTP action moves a job to which state.
ACTION_TARGET = {
    "finish": JobState.FINISHED, "fail": JobState.FAILED, "cancel": JobState.CANCELLED,
    "hold": JobState.HOLD, "release": JobState.QUEUED,
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Reply(tuple):
    """(status, body) where body is JSON-able, raw bytes (already JSON) or None."""

    def __new__(cls, status: int, body: Any = None):
        return super().__new__(cls, (status, body))


def error(status: int, message: str, **extra) -> Reply:
    return Reply(status, {"error": message, **extra})


def _log_transition(job: Job, src: JobState, dst: JobState, now: float) -> None:
    """One key=value line per state change (info for starts and ends, debug otherwise)."""
    if dst == JobState.RUNNING:
        if log.isEnabledFor(logging.INFO):
            log.info("job %d scheduled gpus=%s user=%s", job.id,
                     ",".join(map(str, job.gpu_ids or ())) or "-", job.submitted_by)
    elif dst in FINAL_STATES:
        if log.isEnabledFor(logging.INFO):
            extra = ""
            if job.started_at is not None:
                extra += f" exit_code={job.exit_code} runtime={now - job.started_at:.1f}s"
            if job.reason_detail:
                extra += f' detail="{job.reason_detail}"'
            log.info("job %d finished state=%s%s", job.id, dst.value, extra)
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("job %d state=%s from=%s", job.id, dst.value, src.value)


class SchedulerCore:
    def __init__(self, *, store, gpu_inventory, config, paths,
                 clock: Callable[[], float] = time.time,
                 total_memory_mb: Optional[int] = None,
                 rng: Optional[random.Random] = None):
        self.store = store
        self.gpu_inventory = gpu_inventory
        self.config = config
        self.paths = paths
        self.clock = clock
        self.total_memory_mb = total_memory_mb
        self.rng = rng or random.Random()
        self.jobs: dict[int, Job] = {}
        self.reservations: dict[int, Reservation] = {}
        self.next_job_id = 1
        self.next_reservation_id = 1
        self.allowed_gpu_indices: Optional[list] = None
        self.mode = "normal"
        self.recovery: dict = {}
        # Indexes, so that passes and queries touch live jobs only.
        self.queued: set[int] = set()
        self.held: set[int] = set()
        self.running: set[int] = set()
        self.draining: set[int] = set()     # final, but the process has not exited yet
        self.by_user: dict[str, list[int]] = {}
        self.dependents: dict[int, set[int]] = {}
        self.queued_since: dict[int, float] = {}
        self.gpu_view: list = []
        self._gpus_available: set[int] = set()
        # Effects of the batch being handled; flushed by the worker after commit.
        self.launcher_outbox: list = []
        self.events: list[dict] = []
        # Payloads are built only while someone listens: webhooks are configured or the
        # API has event streams open (it says so with the "event_streams" operation).
        self.webhooks_on = False
        self.event_streams = 0
        import os
        self.host = os.environ.get("HOSTNAME") or config.daemon.host
        self.version = __version__
        self.pass_needed = False
        self._wire_cache: dict[int, bytes] = {}
        self._cand_cache: dict[int, policy.Candidate] = {}
        self._listing: Optional[bytes] = None      # GET /jobs without filters, encoded
        self._cold: set[int] = set()                # jobs whose JSON is not cached yet
        # Jobs submitted since the last pass: when nothing else changed, a pass only
        # has to place these (nothing was freed that the older queued jobs could use).
        self.new_since_pass: set[int] = set()
        self.protecting = False
        self.started_at = clock()
        self.load_note: Optional[str] = None
        self.needs_snapshot = False

    # --- loading -----------------------------------------------------------------

    def load(self) -> None:
        st = self.store.load()
        # self.jobs stays in ascending id order (ids only grow), so listings need no sort.
        for jid in sorted(st.jobs):
            job = job_from_trusted_wire(st.jobs[jid])
            self.jobs[job.id] = job
        for rid, wire in st.reservations.items():
            self.reservations[int(rid)] = reservation_from_wire(wire)
        self.next_job_id = max([st.next_job_id] + [j + 1 for j in self.jobs])
        self.next_reservation_id = max([st.next_reservation_id]
                                       + [r + 1 for r in self.reservations])
        # Precedence: `--gpus` > GFLOW_DAEMON_GPUS > config `gpus` (all three arrive as
        # config.daemon.gpus) > the last `gctl set-gpus` (persisted) > every GPU. 0.4.13
        # lets the persisted list silently win (W16).
        configured = self.config.daemon.gpus
        self.allowed_gpu_indices = (list(configured) if configured is not None
                                    else st.allowed_gpu_indices)
        self.load_note = st.replay_note
        self.needs_snapshot = st.needs_snapshot
        self.mode = st.mode
        self.recovery = {"detail": st.detail, "state_backup": st.state_backup,
                         "journal_error": st.journal_error}
        for job in self.jobs.values():
            self._index(job)
        self._cold = set(self.jobs)
        self.refresh_gpus()
        self.pass_needed = True

    def _index(self, job: Job) -> None:
        self.by_user.setdefault(job.submitted_by, []).append(job.id)
        for dep in job.all_dependencies():
            self.dependents.setdefault(dep, set()).add(job.id)
        self._set_state_index(job, None)

    def _set_state_index(self, job: Job, old: Optional[JobState]) -> None:
        for s, idx in ((JobState.QUEUED, self.queued), (JobState.HOLD, self.held),
                       (JobState.RUNNING, self.running)):
            if old == s:
                idx.discard(job.id)
        if job.state == JobState.QUEUED:
            self.queued.add(job.id)
            self.queued_since.setdefault(job.id, job.submitted_at or self.clock())
        else:
            self.queued_since.pop(job.id, None)
        if job.state == JobState.HOLD:
            self.held.add(job.id)
        elif job.state == JobState.RUNNING:
            self.running.add(job.id)

    # --- persistence helpers ----------------------------------------------------

    @property
    def writable(self) -> bool:
        return self.mode != "read_only"

    def changed(self, job_id: int) -> None:
        """Forget what was derived from a job (its JSON, its candidate, the full listing)."""
        self._wire_cache.pop(job_id, None)
        self._cold.add(job_id)
        self._cand_cache.pop(job_id, None)
        self._listing = None

    def save_job(self, job: Job) -> None:
        self.changed(job.id)
        self.store.append({"op": "job", "job": job_to_wire(job, with_env=True)})

    def save_meta(self, **meta) -> None:
        self.store.append({"op": "meta", **meta})

    def save_reservation(self, r: Reservation) -> None:
        self.store.append({"op": "reservation", "reservation": reservation_to_wire(r)})

    def snapshot_state(self):
        from gflow.store import StoreState
        return StoreState(
            jobs={j.id: job_to_wire(j, with_env=True) for j in self.jobs.values()},
            reservations={r.id: reservation_to_wire(r) for r in self.reservations.values()},
            next_job_id=self.next_job_id, next_reservation_id=self.next_reservation_id,
            allowed_gpu_indices=self.allowed_gpu_indices, mode=self.mode,
            detail=self.recovery.get("detail"), state_backup=self.recovery.get("state_backup"),
            journal_error=self.recovery.get("journal_error"))

    def emit(self, kind: str, job: Optional[Job] = None, *, reservation=None, gpu=None,
             text: Optional[str] = None) -> None:
        """Record one real change as a webhook/event-stream payload (built now, so it shows
        the job as this transition left it)."""
        if not self.events_wanted:
            return
        from gflow.notify import make_payload
        self.events.append(make_payload(kind, self.clock(), self.host, job=job,
                                        reservation=reservation, gpu=gpu, text=text))

    # --- transitions ------------------------------------------------------------

    def transition(self, job: Job, dst: JobState, *, reason: Any = None,
                   detail: Optional[str] = None) -> None:
        """The one way a job changes state: checked against the table, journalled, evented."""
        src = job.state
        if not can_transition(src, dst):
            raise ValueError(f"Job {job.id} is {src.value}: it cannot become {dst.value}")
        now = self.clock()
        job.state = dst
        if dst == JobState.RUNNING:
            job.started_at = now
        if dst in FINAL_STATES:
            job.finished_at = now
        if reason is not None or dst in (JobState.QUEUED, JobState.RUNNING):
            job.reason = reason
        job.reason_detail = detail
        if src == JobState.RUNNING and dst in FINAL_STATES:
            self.draining.add(job.id)
        self._set_state_index(job, src)
        self.save_job(job)
        self.pass_needed = True
        self.emit("job_" + _EVENT_NAME[dst], job)
        _log_transition(job, src, dst, now)

    # --- request dispatch -------------------------------------------------------

    MUTATING = frozenset({"submit", "submit_batch", "update", "transition", "set_gpus",
                          "group_limit", "redo", "reservation_create", "reservation_cancel"})

    def handle(self, op: str, payload: Any) -> Reply:
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            return error(404, f"unknown operation {op!r}")
        if op in self.MUTATING and not self.writable:
            return Reply(503, self.read_only_body())
        return handler(payload or {})

    def read_only_body(self) -> dict:
        return {"detail": self.recovery.get("detail"),
                "error": "gflowd is in read-only mode (no persistence available)",
                "hint": "Fix/upgrade the version that can migrate your state file, or "
                        "restore from the backup file. If the journal path is unwritable, "
                        "fix permissions.",
                "journal": str(self.paths.journal_file),
                "journal_error": self.recovery.get("journal_error"),
                "state_backup": self.recovery.get("state_backup")}

    @property
    def events_wanted(self) -> bool:
        return self.webhooks_on or self.event_streams > 0

    def op_event_streams(self, payload) -> Reply:
        self.event_streams = max(0, int(payload.get("count", 0)))
        return Reply(200, {"event_streams": self.event_streams})

    def op_health(self, _payload) -> Reply:
        import os
        body = {"pid": os.getppid() if self._under_master else os.getpid(), "status": "ok",
                "version": __version__, "uptime_secs": round(self.clock() - self.started_at, 3),
                "gpus": len(self.gpu_view), "gpu_source": self.gpu_inventory.source,
                "jobs": {"queued": len(self.queued), "running": len(self.running),
                         "held": len(self.held)}}
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

    # --- submission ---------------------------------------------------------------

    def _validate_new(self, payload: Any, existing_only: bool = True) -> Job:
        """Decode and check one submitted job; raises ValueError with the client message."""
        job = job_from_wire(payload)
        for dep in job.all_dependencies():
            if dep not in self.jobs:
                raise ValueError(f"Dependency job {dep} does not exist")
        project = job.project.strip() if job.project else None
        job.project = project or None
        projects = self.config.projects
        if job.project is None and projects.require_project:
            raise ValueError("Project is required by configuration. Provide --project (CLI) "
                             "or a non-empty `project` field.")
        if job.project is not None:
            if len(job.project.encode()) > MAX_PROJECT_LEN:
                raise ValueError(f"Project name too long (max {MAX_PROJECT_LEN} characters): "
                                 f"'{job.project}'")
            if projects.known_projects and job.project not in projects.known_projects:
                raise ValueError(f"Unknown project '{job.project}'. Known projects: "
                                 + ", ".join(projects.known_projects))
        if job.is_shared and job.gpu_memory_limit_mb is None:
            raise ValueError("Shared jobs must include a GPU memory limit "
                             "(--gpu-memory / --max-gpu-mem).")
        if job.script is None and job.command is None:
            raise ValueError("A job needs a `script` or a `command`.")
        return job

    def _admit(self, job: Job) -> Job:
        now = self.clock()
        job.id = self.next_job_id
        self.next_job_id += 1
        job.state = JobState.QUEUED
        job.submitted_at = now
        job.gpu_ids = job.started_at = job.finished_at = job.reason = None
        job.exit_code = None
        job.reason_detail = None
        if job.run_name is None:
            job.run_name = f"gflow-job-{job.id}"
        self.jobs[job.id] = job
        self._index(job)
        self.save_job(job)
        self.new_since_pass.add(job.id)
        self.emit("job_submitted", job)
        return job

    def op_submit(self, payload) -> Reply:
        try:
            job = self._validate_new(payload)
        except ValueError as exc:
            return error(400, str(exc))
        job = self._admit(job)
        self.save_meta(next_job_id=self.next_job_id)
        return Reply(201, {"id": job.id, "run_name": job.run_name})

    def op_submit_batch(self, payload) -> Reply:
        if not isinstance(payload, list):
            return error(400, "expected a JSON array of jobs")
        if not payload:
            return error(400, "Batch must contain at least one job")
        if len(payload) > MAX_BATCH:
            return error(413, f"Batch size exceeds maximum of {MAX_BATCH} jobs")
        try:
            jobs = [self._validate_new(p) for p in payload]
        except ValueError as exc:
            return error(400, str(exc))
        out = []
        for job in jobs:
            job = self._admit(job)
            out.append({"id": job.id, "run_name": job.run_name})
        self.save_meta(next_job_id=self.next_job_id)
        return Reply(201, out)

    # --- queries -----------------------------------------------------------------

    def job_json(self, job: Job) -> bytes:
        cached = self._wire_cache.get(job.id)
        if cached is None:
            cached = _dumps(job_to_wire(job))
            self._wire_cache[job.id] = cached
            self._cold.discard(job.id)
        return cached

    @property
    def cache_cold(self) -> bool:
        return bool(self._cold)

    def warm_cache(self, budget: int = 2000) -> int:
        """Encode up to `budget` jobs not yet in the wire cache (idle time work), so a
        large listing never pays for encoding everything at once."""
        done = 0
        while self._cold and done < budget:
            job = self.jobs.get(self._cold.pop())
            if job is not None:
                self.job_json(job)
                done += 1
        return done

    def op_get_job(self, payload) -> Reply:
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return Reply(404, None)
        if payload.get("with_env"):
            return Reply(200, job_to_wire(job, with_env=True))
        return Reply(200, self.job_json(job))

    def select_jobs(self, *, states=None, users=None, created_after=None,
                    ids=None) -> list[Job]:
        if ids is not None:
            pool = [self.jobs[i] for i in sorted(set(ids)) if i in self.jobs]
        elif states is not None and set(states) <= ACTIVE_STATES:
            live = set()
            if JobState.QUEUED in states:
                live |= self.queued
            if JobState.HOLD in states:
                live |= self.held
            if JobState.RUNNING in states:
                live |= self.running
            pool = [self.jobs[i] for i in sorted(live)]
        elif users is not None and len(users) < 4:
            pool = sorted((self.jobs[i] for u in users for i in self.by_user.get(u, ())),
                          key=lambda j: j.id)
        else:
            pool = self.jobs.values()
        out = []
        for job in pool:
            if states is not None and job.state not in states:
                continue
            if users is not None and job.submitted_by not in users:
                continue
            if created_after is not None and (job.submitted_at is None
                                              or job.submitted_at < created_after):
                continue
            out.append(job)
        return out

    def op_list_jobs(self, payload) -> Reply:
        if not any(payload.get(k) is not None for k in
                   ("states", "users", "created_after", "ids", "limit", "offset")):
            if self._listing is None:
                self._listing = b"[" + b",".join(self.job_json(j)
                                                 for j in self.jobs.values()) + b"]"
            return Reply(200, self._listing)
        jobs = self.select_jobs(states=payload.get("states"), users=payload.get("users"),
                                created_after=payload.get("created_after"),
                                ids=payload.get("ids"))
        offset = payload.get("offset") or 0
        limit = payload.get("limit")
        jobs = jobs[offset:] if limit is None else jobs[offset:offset + limit]
        return Reply(200, b"[" + b",".join(self.job_json(j) for j in jobs) + b"]")

    def op_resolve(self, payload) -> Reply:
        user = payload.get("username", "")
        text = (payload.get("shorthand") or "").strip()
        ids = self.by_user.get(user, [])
        n = None
        if text == "@":
            n = 1
        elif text.startswith("@~") and text[2:].isdigit():
            n = int(text[2:])
        if n is None or n < 1 or n > len(ids):
            return error(400, f"Cannot resolve dependency '{text}' for user '{user}'")
        return Reply(200, {"job_id": ids[len(ids) - n]})

    def op_log_path(self, payload) -> Reply:
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return Reply(404, None)
        path = self.paths.job_log(job.id)
        if not path.exists():
            return Reply(404, None)
        return Reply(200, str(path))

    # --- update and redo ------------------------------------------------------------

    def _check_cycle(self, job_id: int, deps: list[int]) -> Optional[str]:
        """A message when making `job_id` depend on `deps` would close a cycle."""
        for dep in deps:
            stack, seen = [dep], set()
            while stack:
                cur = stack.pop()
                if cur == job_id:
                    return (f"Circular dependency detected: Job {job_id} depends on Job {dep}, "
                            f"which has a path back to Job {job_id}")
                if cur in seen or cur not in self.jobs:
                    continue
                seen.add(cur)
                stack.extend(self.jobs[cur].all_dependencies())
        return None

    def _set_dependencies(self, job: Job, ids: list[int], mode: Optional[str]) -> None:
        for old in job.all_dependencies():
            self.dependents.get(old, set()).discard(job.id)
        # One dependency list (W19): the legacy field mirrors it instead of lingering.
        job.depends_on_ids = list(ids)
        job.depends_on = ids[0] if len(ids) == 1 else None
        job.dependency_mode = mode if ids else None
        for dep in ids:
            self.dependents.setdefault(dep, set()).add(job.id)

    # PATCH fields in 0.4.13's order; the clearable ones accept null (0.4.13 ignores it).
    UPDATE_FIELDS = ("command", "script", "gpus", "conda_env", "priority", "parameters",
                     "time_limit", "memory_limit_mb", "gpu_memory_limit_mb", "depends_on_ids",
                     "dependency_mode", "auto_cancel_on_dependency_failure", "max_concurrent")
    CLEARABLE = frozenset({"conda_env", "time_limit", "memory_limit_mb", "gpu_memory_limit_mb",
                           "dependency_mode", "max_concurrent"})

    def op_update(self, payload) -> Reply:
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return error(404, f"Job {payload.get('id')} not found")
        changes = payload.get("changes")
        if not isinstance(changes, dict):
            return error(400, "expected a JSON object of fields to update")
        if job.state not in (JobState.QUEUED, JobState.HOLD):
            return error(409, f"Job {job.id} is in state '{job.state.value}' and cannot be "
                              "updated. Only queued or held jobs can be updated.")
        present = {k: changes[k] for k in self.UPDATE_FIELDS if k in changes}
        for key, value in present.items():
            if value is None and key not in self.CLEARABLE:
                return error(400, f"{key}: cannot be null")
        try:
            decoded = job_from_wire({k: v for k, v in present.items() if v is not None})
        except ValueError as exc:
            return error(400, str(exc))
        if "depends_on_ids" in present:
            for dep in decoded.depends_on_ids:
                if dep not in self.jobs:
                    return error(400, f"Dependency job {dep} does not exist")
            cycle = self._check_cycle(job.id, decoded.depends_on_ids)
            if cycle:
                return error(400, cycle)
        sharing_mem = (decoded.gpu_memory_limit_mb if "gpu_memory_limit_mb" in present
                       else job.gpu_memory_limit_mb)
        if job.is_shared and sharing_mem is None:
            return error(400, "Shared jobs must keep a GPU memory limit "
                              "(--gpu-memory / --max-gpu-mem).")
        if "command" in present and "script" not in present and job.script is None \
                and decoded.command is None:
            return error(400, "A job needs a `script` or a `command`.")
        updated = []
        for key in self.UPDATE_FIELDS:
            if key not in present:
                continue
            if key == "depends_on_ids":
                mode = decoded.dependency_mode if "dependency_mode" in present \
                    else (job.dependency_mode or "All")
                self._set_dependencies(job, decoded.depends_on_ids, mode)
            elif key == "dependency_mode":
                job.dependency_mode = decoded.dependency_mode if job.depends_on_ids or \
                    job.depends_on is not None else None
            else:
                setattr(job, key, getattr(decoded, key))
            updated.append(key)
        self.save_job(job)
        self.pass_needed = True
        self.emit("job_updated", job)
        return Reply(200, {"job": dict(sorted(job_to_wire(job).items())),
                           "updated_fields": updated})

    def op_redo(self, payload) -> Reply:
        """Resubmit a finished job with its full spec, atomically (W18)."""
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return error(404, f"Job {payload.get('id')} not found.")
        if job.state not in FINAL_STATES:
            hint = ("is still running. Wait for it to finish or cancel it first."
                    if job.state == JobState.RUNNING else
                    f"is still in {job.state.value} state. Use `gjob update` to modify its "
                    "parameters.")
            return error(409, f"Job {job.id} {hint}")
        overrides = payload.get("overrides") or {}
        user = payload.get("submitted_by") or job.submitted_by
        new = self._clone_for_redo(job, user)
        try:
            over = job_from_wire({k: v for k, v in overrides.items()
                                  if k in ("gpus", "priority", "time_limit", "memory_limit_mb",
                                           "gpu_memory_limit_mb", "conda_env") and v is not None})
        except ValueError as exc:
            return error(400, str(exc))
        for key in ("gpus", "priority", "time_limit", "memory_limit_mb", "gpu_memory_limit_mb",
                    "conda_env"):
            if overrides.get(key) is not None:
                setattr(new, key, getattr(over, key))
        if overrides.get("clear_deps"):
            new.depends_on_ids, new.depends_on, new.dependency_mode = [], None, None
        elif overrides.get("depends_on") is not None:
            dep = overrides["depends_on"]
            if dep not in self.jobs:
                return error(400, f"Dependency job {dep} does not exist")
            new.depends_on_ids, new.depends_on, new.dependency_mode = [dep], dep, "All"
        if new.is_shared and new.gpu_memory_limit_mb is None:
            return error(400, "Shared jobs must include a GPU memory limit "
                              "(--gpu-memory / --max-gpu-mem).")
        new = self._admit(new)
        cascaded = []
        if payload.get("cascade"):
            mapping = {job.id: new.id}
            frontier = [job.id]
            victims = []
            while frontier:
                parent = frontier.pop(0)
                for child_id in sorted(self.dependents.get(parent, ())):
                    child = self.jobs[child_id]
                    if (child.state == JobState.CANCELLED
                            and isinstance(child.reason, dict)
                            and child.reason.get("DependencyFailed") in mapping
                            and child_id not in mapping and child_id not in victims):
                        victims.append(child_id)
                        mapping[child_id] = None
                        frontier.append(child_id)
            for child_id in sorted(victims):
                child = self.jobs[child_id]
                clone = self._clone_for_redo(child, user)
                ids = [mapping.get(d) or d for d in child.all_dependencies()]
                clone.depends_on_ids = ids
                clone.depends_on = ids[0] if len(ids) == 1 else None
                clone = self._admit(clone)
                mapping[child_id] = clone.id
                cascaded.append({"from": child_id, "id": clone.id, "run_name": clone.run_name})
        self.save_meta(next_job_id=self.next_job_id)
        return Reply(201, {"id": new.id, "run_name": new.run_name, "cascaded": cascaded})

    def _clone_for_redo(self, job: Job, user: str) -> Job:
        new = job.copy()
        new.redone_from = job.id
        new.submitted_by = user
        if job.run_name == f"gflow-job-{job.id}":
            new.run_name = None          # a default name follows the new id
        return new

    # --- transitions requested over HTTP ----------------------------------------

    def op_transition(self, payload) -> Reply:
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return Reply(404, None)
        action = payload.get("action")
        dst = ACTION_TARGET[action]
        if not can_transition(job.state, dst):
            return error(409, f"Job {job.id} is {job.state.value}: cannot {action} it "
                              f"(allowed from {_ALLOWED_FROM[action]})")
        src = job.state
        if action == "cancel":
            self.transition(job, dst, reason="CancelledByUser",
                            detail="cancelled by user")
            if src == JobState.RUNNING:
                self.stop_job(job, "SIGTERM")
            self.cascade_from(job)
        elif action == "hold":
            self.transition(job, dst, reason="JobHeldUser", detail="held by user")
        elif action == "release":
            job.reason = None
            self.queued_since[job.id] = self.clock()
            self.transition(job, dst, detail=None)
        else:  # finish / fail: 0.4.13's job wrapper reporting its own end
            self.transition(job, dst, detail=f"reported by `gcancel --{action}`")
            if dst == JobState.FAILED:
                self.cascade_from(job)
        return Reply(200, None)

    FORWARDABLE = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT",
                   "SIGCONT", "SIGSTOP", "SIGTSTP")

    def op_signal(self, payload) -> Reply:
        """Forward a signal to a running job's process group (e.g. Ctrl-C from `gjob attach`)."""
        job = self.jobs.get(payload.get("id"))
        if job is None:
            return error(404, f"Job {payload.get('id')} not found")
        name = payload.get("signal")
        if isinstance(name, str) and not name.startswith("SIG"):
            name = "SIG" + name
        if name not in self.FORWARDABLE:
            return error(400, f"signal must be one of {', '.join(self.FORWARDABLE)}")
        if job.state != JobState.RUNNING:
            return error(409, f"Job {job.id} is {job.state.value}: not running")
        self.launcher_outbox.append(("forward", job.id, name))
        return Reply(200, {"id": job.id, "signal": name})

    def stop_job(self, job: Job, signame: str) -> None:
        self.launcher_outbox.append(("signal", job.id, signame,
                                     self.config.launcher.kill_grace_secs))

    def cascade_from(self, parent: Job) -> None:
        """Cancel (or flag) queued and held dependents that can no longer run, transitively."""
        todo = [parent.id]
        while todo:
            pid = todo.pop()
            for child_id in sorted(self.dependents.get(pid, ())):
                child = self.jobs[child_id]
                if child.state not in (JobState.QUEUED, JobState.HOLD):
                    continue
                cand = self._candidate(child)
                status, bad = policy.dependency_status(cand, self._dep_states([cand]))
                if status != "never":
                    continue
                if child.auto_cancel_on_dependency_failure:
                    self.transition(child, JobState.CANCELLED,
                                    reason={"DependencyFailed": bad},
                                    detail=f"dependency job {bad} did not finish")
                    todo.append(child_id)
                else:
                    child.reason_detail = (f"dependency can never be met: job {bad} "
                                           "did not finish")
                    self.changed(child.id)

    # --- the scheduling pass -----------------------------------------------------

    def _candidate(self, job: Job) -> policy.Candidate:
        cand = self._cand_cache.get(job.id)
        if cand is None:
            cand = self._cand_cache[job.id] = self._make_candidate(job)
        return cand

    def _make_candidate(self, job: Job) -> policy.Candidate:
        return policy.Candidate(
            id=job.id, user=job.submitted_by, priority=job.priority, gpus=job.gpus,
            shared=job.is_shared, gpu_memory_mb=job.gpu_memory_limit_mb,
            memory_mb=job.memory_limit_mb, time_limit=job.time_limit,
            deps=tuple(job.all_dependencies()), dep_mode_any=job.dependency_mode == "Any",
            auto_cancel=job.auto_cancel_on_dependency_failure, group_id=job.group_id,
            max_concurrent=job.max_concurrent,
            queued_since=self.queued_since.get(job.id, job.submitted_at or 0.0))

    def _dep_states(self, cands) -> dict:
        out = {}
        for c in cands:
            for d in c.deps:
                dep = self.jobs.get(d)
                out[d] = dep.state.value if dep else "Cancelled"
        return out

    def occupants(self) -> list:
        out = []
        for jid in self.running | self.draining:
            job = self.jobs[jid]
            out.append(policy.Occupant(
                id=job.id, user=job.submitted_by, gpu_ids=tuple(job.gpu_ids or ()),
                shared=job.is_shared, gpu_memory_mb=job.gpu_memory_limit_mb,
                memory_mb=job.memory_limit_mb, group_id=job.group_id))
        return out

    def active_reservations(self) -> list:
        out = []
        now = self.clock()
        for r in self.reservations.values():
            if r.status == ReservationStatus.ACTIVE and r.start_time <= now < r.end_time:
                spec = r.gpu_spec
                out.append(policy.ActiveReservation(
                    user=r.user, count=spec.get("count", 0),
                    indices=tuple(spec.get("indices", ())), until=self.format_clock(r.end_time)))
        return out

    last_pass_secs: Optional[float] = None

    def format_clock(self, t: float) -> str:
        """HH:MM in the configured timezone (local time when none is set)."""
        from datetime import datetime
        tz = None
        if self.config.timezone:
            from zoneinfo import ZoneInfo
            tz = ZoneInfo(self.config.timezone)
        return datetime.fromtimestamp(t, tz=tz).strftime("%H:%M")

    def run_pass(self) -> policy.Decision:
        started = time.perf_counter()
        try:
            return self._run_pass()
        finally:
            self.last_pass_secs = time.perf_counter() - started

    @property
    def pass_wanted(self) -> bool:
        return self.pass_needed or bool(self.new_since_pass)

    def _run_pass(self) -> policy.Decision:
        self.update_reservations()
        full = self.pass_needed or self.protecting
        pool = self.queued if full else (self.new_since_pass & self.queued)
        self.pass_needed = False
        self.new_since_pass = set()
        cands = [self._candidate(self.jobs[i]) for i in pool]
        allowed = (None if self.allowed_gpu_indices is None
                   else frozenset(self.allowed_gpu_indices))
        shuffle = (self.rng.shuffle if self.config.daemon.gpu_allocation_strategy == "random"
                   else None)
        decision = policy.plan(policy.PolicyInput(
            candidates=cands, occupants=self.occupants(), dep_states=self._dep_states(cands),
            gpus=self.gpu_view, allowed=allowed, total_memory_mb=self.total_memory_mb,
            reservations=self.active_reservations(), now=self.clock(),
            starvation_secs=self.config.scheduler.starvation_secs, shuffle=shuffle))
        if full:
            self.protecting = decision.protecting
        for job_id, parent in decision.cancels:
            job = self.jobs[job_id]
            if job.state == JobState.QUEUED:
                self.transition(job, JobState.CANCELLED, reason={"DependencyFailed": parent},
                                detail=f"dependency job {parent} did not finish")
                self.cascade_from(job)
        for job_id, (_code, detail) in decision.waiting.items():
            job = self.jobs[job_id]
            if job.reason_detail != detail:
                job.reason_detail = detail       # ephemeral: recomputed every pass
                self.changed(job_id)
        for job_id, gpu_ids in decision.starts:
            job = self.jobs[job_id]
            job.gpu_ids = list(gpu_ids)
            self.transition(job, JobState.RUNNING)
            self.launcher_outbox.append(("start", self.launch_spec(job)))
        return decision

    def launch_spec(self, job: Job) -> dict:
        return {
            "id": job.id, "script": job.script, "command": job.command,
            "run_dir": job.run_dir, "gpu_ids": list(job.gpu_ids or ()),
            "task_id": job.task_id, "conda_env": job.conda_env, "env": job.env,
            "parameters": dict(job.parameters), "memory_limit_mb": job.memory_limit_mb,
            "run_name": job.run_name,
        }

    # --- time limits ---------------------------------------------------------------

    def next_deadline(self) -> Optional[float]:
        deadlines = [self.jobs[i].started_at + self.jobs[i].time_limit for i in self.running
                     if self.jobs[i].time_limit is not None and self.jobs[i].started_at]
        return min(deadlines) if deadlines else None

    def enforce_time_limits(self) -> None:
        now = self.clock()
        for jid in sorted(self.running):
            job = self.jobs[jid]
            if job.time_limit is None or job.started_at is None:
                continue
            if now >= job.started_at + job.time_limit:
                from gflow.parsing import format_duration
                self.transition(job, JobState.TIMEOUT,
                                detail=f"time limit {format_duration(job.time_limit)} reached")
                self.stop_job(job, "SIGINT")
                self.cascade_from(job)

    # --- launcher events ---------------------------------------------------------------

    def on_launcher_connected(self) -> None:
        """A (re)started launcher: tell it every job that should have a live process."""
        specs = [self.launch_spec(self.jobs[i]) for i in sorted(self.running | self.draining)]
        self.launcher_outbox.append(("adopt", specs))

    def on_exited(self, job_id: int, info: dict) -> None:
        job = self.jobs.get(job_id)
        self.launcher_outbox.append(("forget", job_id))
        if job is None:
            return
        code = info.get("exit_code")
        detail = info.get("detail")
        if job.state == JobState.RUNNING:
            job.exit_code = code
            if code == 0 and not detail:
                self.transition(job, JobState.FINISHED)
            else:
                self.transition(job, JobState.FAILED, detail=detail or f"exit code {code}")
                self.cascade_from(job)
        elif job.exit_code is None and job.state in FINAL_STATES:
            job.exit_code = code
            if detail and job.state != JobState.CANCELLED:
                job.reason_detail = detail
            self.save_job(job)
        self.draining.discard(job_id)    # the process is gone: its GPUs and memory are free
        self.pass_needed = True
        self.refresh_gpus()

    # --- GPUs ------------------------------------------------------------------------

    def refresh_gpus(self) -> None:
        held = set()
        for jid in self.running | self.draining:
            held.update(self.jobs[jid].gpu_ids or ())
        view = []
        for g in self.gpu_inventory.poll():
            foreign = bool(g.error) or (bool(g.process_pids) and g.index not in held)
            view.append(policy.Gpu(index=g.index, memory_mb=g.memory_total_mb, foreign=foreign))
        if [(g.index, g.foreign) for g in view] != [(g.index, g.foreign) for g in self.gpu_view]:
            self.pass_needed = True
        self.gpu_view = view
        available = {g.index for g in view if not g.foreign and g.index not in held}
        for index in sorted(available - self._gpus_available):
            self.emit("gpu_available", gpu={"index": index, "available": True})
        self._gpus_available = available

    def op_info(self, _payload) -> Reply:
        held_excl, held_shared = set(), set()
        for jid in self.running | self.draining:
            job = self.jobs[jid]
            (held_shared if job.is_shared else held_excl).update(job.gpu_ids or ())
        gpus = []
        uuids = {g.index: g.uuid for g in self.gpu_inventory.poll()}
        for g in self.gpu_view:
            entry = {"uuid": uuids.get(g.index, f"GPU-{g.index}"), "index": g.index}
            if g.index in held_excl:
                entry["available"] = False
            elif g.index in held_shared:
                entry["available"] = True
            else:
                entry["available"] = not g.foreign
                if g.foreign:
                    entry["reason"] = "Unmanaged"
            gpus.append(entry)
        return Reply(200, {"gpus": gpus, "allowed_gpu_indices": self.allowed_gpu_indices,
                           "gpu_allocation_strategy":
                               self.config.daemon.gpu_allocation_strategy})

    def op_set_gpus(self, payload) -> Reply:
        indices = payload.get("allowed_indices")
        n = len(self.gpu_view)
        if indices is not None:
            if not isinstance(indices, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
                return error(400, "allowed_indices must be a list of GPU indices or null")
            bad = [i for i in indices if i >= n]
            if bad:
                return error(400, f"Invalid GPU indices [{', '.join(map(str, bad))}] "
                                  f"(only {n} GPUs detected)")
        self.allowed_gpu_indices = indices
        self.save_meta(allowed_gpu_indices=indices)
        self.pass_needed = True
        return Reply(200, {"allowed_gpu_indices": indices})

    def op_group_limit(self, payload) -> Reply:
        gid = payload.get("group_id")
        try:
            gid = str(uuid.UUID(gid))
        except (ValueError, TypeError, AttributeError):
            return error(400, f"Invalid UUID format: '{payload.get('group_id')}'")
        limit = payload.get("max_concurrent")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            return error(400, "max_concurrent must be a non-negative integer")
        members = [j for j in self.jobs.values() if j.group_id == gid]
        if not members:
            return error(404, f"No jobs found with group_id '{gid}'")
        for job in members:
            job.max_concurrent = limit
            self.save_job(job)
        self.pass_needed = True
        return Reply(200, {"group_id": gid, "max_concurrent": limit,
                           "updated_jobs": len(members)})


    # --- reservations --------------------------------------------------------------

    def update_reservations(self) -> bool:
        """Move reservations along the clock; True if any status changed."""
        from gflow.reservations import status_at
        now = self.clock()
        changed = False
        for r in self.reservations.values():
            new = status_at(r, now)
            if new != r.status:
                r.status = new
                self.save_reservation(r)
                changed = True
        if changed:
            self.pass_needed = True
        return changed

    def op_reservation_create(self, payload) -> Reply:
        from gflow.models import time_from_wire
        from gflow.reservations import ReservationError, validate_new
        try:
            start = time_from_wire(payload.get("start_time"), "start_time")
            duration = payload.get("duration_secs")
            if start is None:
                raise ValueError("missing field `start_time`")
            if isinstance(duration, bool) or not isinstance(duration, int):
                raise ValueError("duration_secs: expected an integer number of seconds")
            count, indices = payload.get("gpu_count"), payload.get("gpu_indices")
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                      or count < 0):
                raise ValueError("gpu_count: expected a non-negative integer")
            if indices is not None and (not isinstance(indices, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)):
                raise ValueError("gpu_indices: expected a list of GPU indices")
            self.update_reservations()
            spec = validate_new(user=payload.get("user"), gpu_count=count, gpu_indices=indices,
                                start=start, duration=float(duration), now=self.clock(),
                                total_gpus=len(self.gpu_view),
                                existing=self.reservations.values())
        except (ReservationError, ValueError) as exc:
            return error(400, str(exc))
        r = Reservation(id=self.next_reservation_id, user=payload["user"].strip(),
                        gpu_spec=spec, start_time=start, duration=float(duration),
                        created_at=self.clock())
        self.next_reservation_id += 1
        self.reservations[r.id] = r
        self.save_reservation(r)
        self.save_meta(next_reservation_id=self.next_reservation_id)
        self.update_reservations()
        self.emit("reservation_created", reservation=r)
        return Reply(200, {"reservation_id": r.id})

    def op_reservation_list(self, payload) -> Reply:
        self.update_reservations()
        now = self.clock()
        out = []
        for r in sorted(self.reservations.values(), key=lambda r: (r.start_time, r.id)):
            if payload.get("user") is not None and r.user != payload["user"]:
                continue
            if payload.get("status") is not None and r.status.value.lower() != payload["status"]:
                continue
            if payload.get("active_only") and not (r.status != ReservationStatus.CANCELLED
                                                   and r.start_time <= now < r.end_time):
                continue
            out.append(reservation_to_wire(r))
        return Reply(200, out)

    def op_reservation_get(self, payload) -> Reply:
        self.update_reservations()
        r = self.reservations.get(payload.get("id"))
        if r is None:
            return error(404, f"Reservation {payload.get('id')} not found")
        return Reply(200, reservation_to_wire(r))

    def op_reservation_cancel(self, payload) -> Reply:
        self.update_reservations()
        r = self.reservations.get(payload.get("id"))
        if r is None:
            return error(404, f"Reservation {payload.get('id')} not found")
        if r.status == ReservationStatus.CANCELLED:
            return error(409, "Reservation already cancelled")
        if r.status == ReservationStatus.COMPLETED:
            return error(409, "Cannot cancel completed reservation")
        r.status = ReservationStatus.CANCELLED
        r.cancelled_at = self.clock()
        self.save_reservation(r)
        self.pass_needed = True
        self.emit("reservation_cancelled", reservation=r)
        return Reply(200, None)

    def next_reservation_boundary(self) -> Optional[float]:
        from gflow.reservations import next_boundary
        return next_boundary(self.reservations.values(), self.clock())

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


_EVENT_NAME = {
    JobState.QUEUED: "released", JobState.HOLD: "held", JobState.RUNNING: "started",
    JobState.FINISHED: "completed", JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled", JobState.TIMEOUT: "timeout",
}
_ALLOWED_FROM = {
    "finish": "Running", "fail": "Running", "cancel": "Queued, Hold or Running",
    "hold": "Queued", "release": "Hold",
}
