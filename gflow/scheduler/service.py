"""The scheduler worker: a loop that feeds the core, commits once per batch, then replies."""

from __future__ import annotations

import logging
import os
import queue
import time

from gflow.errors import StoreError
from gflow.ipc import Hub
from gflow.scheduler.core import SchedulerCore, error
from gflow.workerproc import WorkerContext, setup_worker, stop_event_on

log = logging.getLogger("gflow.scheduler")

MAX_BATCH_MESSAGES = 512
SNAPSHOT_WAL_BYTES = 16 * 1024 * 1024
SNAPSHOT_EVERY_SECS = 600.0


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
        core = self.core
        while not stop.is_set():
            try:
                first = self.hub.inbox.get(timeout=self._timeout())
                batch = [first]
                while len(batch) < MAX_BATCH_MESSAGES:
                    try:
                        batch.append(self.hub.inbox.get_nowait())
                    except queue.Empty:
                        break
            except queue.Empty:
                batch = []
                core.warm_cache()
            replies = []
            for peer, msg in batch:
                self._dispatch(peer, msg, replies)
            self._tick()
            if core.pass_wanted:
                core.run_pass()
            self._commit_and_flush(replies)
            self.arm_boundary()
            self._maybe_snapshot()
        self.shutdown()

    def _dispatch(self, peer, msg, replies) -> None:
        core = self.core
        kind = msg[0]
        if kind == "req":
            _, corr, op, payload = msg
            if self.commit_failed and op in core.MUTATING:
                # The journal could not be written: refuse changes rather than
                # acknowledge something that might not survive a crash.
                if not self._retry_commit():
                    replies.append((peer, corr, op, error(
                        503, "the state journal cannot be written (disk full?); "
                             "changes are refused until it can")))
                    return
            try:
                rep = core.handle(op, payload)
            except Exception:
                log.exception("request %s failed", op)
                rep = error(500, f"internal error handling {op}")
            replies.append((peer, corr, op, rep))
        elif kind == "connected":
            if msg[1] == "launcher":
                core.on_launcher_connected()
        elif kind == "exited":
            core.on_exited(msg[1], msg[2])
        elif kind == "reservation_boundary":
            self.boundary_at = None
            core.update_reservations()
            core.pass_needed = True
        elif kind == "disconnected":
            pass
        else:
            log.warning("unknown message %r", kind)

    def _tick(self) -> None:
        now = time.time()
        core = self.core
        if self.core.running:
            core.enforce_time_limits()
        if now >= self.next_gpu_poll:
            self.next_gpu_poll = now + self.config.daemon.gpu_poll_interval_secs
            core.refresh_gpus()
        if now >= self.next_periodic:
            self.next_periodic = now + self.config.scheduler.periodic_pass_secs
            core.pass_needed = True

    def _retry_commit(self) -> bool:
        try:
            self.core.store.commit()
        except StoreError as exc:
            log.error("journal still not writable: %s", exc)
            return False
        self.commit_failed = False
        log.warning("journal writable again; accepting changes")
        return True

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
            # Launcher commands for changes that are not durable are held back.
            core.launcher_outbox.clear()
        for peer, corr, _op, rep in replies:
            peer.send(("rep", corr, rep[0], rep[1]))
        if core.launcher_outbox:
            for cmd in core.launcher_outbox:
                if not self.hub.send_to("launcher", cmd):
                    break  # it will get everything through "adopt" when it connects
            core.launcher_outbox.clear()
        core.events.clear()

    def _maybe_snapshot(self, force: bool = False) -> None:
        store = self.core.store
        # The WAL may grow to twice the snapshot before it is folded in, so snapshots
        # cost O(1) amortised per change however large the state gets.
        due = (store.wal_bytes > max(SNAPSHOT_WAL_BYTES, 2 * self.snapshot_bytes)
               or (store.wal_bytes and time.monotonic() - self.last_snapshot > SNAPSHOT_EVERY_SECS))
        if not (force or due) or self.commit_failed:
            return
        try:
            store.snapshot(self.core.snapshot_state())
            self.last_snapshot = time.monotonic()
            try:
                self.snapshot_bytes = os.path.getsize(store.snapshot_path)
            except OSError:
                pass
        except StoreError as exc:
            log.error("snapshot failed (the journal still holds every change): %s", exc)

    def shutdown(self) -> None:
        if self.aps is not None:
            self.aps.shutdown(wait=False)
        try:
            self.core.store.commit()
        except StoreError as exc:
            log.error("final commit failed: %s", exc)
        self._maybe_snapshot(force=True)
        self.core.store.close()
        self.hub.close()


def main(ctx: WorkerContext) -> None:
    setup_worker("scheduler", ctx)
    stop = stop_event_on()
    from gflow.gpu import GpuInventory
    from gflow.store import Store
    paths = ctx.paths
    store = Store(paths.data_dir)
    inventory = GpuInventory(ctx.env.get("GFLOW_FAKE_GPUS"))
    log.info("GPUs: %s", inventory.message)
    core = SchedulerCore(store=store, gpu_inventory=inventory, config=ctx.config, paths=paths,
                         total_memory_mb=total_memory_mb())
    core.gpus_from_cli = ctx.gpus_from_cli
    core.load()
    log.info("state loaded: %d jobs, next id %d, mode %s", len(core.jobs), core.next_job_id,
             core.mode)
    if core.load_note:
        log.warning("while loading the state: %s", core.load_note)
    hub = Hub(ctx.address, ctx.authkey)
    loop = SchedulerLoop(core, hub, ctx.config)
    loop.start_timers()
    if core.needs_snapshot:
        loop._maybe_snapshot(force=True)
    try:
        loop.run(stop)
    finally:
        inventory.close()
    log.info("scheduler stopped (pid %d)", os.getpid())
