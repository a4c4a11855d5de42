"""The scheduler worker: a loop that feeds the core, commits once per batch, then replies."""

from __future__ import annotations

import gc
import logging
import os
import queue
import threading
import time

from gflow.errors import StoreError
from gflow.ipc import Hub
from gflow.models import FINAL_STATES, JobState
from gflow.procexit import exit_now
from gflow.scheduler.begin import arm_begin
from gflow.scheduler.core import SchedulerCore, error
from gflow.store.fileio import gc_paused
from gflow.workerproc import (WorkerContext, hold_worker_lock, setup_worker, signal_ready,
                              stop_event_on)

log = logging.getLogger("gflow.scheduler")

MAX_BATCH_MESSAGES = 512
# Jobs encoded for listings per idle step: 2000 held requests 40-140 ms on a loaded box.
WARM_BUDGET = 500
SNAPSHOT_EVERY_SECS = 600.0
# Periodic snapshots are written by a forked child (gflow/store/background.py) while the
# loop goes on answering; False writes them inside the loop, as before (seconds at 100k
# jobs). The snapshot of a clean stop, or after a merged journal, is always synchronous.
BACKGROUND_SNAPSHOTS = True
# The periodic safety pass comes at most once per this many times its own duration.
SAFETY_PASS_COST_BOUND = 100
# After a background snapshot failed, the next try waits this long (its WAL segments
# stay on disk meanwhile, so nothing is lost; a full disk must not mean a fork a batch).
SNAPSHOT_RETRY_SECS = 10.0
# On stop, how long to wait for every worker to acknowledge that it holds its requests.
CLOSE_ACK_SECS = 3.0


def total_memory_mb() -> int:
    import psutil
    return psutil.virtual_memory().total // (1024 * 1024)


class SchedulerLoop:
    def __init__(self, core: SchedulerCore, hub: Hub, config):
        self.core = core
        self.hub = hub
        self.config = config
        self.next_periodic = 0.0
        self.next_gpu_poll = 0.0
        self.last_snapshot = time.monotonic()
        self.commit_failed = False
        self.boundary_at = None
        self.aps = None
        self.snapshot_bytes = 0
        self.awaiting: set = set()      # peers yet to acknowledge our closing

    def start_timers(self) -> None:
        """APScheduler fires at every reservation start and end (a wake-up message)."""
        from apscheduler.schedulers.background import BackgroundScheduler
        self.aps = BackgroundScheduler(timezone="UTC")
        self.aps.start()
        self.arm_boundary()

    def arm_boundary(self) -> None:
        if self.aps is None:
            return
        from datetime import datetime, timezone
        at = self.core.next_reservation_boundary()
        if at == self.boundary_at:
            return
        self.boundary_at = at
        if at is None:
            if self.aps.get_job("reservation-boundary"):
                self.aps.remove_job("reservation-boundary")
            return
        self.aps.add_job(self._boundary_reached, "date", id="reservation-boundary",
                         replace_existing=True, misfire_grace_time=None,
                         run_date=datetime.fromtimestamp(at, tz=timezone.utc))

    def _boundary_reached(self) -> None:
        self.hub.inbox.put((None, ("reservation_boundary",)))

    def _timeout(self) -> float:
        if self.core.cache_cold:
            return 0.0          # idle time goes into encoding jobs, a chunk at a time
        now = time.time()
        wake = [self.next_periodic, self.next_gpu_poll]
        deadline = self.core.next_deadline()
        if deadline is not None:
            wake.append(deadline)
        return max(0.0, min(min(wake) - now, 1.0))

    def run(self, stop) -> None:
        while not stop.is_set():
            self.step(self._timeout())
        self.drain()
        self.shutdown()

    def drain(self) -> None:
        """Answer every request that reached this scheduler before it goes (a reload or a
        stop): the workers are told to hold new ones for the next scheduler, and all
        they sent before acknowledging that is handled here (see `Hub.begin_close`)."""
        self.awaiting = self.hub.begin_close()
        deadline = time.monotonic() + CLOSE_ACK_SECS
        while self.awaiting and time.monotonic() < deadline:
            self.step(0.05)
        if self.awaiting:
            log.warning("closing without an acknowledgement from: %s",
                        ", ".join(sorted(p.role for p in self.awaiting)))
        while not self.hub.inbox.empty():
            self.step(0.0)

    def step(self, timeout: float) -> None:
        """One batch: take what arrived, handle it, tick, maybe a pass, commit, reply."""
        core = self.core
        try:
            first = self.hub.inbox.get(timeout=timeout)
            batch = [first]
            while len(batch) < MAX_BATCH_MESSAGES:
                try:
                    batch.append(self.hub.inbox.get_nowait())
                except queue.Empty:
                    break
        except queue.Empty:
            batch = []
            if not core.pass_wanted:    # a slice of a pass and a chunk of this held the
                core.warm_cache(WARM_BUDGET)    # loop 90 ms together at 100k: one a step
        replies = []
        for peer, msg in batch:
            self._dispatch(peer, msg, replies)
        self._tick()
        core = self.core        # a failed request may have replaced it (_discard_batch)
        if core.pass_wanted:
            if replies and core.pass_under_way:
                # What comes is a slice of a big pass (passes.py): this batch's answers,
                # made durable first, need not wait for it.
                self._commit_and_flush(replies)
                replies = []
                core = self.core        # a failed commit rebuilds it (_rollback)
            elif replies and not getattr(core.store, "pending", True):
                # Nothing this batch did awaits a commit (it only read), so its answers
                # need not wait for the pass: a pass over 100k queued jobs (the first one
                # after a start, say) takes a good part of a second.
                self._send_replies(replies)
                replies = []
            core.run_pass()
        self._commit_and_flush(replies)
        self.arm_boundary()
        arm_begin(self)                 # the first `gbatch --begin` time still ahead
        self._maybe_snapshot()

    def _dispatch(self, peer, msg, replies) -> None:
        core = self.core
        kind = msg[0]
        if kind == "req":
            # ("req", corr, op, payload, caller): the API worker always sends the
            # verified caller; a request without one is anonymous.
            _, corr, op, payload = msg[:4]
            caller = msg[4] if len(msg) > 4 and msg[4] is not None else {}
            if self.commit_failed and op in core.MUTATING:
                # The journal could not be written: refuse changes rather than
                # acknowledge something that might not survive a crash.
                if not self._retry_commit():
                    replies.append((peer, corr, op, error(
                        503, "the state journal cannot be written (disk full?); "
                             "changes are refused until it can")))
                    return
            try:
                rep = core.handle(op, payload, caller)
            except Exception:
                log.exception("request %s failed", op)
                rep = error(500, f"internal error handling {op}")
                if op in core.MUTATING:
                    self._discard_batch(replies, op)
            replies.append((peer, corr, op, rep))
        elif kind == "connected":
            if msg[1] == "launcher":
                self._launcher_connected()
        elif kind == "closing_ack":
            self.awaiting.discard(peer)
        elif kind == "exited":
            core.on_exited(msg[1], msg[2])
        elif kind in _EXECUTOR_REPORTS:         # an external executor's (ops_executor.py)
            getattr(core, _EXECUTOR_REPORTS[kind])(*msg[1:])
        elif kind == "reservation_boundary":
            self.boundary_at = None
            core.update_reservations()
            core.pass_needed = True
        elif kind == "begin_time":
            self.begin_at = None
            core.pass_needed = True
        elif kind == "wake":
            pass
        elif kind == "disconnected":
            if self.awaiting:
                self.awaiting.discard(peer)
        else:
            log.warning("unknown message %r", kind)

    def _launcher_connected(self) -> None:
        """A (re)started launcher adopts every job that should have a process. Jobs that
        are already final but whose process has not exited (cancelled, timed out) are
        marked `stopping` (never started if they never were) and their stop order is
        repeated: the launcher may have been away when it was first sent."""
        core = self.core
        core.on_launcher_connected()
        if not core.draining:
            return
        for cmd in core.launcher_outbox:
            if cmd[0] == "adopt":
                for spec in cmd[1]:
                    if spec["id"] in core.draining:
                        spec["stopping"] = True
        grace = self.config.launcher.kill_grace_secs
        for jid in sorted(core.draining):
            job = core.jobs.get(jid)
            if job is not None and job.state in (JobState.CANCELLED, JobState.TIMEOUT):
                signame = "SIGINT" if job.state == JobState.TIMEOUT else "SIGTERM"
                core.launcher_outbox.append(("signal", jid, signame, grace))

    def _tick(self) -> None:
        now = time.time()
        core = self.core
        if self.core.running:
            core.enforce_time_limits()
        if now >= self.next_gpu_poll:
            self.next_gpu_poll = now + self.config.daemon.gpu_poll_interval_secs
            core.refresh_gpus()
        if now >= self.next_periodic:
            # The safety net re-plans every queued job: at most 1 % of the loop's time goes
            # to it (a full pass over 100k queued jobs stops the loop 0.1-0.2 s: every
            # 10-20 s then, not every 5). Events still start passes at once.
            self.next_periodic = now + max(self.config.scheduler.periodic_pass_secs,
                                           SAFETY_PASS_COST_BOUND * core.last_full_pass_secs)
            core.pass_needed = True

    def _retry_commit(self) -> bool:
        """After a failed commit, changes are refused outright for a second; then the next
        batch tries for real (and is rolled back again if the disk is still full)."""
        if time.monotonic() < self.retry_at:
            return False
        self.commit_failed = False
        return True

    retry_at = 0.0
    load_core = None

    def _rollback(self) -> None:
        """Forget what could not be made durable: rebuild the core from disk, so nothing a
        client was refused (or never heard about) can appear later."""
        new = self._reload("after a failed commit")
        self.retry_at = time.monotonic() + 1.0
        log.warning("rolled back to the state on disk (%d jobs); changes are refused until "
                    "the journal can be written", len(new.jobs))

    def _reload(self, why: str) -> SchedulerCore:
        """The core rebuilt from disk, without the batch's uncommitted records."""
        old = self.core
        old.store.close()                       # drops the records not yet committed
        try:
            new = self.load_core()
        except Exception:
            log.exception("could not reload the state %s", why)
            raise
        new.event_streams, new.webhooks_on = old.event_streams, old.webhooks_on
        self.core = new
        # Exit reports handled in the lost batch are asked for again.
        new.on_launcher_connected()
        return new

    def _discard_batch(self, replies, op: str) -> None:
        """A change request raised half-way: what it changed so far may be in the core's
        memory and in the journal's buffer, beside the uncommitted changes of the batch's
        earlier requests. Keeping it could fail every later pass, encoding or commit (and
        so the worker), so all of the batch's changes go: the core is rebuilt from disk,
        and the earlier requests are told theirs was not made (each request takes effect
        entirely or not at all; they may simply retry)."""
        core = self.core
        if self.load_core is None:      # tests that drive a bare loop
            log.error("cannot undo the failed %s: no way to reload the state", op)
            return
        refusal = error(503, f"not made: the scheduler dropped the changes handled with a "
                             f"failed request ({op}); retry")
        replies[:] = [(peer, corr, o, refusal if o in core.MUTATING and rep[0] < 300 else rep)
                      for peer, corr, o, rep in replies]
        # A signal forwarded earlier in the batch changed no state: it still goes.
        forwards = [cmd for cmd in core.launcher_outbox if cmd[0] == "forward"]
        new = self._reload(f"after the failed {op}")
        new.launcher_outbox.extend(forwards)
        log.warning("dropped the changes of the batch with the failed %s: back to the state "
                    "on disk (%d jobs)", op, len(new.jobs))

    def _commit_and_flush(self, replies) -> None:
        core = self.core
        try:
            core.store.commit()
        except StoreError as exc:
            log.error("could not commit the journal: %s", exc)
            self.commit_failed = True
            refusal = error(503, f"the state journal cannot be written: {exc}")
            replies = [(peer, corr, op, refusal if op in core.MUTATING and rep[0] < 300 else rep)
                       for peer, corr, op, rep in replies]
            # Launcher commands and events of changes that are not durable are held back.
            core.launcher_outbox.clear()
            core.events.clear()
            if self.load_core is not None:
                self._rollback()
        # The launcher's orders first: a job's start waits for nothing else.
        if core.launcher_outbox:
            for cmd in core.launcher_outbox:
                if not self.hub.send_to("launcher", cmd):
                    break  # it will get everything through "adopt" when it connects
            core.launcher_outbox.clear()
        self._publish_events()
        self._send_replies(replies)

    @staticmethod
    def _send_replies(replies) -> None:
        for peer, corr, _op, rep in replies:
            peer.send(("rep", corr, rep[0], rep[1]))

    notifier = None

    def _publish_events(self) -> None:
        """Events of the committed batch: durable in the outbox before any reply, then
        delivered by the notifier's threads and streamed to the API's subscribers."""
        events, self.core.events = self.core.events, []
        if not events:
            return
        if self.notifier is not None:
            for payload in events:
                self.notifier.publish(payload)
            try:
                self.notifier.outbox.commit()
            except OSError as exc:
                log.error("could not write the notification outbox: %s", exc)
            self.notifier.flush()
        self.hub.send_all("api", ("events", events))   # both API workers during a reload

    def _maybe_snapshot(self, force: bool = False) -> None:
        store = self.core.store
        if not force and self._background_busy(store):
            return
        # The WAL may grow to twice the snapshot before it is folded in, so snapshots
        # cost O(1) amortised per change however large the state gets.
        due = (store.wal_bytes > max(self.config.scheduler.snapshot_wal_bytes,
                                     2 * self.snapshot_bytes)
               or (store.wal_bytes and time.monotonic() - self.last_snapshot > SNAPSHOT_EVERY_SECS))
        if not (force or due) or self.commit_failed:
            return
        try:
            if not force and BACKGROUND_SNAPSHOTS and hasattr(store, "snapshot_in_background"):
                try:
                    if store.snapshot_in_background(self.core.snapshot_state):
                        return
                except StoreError:
                    self.snapshot_retry_at = time.monotonic() + SNAPSHOT_RETRY_SECS
                    raise
            with gc_paused():
                state = self.core.snapshot_state()
            store.snapshot(state)
            del state
            self.last_snapshot = time.monotonic()
            try:
                self.snapshot_bytes = os.path.getsize(store.snapshot_path)
            except OSError:
                pass
        except StoreError as exc:
            log.error("snapshot failed (the journal still holds every change): %s", exc)

    snapshot_retry_at = 0.0

    def _background_busy(self, store) -> bool:
        """Whether a background snapshot runs or waits for its retry; notes one's end."""
        poll = getattr(store, "poll_background", None)
        if poll is None:
            return False
        why = poll()
        if why == "":
            self.last_snapshot = time.monotonic()
            try:
                self.snapshot_bytes = os.path.getsize(store.snapshot_path)
            except OSError:
                pass
        elif why is not None:
            log.error("background snapshot failed (the journal still holds every change; "
                      "retry in %.0f s): %s", SNAPSHOT_RETRY_SECS, why)
            self.snapshot_retry_at = time.monotonic() + SNAPSHOT_RETRY_SECS
        return (store.background_pid is not None
                or time.monotonic() < self.snapshot_retry_at)

    def shutdown(self) -> None:
        if self.aps is not None:
            self.aps.shutdown(wait=False)
        try:
            self.core.store.commit()
        except StoreError as exc:
            log.error("final commit failed: %s", exc)
        # Every acknowledged change is already fsynced in the WAL. The snapshot still
        # folds a non-empty WAL in, so that a stopped daemon's state.msgpack is complete
        # on its own (gflow 0.4.13 reads only that file: docs/migrating.md); an empty WAL
        # means state.msgpack already holds everything, and a stop writes nothing.
        if self.core.store.wal_bytes:
            self._maybe_snapshot(force=True)
        self.core.store.close()
        self.hub.close()


# What the Slurm executor reports, beyond the local launcher's "exited".
_EXECUTOR_REPORTS = {"submitted": "on_submitted", "started": "on_started",
                     "refused": "on_refused", "executor": "on_executor_health",
                     "slurm_waiting": "on_executor_waiting"}


def freeze_survivors(phase: str, info: dict) -> None:
    """A gc callback: what survives a full collection is live, so it is frozen like the
    loaded state, and the next full collection walks only what came after it. With 100k
    jobs submitted since the start, each full collection held the loop 60-90 ms. (A
    frozen object that later becomes part of an unreachable cycle is never freed: jobs
    make no cycles.)"""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def live_job_processes(core: SchedulerCore, paths) -> set[int]:
    """Final jobs whose process is still alive (stopped before the last scheduler saw it
    exit): they keep their GPUs and are adopted, so that their stop can be finished.
    The draining set is not persisted by the core; it is rebuilt from the monitors'
    pid files (a monitor alive with the recorded start time) and status files."""
    import json

    import psutil
    found = set()
    for job in core.jobs.values():
        if (job.state not in FINAL_STATES or job.started_at is None
                or job.exit_code is not None or job.id in core.draining):
            continue
        pidfile = paths.job_pidfile(job.id)
        try:
            with open(pidfile) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if os.path.exists(paths.job_status(job.id)):
            found.add(job.id)          # ended meanwhile: the launcher reports its status
            continue
        try:
            proc = psutil.Process(info["monitor_pid"])
            start = info.get("monitor_start")
            if start is None or abs(proc.create_time() - start) <= 1.0:
                found.add(job.id)
        except (psutil.Error, KeyError, TypeError):
            continue
    return found


def main(ctx: WorkerContext, ready=None) -> None:
    setup_worker("scheduler", ctx)
    stop = stop_event_on()
    from gflow.gpu import GpuInventory
    from gflow.store import Store
    paths = ctx.paths
    inventory = GpuInventory(ctx.env.get("GFLOW_FAKE_GPUS"),
                             ctx.env.get("GFLOW_FAKE_GPU_PROCS"))   # simulated usage (gpu_sim)
    log.info("GPUs: %s", inventory.message)
    import apscheduler.schedulers.background  # noqa: F401 - imported before the lock
    import psutil  # noqa: F401
    # Everything above ran while a predecessor may still be answering (a reload starts
    # the new scheduler first); the state is ours only once it has exited.
    hold_worker_lock(paths.data_dir / "scheduler.lock")
    memory_mb = total_memory_mb()
    # Listening before the load: the API and the launcher connect meanwhile (their
    # reconnect back-off would otherwise add up to 0.1 s to a restart); what they send
    # waits in the inbox for the loop's first step.
    hub = Hub(ctx.address, ctx.authkey)

    def load_core() -> SchedulerCore:
        """The durable state, as a fresh core (also after a commit failed: see rollback)."""
        core = SchedulerCore(store=Store(paths.data_dir), gpu_inventory=inventory,
                             config=ctx.config, paths=paths, total_memory_mb=memory_mb)
        core.gpus_from_cli = ctx.gpus_from_cli
        if ctx.started_at:
            core.started_at = ctx.started_at      # uptime is the daemon's, not this worker's
        core.load()
        stale = live_job_processes(core, paths)
        if stale:
            log.info("jobs stopped earlier whose process is still alive: %s",
                     ", ".join(map(str, sorted(stale))))
            core.draining |= stale
            core.refresh_gpus()
        return core

    with gc_paused():
        core = load_core()
    # The loaded jobs live as long as this worker: later collections need not walk them.
    gc.freeze()
    gc.callbacks.append(freeze_survivors)       # nor the jobs submitted since
    log.info("state loaded: %d jobs, next id %d, mode %s", len(core.jobs), core.next_job_id,
             core.mode)
    if core.load_note:
        log.warning("while loading the state: %s", core.load_note)
    signal_ready(ready)

    def wake_on_stop() -> None:       # the loop may be waiting on its inbox
        stop.wait()
        hub.inbox.put((None, ("wake",)))

    threading.Thread(target=wake_on_stop, name="stop-wake", daemon=True).start()
    loop = SchedulerLoop(core, hub, ctx.config)
    loop.load_core = load_core
    loop.start_timers()
    notifications = ctx.config.notifications
    if notifications.enabled and (notifications.webhooks or notifications.email):
        from gflow.notify import Notifier, Outbox
        loop.notifier = Notifier(notifications, Outbox(paths.data_dir / "notify.outbox"),
                                 core.host)
        loop.notifier.mail_lookup = lambda payload: loop.core.job_mail(payload)  # e-mail
        core.webhooks_on = True
        log.info("webhooks: %d target(s), %d event(s) still owed", len(notifications.webhooks),
                 len(loop.notifier.outbox.pending))
    core.emit("scheduler_online", text=f"gflow scheduler online\nHost: {core.host}\n"
              f"Version: {core.version}\nTime: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    try:
        loop.snapshot_bytes = os.path.getsize(core.store.snapshot_path)
    except OSError:
        pass
    # A merged recovery journal is folded in (and emptied) at once. A replayed WAL is
    # not: it stays durable where it is, and the usual rule (_maybe_snapshot, after each
    # batch) folds it in once it has grown, so a start after a crash is as fast as any.
    if core.needs_snapshot and getattr(core.store, "journal_merged", True):
        loop._maybe_snapshot(force=True)
    try:
        loop.run(stop)
    finally:
        inventory.close()
    log.info("scheduler stopped (pid %d)", os.getpid())
    # Everything is durable (the WAL fsynced, a snapshot written if one was due); what is
    # left is freeing every job one by one at interpreter exit (a quarter second at 100k
    # jobs), which the master and `gflowd down` would wait for.
    exit_now(0)
