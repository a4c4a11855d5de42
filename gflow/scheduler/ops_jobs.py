"""Request handlers for jobs: submit, query, update, redo, user transitions, signals, limits."""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from gflow.models import (
    ACTIVE_STATES, EMPTY_LIST, FINAL_STATES, Job, JobState, can_transition, job_from_wire,
    job_to_wire, own_dict, own_list,
)
from gflow.scheduler.reply import Reply, error

MAX_BATCH = 1000
MAX_PROJECT_LEN = 64

# Which HTTP action moves a job to which state.
ACTION_TARGET = {
    "finish": JobState.FINISHED, "fail": JobState.FAILED, "cancel": JobState.CANCELLED,
    "hold": JobState.HOLD, "release": JobState.QUEUED,
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_array(items: list[bytes]) -> bytes:
    """`[a,b,...]` from encoded JSON values with one copy of the whole: `b"[" + join + b"]"`
    made three, and each 72 MB copy (100k jobs) is fresh memory to fault in (~40 ms)."""
    if not items:
        return b"[]"
    items[0] = b"[" + items[0]
    items[-1] = items[-1] + b"]"
    return b",".join(items)


class JobOps:
    """Mixed into `SchedulerCore`: these handlers use its state (jobs, indexes, caches) and
    change it only through its `transition`, `save_*` and `emit`."""

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
        self.normalize_new(job)                 # features.py: no attempts, no suspension
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
        refused = self.check_admission([job])           # features.py: quotas, e-mail
        if refused:
            return refused
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
        refused = self.check_admission(jobs)
        if refused:
            return refused
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
        # The full listing is joined from the per-job JSON on every request, not kept:
        # kept, it was a third copy of every job (72 MB at 100k) and any change of any job
        # threw it away, so a busy daemon rebuilt it anyway (issue 21: memory).
        if not any(payload.get(k) is not None for k in
                   ("states", "users", "created_after", "ids", "limit", "offset")):
            return Reply(200, json_array([self.job_json(j) for j in self.jobs.values()]))
        jobs = self.select_jobs(states=payload.get("states"), users=payload.get("users"),
                                created_after=payload.get("created_after"),
                                ids=payload.get("ids"))
        offset = payload.get("offset") or 0
        limit = payload.get("limit")
        jobs = jobs[offset:] if limit is None else jobs[offset:offset + limit]
        return Reply(200, json_array([self.job_json(j) for j in jobs]))

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
        path, refused = self.attempt_log(job, payload.get("attempt"))   # retries.py
        if refused:
            return error(*refused)
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
        job.depends_on_ids = own_list(ids)
        job.depends_on = ids[0] if len(ids) == 1 else None
        job.dependency_mode = mode if ids else None
        job.dependency_conditions = own_dict((k, v) for k, v in job.dependency_conditions.items()
                                             if int(k) in ids)
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
        if self.external and (decoded.gpu_memory_limit_mb or decoded.is_shared) and (
                "gpu_memory_limit_mb" in present or "gpu_sharing_mode" in present):
            return self.executor_refusal([decoded])          # ops_executor.py
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
        self.pull_back_if_changed(job)       # Slurm mode: hand it over again (ops_executor)
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
            new.depends_on_ids, new.depends_on, new.dependency_mode = EMPTY_LIST, None, None
        elif overrides.get("depends_on") is not None:
            dep = overrides["depends_on"]
            if dep not in self.jobs:
                return error(400, f"Dependency job {dep} does not exist")
            new.depends_on_ids, new.depends_on, new.dependency_mode = [dep], dep, "All"
        if new.is_shared and new.gpu_memory_limit_mb is None:
            return error(400, "Shared jobs must include a GPU memory limit "
                              "(--gpu-memory / --max-gpu-mem).")
        refused = self.check_admission([new])
        if refused:
            return refused
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
            self.set_begin(job, payload.get("at"))        # gjob release --at (begin.py)
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

    # --- group limits ---------------------------------------------------------------

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


_ALLOWED_FROM = {
    "finish": "Running", "fail": "Running", "cancel": "Queued, Hold or Running",
    "hold": "Queued", "release": "Hold",
}
