"""The scheduler's state machine: the one owner and writer of jobs, reservations and the GPU view.

`SchedulerCore` has no sockets and no threads and reads time only through the `clock`
it is given, so tests drive it directly. The worker loop (`service.py`) feeds it
requests and launcher events, commits the journal once per batch (group commit), and
only then sends the replies and the launcher commands the batch produced.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from typing import Any, Callable, Optional

from gflow import __version__
from gflow.models import (
    FINAL_STATES, Job, JobState, Reservation, can_transition,
    job_from_trusted_wire, job_to_wire, reservation_from_wire, reservation_to_wire,
)
from gflow.identity import Caller
from gflow.scheduler import features, policy
from gflow.scheduler.guard import AccessGuard, Refused, default_access
from gflow.scheduler.ops_gpus import GpuOps
from gflow.scheduler import ops_gpu_insight
from gflow.scheduler.ops_gpu_insight import GpuInsightOps
from gflow.scheduler.ops_jobs import ACTION_TARGET, MAX_BATCH, MAX_PROJECT_LEN, JobOps
from gflow.scheduler.ops_executor import ExecutorOps
from gflow.scheduler.ops_reservations import ReservationOps
from gflow.scheduler.ops_status import StatusOps
from gflow.scheduler.passes import PassOps
from gflow.scheduler.reply import Reply, error

# Names that lived here before the request handlers moved out; callers still import them
# from gflow.scheduler.core.
__all__ = ["ACTION_TARGET", "MAX_BATCH", "MAX_PROJECT_LEN", "Reply", "SchedulerCore", "error"]

log = logging.getLogger("gflow.scheduler")


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


class SchedulerCore(AccessGuard, features.FeatureOps, JobOps, ReservationOps, GpuOps,
                    GpuInsightOps, StatusOps, ExecutorOps, PassOps):
    """State, transitions, dispatch and the scheduling pass; the request handlers (`op_*`)
    come from the ops mixins, one module per resource, behind the access guard."""

    def __init__(self, *, store, gpu_inventory, config, paths,
                 clock: Callable[[], float] = time.time,
                 total_memory_mb: Optional[int] = None,
                 rng: Optional[random.Random] = None, access=None):
        self.store = store
        self.gpu_inventory = gpu_inventory
        self.config = config
        self.paths = paths
        self.clock = clock
        self.total_memory_mb = total_memory_mb
        self.rng = rng or random.Random()
        self.access = access or default_access(config.security)
        self.jobs: dict[int, Job] = {}
        self.reservations: dict[int, Reservation] = {}
        self.next_job_id = 1
        self.next_reservation_id = 1
        self.allowed_gpu_indices: Optional[list] = None
        self.set_gpus_indices: Optional[list] = None   # the last `gctl set-gpus`: persisted
        self.allowed_gpu_source = "default"
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
        # Slurm mode (ops_executor.py): jobs sent to the executor and not yet acknowledged
        # (id -> spec), jobs it refused (id -> (what was asked, why not)), and what each
        # handed-over job asked (a gjob update that changes it hands it over again).
        self._handing: dict = {}
        self._refused: dict = {}
        self._asked_at_handover: dict = {}
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
        from gflow.store import Store, trim_heap     # ours decodes jobs as it reads them
        st = (self.store.load(decode_job=job_from_trusted_wire)
              if isinstance(self.store, Store) else self.store.load())
        jobs, st.jobs = st.jobs, {}
        for job in map(jobs.pop, sorted(jobs)):     # ascending ids: listings need no sort
            job = job_from_trusted_wire(job) if type(job) is dict else job
            self.jobs[job.id] = job
        for rid, wire in st.reservations.items():
            self.reservations[int(rid)] = reservation_from_wire(wire)
        self.next_job_id = max(st.next_job_id, next(reversed(self.jobs), 0) + 1)
        self.next_reservation_id = max([st.next_reservation_id]
                                       + [r + 1 for r in self.reservations])
        self.start_gpu_restriction(st.allowed_gpu_indices)      # see ops_gpus.py
        self.load_note = st.replay_note
        self.needs_snapshot = st.needs_snapshot
        self.load_extras(st.extras)                             # see features.py
        self.mode = st.mode
        self.recovery = {"detail": st.detail, "state_backup": st.state_backup,
                         "journal_error": st.journal_error}
        # The indexes (as _index per job) in one loop: half the time at 100k jobs.
        now, by_user, queued, since = self.clock(), self.by_user, self.queued, self.queued_since
        other = {JobState.HOLD: self.held, JobState.RUNNING: self.running}
        for jid, job in self.jobs.items():
            by_user.setdefault(job.submitted_by, []).append(jid)
            if job.depends_on_ids or job.depends_on is not None:
                for dep in job.all_dependencies():
                    self.dependents.setdefault(dep, set()).add(jid)
            if job.state is JobState.QUEUED:
                queued.add(jid)
                since[jid] = job.submitted_at or now
            elif job.state in other:
                other[job.state].add(jid)
        self._cold = set(self.jobs)
        self.refresh_gpus()
        self.pass_needed = True
        trim_heap()             # what decoding freed goes back to the system (a few MB)
        # A worker's start (collections paused, nothing frozen yet) freezes this next; now,
        # before they resume, it also spares a collection walking it all (0.13 s at 100k).
        if not gc.isenabled() and gc.get_freeze_count() == 0:
            gc.freeze()

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
        """Forget what was derived from a job (its JSON, its candidate)."""
        self.relabelled(job_id)
        self._cand_cache.pop(job_id, None)

    def relabelled(self, job_id: int) -> None:
        """Forget a job's JSON only: what a pass says of a job (its waiting reason) is
        no input of the pass (100k new reasons made the next pass rebuild 100k
        candidates, 20-90 ms a slice of 4000)."""
        self._wire_cache.pop(job_id, None)
        self._cold.add(job_id)

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
            allowed_gpu_indices=self.set_gpus_indices, mode=self.mode,
            detail=self.recovery.get("detail"), state_backup=self.recovery.get("state_backup"),
            journal_error=self.recovery.get("journal_error"), extras=self.store_extras())

    def emit(self, kind: str, job: Optional[Job] = None, *, reservation=None, gpu=None,
             text: Optional[str] = None, at: Optional[float] = None) -> None:
        """Record one real change as a webhook/event-stream payload (built now, so it shows
        the job as this transition left it); `at` is when it happened, if not now."""
        if not self.events_wanted:
            return
        from gflow.notify import make_payload
        now = self.clock()
        self.events.append(make_payload(kind, now if at is None else at, self.host, job=job,
                                        reservation=reservation, gpu=gpu, text=text, now=now))

    # --- transitions ------------------------------------------------------------

    def transition(self, job: Job, dst: JobState, *, reason: Any = None,
                   detail: Optional[str] = None, at: Optional[float] = None,
                   retry: bool = False) -> None:
        """The one way a job changes state: checked against the table, journalled, evented.
        `at`: when it really happened (a recorded exit), if not now; `retry`: retries.py."""
        src = job.state
        if not (can_transition(src, dst) or retry and (src, dst) == features.RETRY_EDGE):
            raise ValueError(f"Job {job.id} is {src.value}: it cannot become {dst.value}")
        now = self.clock() if at is None else at
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
            self.account_run(job, now)          # fair-share usage (fairshare.py)
        self._set_state_index(job, src)
        self.follow_executor(job, src, dst)     # Slurm mode: hold, release, cancel there
        self.save_job(job)
        self.pass_needed = True
        self.emit("job_retrying" if retry else "job_" + _EVENT_NAME[dst], job, at=at)
        _log_transition(job, src, dst, now)

    # --- request dispatch -------------------------------------------------------

    MUTATING = frozenset({"submit", "submit_batch", "update", "transition", "set_gpus",
                          "group_limit", "redo", "reservation_create", "reservation_cancel",
                          *features.MUTATING, *ops_gpu_insight.MUTATING})

    def handle(self, op: str, payload: Any, caller: Any = None) -> Reply:
        """One request. `caller` is the verified caller the API worker sends with every
        request (a Caller or its wire dict); None only for in-process callers (tests)."""
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            return error(404, f"unknown operation {op!r}")
        if op in self.MUTATING and not self.writable:
            return Reply(503, self.read_only_body())
        payload = payload or {}
        if caller is not None:
            if not isinstance(caller, Caller):
                caller = Caller.from_wire(caller if isinstance(caller, dict) else None)
            try:
                self.authorize(op, payload, caller)
            except Refused as exc:
                # An audit line: who tried what (escaped by the log formatter).
                log.info("refused %s from %s (%s): %s", op,
                         caller.user or caller.uid or "anonymous", caller.via, exc)
                return error(403, str(exc))
        return handler(payload)

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

    # --- stopping and cascading ---------------------------------------------------
    # Shared by user cancels, failures, time limits and the pass's dependency cancels.

    def stop_job(self, job: Job, signame: str) -> None:
        self.launcher_outbox.append(("signal", job.id, signame,
                                     self.config.launcher.kill_grace_secs))
        self.wake_if_suspended(job)         # a stopped tree cannot act on SIGTERM

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
                                    detail="dependency " + policy.never_reason(cand, bad))
                    todo.append(child_id)
                else:
                    child.reason_detail = ("dependency can never be met: "
                                           + policy.never_reason(cand, bad))
                    self.changed(child.id)

    # --- the scheduling pass (its steps are in passes.py) -----------------------------

    def format_clock(self, t: float) -> str:
        """HH:MM in the configured timezone (local time when none is set); with the date
        when `t` is a day or more away."""
        from datetime import datetime
        tz = None
        if self.config.timezone:
            from zoneinfo import ZoneInfo
            tz = ZoneInfo(self.config.timezone)
        far = abs(t - self.clock()) >= 86400
        return datetime.fromtimestamp(t, tz=tz).strftime("%Y-%m-%d %H:%M" if far else "%H:%M")

    def launch_spec(self, job: Job) -> dict:
        return {
            "id": job.id, "script": job.script, "command": job.command,
            "run_dir": job.run_dir, "gpu_ids": list(job.gpu_ids or ()),
            "task_id": job.task_id, "conda_env": job.conda_env, "env": job.env,
            "parameters": dict(job.parameters), "memory_limit_mb": job.memory_limit_mb,
            "run_name": job.run_name,
            # A root daemon runs the job as its owner (the monitor stays root); in the
            # lab-account mode, or in a user's daemon, as the daemon's own account.
            "run_as_user": (job.submitted_by if self.access.daemon_uid == 0
                            and self.config.security.run_as == "submitter"
                            and job.submitted_by != self.access.daemon_user else None),
            "umask": job.umask, "attempt": len(job.attempts) + 1,    # retries.py
        }

    # --- time limits ---------------------------------------------------------------

    def next_deadline(self) -> Optional[float]:
        if self.pass_under_way:
            return self.clock()                 # a pass is being prepared or run: no sleep
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
        self.drop_other_executors_jobs()        # ops_executor.py: local <-> Slurm switch
        specs = (self.executor_adopt_specs() if self.external else
                 [self.launch_spec(self.jobs[i]) for i in sorted(self.running | self.draining)])
        self.launcher_outbox.append(("adopt", specs))

    def on_exited(self, job_id: int, info: dict) -> None:
        job = self.jobs.get(job_id)
        self.launcher_outbox.append(("forget", job_id))
        if job is None:
            return
        code = info.get("exit_code")
        detail = info.get("detail")
        if self.external and self.executor_ended(job, info, recorded_end(
                info, job.started_at, self.clock())):
            pass                                # ops_executor.py: Slurm's own ends
        elif job.state == JobState.RUNNING:
            job.exit_code = code
            # The monitor's recorded end, not the time we heard of it (the daemon may have
            # been down meanwhile).
            end = recorded_end(info, job.started_at, self.clock())
            if code == 0 and not detail:
                self.transition(job, JobState.FINISHED, at=end)
            elif not self.retry_failed(job, detail or f"exit code {code}", end):  # retries.py
                self.transition(job, JobState.FAILED, detail=detail or f"exit code {code}",
                                at=end)
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
        polled = self.gpu_inventory.poll()
        self.observe_gpus(polled)           # who holds what, idle holders (ops_gpu_insight)
        view = [self.view_gpu(g, held) for g in polled]
        # Free memory counts too: a job waiting for room starts when a foreign process ends.
        if [(g.index, g.foreign, g.free_mb) for g in view] != \
                [(g.index, g.foreign, g.free_mb) for g in self.gpu_view]:
            self.pass_needed = True
        self.gpu_view = view
        available = {g.index for g in view if not g.foreign and g.index not in held}
        for index in sorted(available - self._gpus_available):
            self.emit("gpu_available", gpu={"index": index, "available": True})
        self._gpus_available = available

    # --- reservations --------------------------------------------------------------
    # Clock-driven upkeep stays here (the pass and the worker loop use it); the request
    # handlers are in ops_reservations.py.

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

    def next_reservation_boundary(self) -> Optional[float]:
        from gflow.reservations import next_boundary
        return next_boundary(self.reservations.values(), self.clock())


def recorded_end(info: dict, started_at: Optional[float], now: float) -> float:
    """The end time a launcher exit report carries (`finished_at`, epoch seconds, from the
    job's status file), kept between the job's start and now; now when there is none."""
    end = info.get("finished_at")
    if isinstance(end, bool) or not isinstance(end, (int, float)) or end != end:
        return now
    return min(max(float(end), started_at if started_at is not None else end), now)


_EVENT_NAME = {
    JobState.QUEUED: "released", JobState.HOLD: "held", JobState.RUNNING: "started",
    JobState.FINISHED: "completed", JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled", JobState.TIMEOUT: "timeout",
}
