"""The launcher worker: starts jobs under monitors, re-adopts them, stops them, reports their ends."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import psutil

from gflow.ipc import HubClient
from gflow.launcher import (attempts, boots, cgroup, diagnose, runas, safefs, strays, suspend,
                            zygote)
from gflow.launcher.jobcmd import LaunchError, build_argv, build_env, direct_words
from gflow.launcher.notify_socket import bind_notify_socket, notify_address
from gflow.workerproc import (WorkerContext, hold_worker_lock, setup_worker, signal_ready,
                              stop_event_on)

log = logging.getLogger("gflow.launcher")

POLL_SECS = 0.5
# A monitor writes its pid file within milliseconds; give a slow machine ample time.
MONITOR_START_GRACE_SECS = 15.0
# A job whose monitor vanished is reported only once its processes are gone (its GPUs
# are in use until then); one that cannot be killed (EPERM, stuck in the kernel) for
# this long is reported anyway, naming what is left.
STRAY_KILL_SECS = 60.0


@dataclass
class Tracked:
    spec: dict
    launched_at: float
    popen: Optional[subprocess.Popen] = None
    monitor_pid: Optional[int] = None
    monitor_start: Optional[float] = None
    job_pid: Optional[int] = None
    job_start: Optional[float] = None
    pending_signal: Optional[tuple] = None         # (signame, grace) waiting for the pid file
    kill_deadline: Optional[float] = None
    # Every process seen in the job's tree (psutil.Process: safe against pid reuse).
    tree: dict = field(default_factory=dict)
    reported: Optional[dict] = None                  # the exit info we sent
    next_memory_check: float = 0.0
    cgroup: Optional[str] = None                     # the job's cgroup v2, if it has one
    uid: Optional[int] = None                        # the account the job runs as
    strays_since: Optional[float] = None             # monitor gone: killing what is left
    strays_found: int = 0


RESTARTED_DETAIL = ("not started again: the machine restarted after its start was ordered, "
                    "and whether it ran is unknown")


class Launcher:
    def __init__(self, paths, config, notify_address: str,
                 cgroup_base: Optional[str] = None):
        self.paths = paths
        self.config = config
        self.notify_address = notify_address
        # Where job cgroups go (cgroup.detect()); None: memory limits are sampled.
        self.cgroup_base = cgroup_base
        self.jobs: dict[int, Tracked] = {}
        # Monitors whose job is forgotten but which had not exited yet: reaped by the
        # next checks, so none stays <defunct> until another Popen happens to reap it.
        self.exiting: list[subprocess.Popen] = []
        self.lock = threading.RLock()
        self.channel: Optional[HubClient] = None
        self.base_env = dict(os.environ)
        # Monitors are forked by a pre-imported zygote (zygote.py), else started by Popen.
        self.forks = zygote.ForkServer() if zygote.ENABLED else None
        # Specs are not fsynced: after a machine restart a missing one proves nothing.
        self.boots = boots.BootRecord(paths.data_dir / "launcher.boot")

    # --- commands from the scheduler ----------------------------------------------

    def on_message(self, msg) -> None:
        kind = msg[0]
        with self.lock:
            if kind == "start":
                self.start(msg[1])
            elif kind == "adopt":
                self.adopt(msg[1])
            elif kind == "signal":
                self.signal(msg[1], msg[2], msg[3])
            elif kind == "forward":
                self.forward(msg[1], msg[2])
            elif kind == "forget":
                self.forget(msg[1])
            elif kind == "tree_signal":         # gjob suspend / resume
                suspend.signal_tree(self, msg[1], msg[2])

    def _files(self, job_id: int) -> dict:
        logs = self.paths.logs_dir
        return {"log_path": str(self.paths.job_log(job_id)),
                "status_path": str(self.paths.job_status(job_id)),
                "pid_path": str(self.paths.job_pidfile(job_id)),
                "spec_path": str(logs / f"{job_id}.spec.json")}

    def start(self, spec: dict) -> None:
        job_id = spec["id"]
        if job_id in self.jobs:
            return
        files = self._files(job_id)
        attempts.archive_previous(self.paths, job_id, attempts.attempt_of(spec),
                                  files["spec_path"])      # a retry: the last one's files
        tracked = Tracked(spec=spec, launched_at=time.time())
        self.jobs[job_id] = tracked
        try:
            # None: the job runs as gflowd's own account, as every job did before.
            account = runas.target_account(spec.get("run_as_user"))
        except runas.Refused as exc:
            log.error("job %d refused: %s", job_id, exc)
            self.report(job_id, {"exit_code": None, "detail": str(exc),
                                 "finished_at": time.time()})
            return
        tracked.uid = account.pw_uid if account else os.geteuid()
        try:
            os.makedirs(self.paths.logs_dir, mode=0o700, exist_ok=True)
            # The log exists from the start (`gjob log -f` may open it before the
            # monitor runs); the monitor appends to it. Ids are never reused, so this
            # never touches an earlier job's log. Never through a planted symlink.
            os.close(safefs.open_job_log(files["log_path"],
                                         group=account.pw_gid if account else None))
            argv = build_argv(spec)
            monitor_spec = {
                "id": job_id, "argv": argv, "cwd": spec.get("run_dir") or "/",
                "env": build_env(spec, self.base_env), "notify": self.notify_address,
                "run_as_user": account.pw_name if account else None,
                "umask": spec.get("umask"), "memory_limit_mb": spec.get("memory_limit_mb"),
                "cgroup_base": self.cgroup_base, "pids_max": cgroup.PIDS_MAX,
                "attempt": attempts.attempt_of(spec), "direct": direct_words(argv), **files}
            # Not fsynced (an fsync of a file just renamed waits for a journal commit, on
            # every start): the page cache keeps it through any process's death, and
            # adoption after a machine restart does not trust its absence (boots.py).
            safefs.write_json_atomic(files["spec_path"], monitor_spec, durable=False)
            child = (self.forks.spawn(files["spec_path"]) if self.forks else zygote.NOT_SENT)
            if child is zygote.NOT_SENT:
                child = subprocess.Popen(
                    [sys.executable, "-m", "gflow.launcher.monitor", files["spec_path"]],
                    start_new_session=True, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
            if child is not zygote.UNKNOWN:     # (else its pid file tells, as on adoption)
                tracked.popen, tracked.monitor_pid = child, child.pid
                tracked.monitor_start = getattr(child, "start", None)
            log.debug("job %d launched monitor_pid=%s", job_id, tracked.monitor_pid)
        except safefs.UnsafeFile as exc:
            log.error("job %d refused: %s", job_id, exc)
            self.report(job_id, {"exit_code": None, "detail": str(exc),
                                 "finished_at": time.time()})
        except (LaunchError, OSError) as exc:
            log.error("job %d could not be started: %s", job_id, exc)
            self.report(job_id, {"exit_code": None, "detail": f"could not start: {exc}",
                                 "finished_at": time.time()})

    def adopt(self, specs: list) -> None:
        """After a (re)start: every job the scheduler thinks has a process."""
        wanted = {s["id"] for s in specs}
        for spec in specs:
            job_id = spec["id"]
            if job_id in self.jobs:
                if self.jobs[job_id].reported:
                    self.send(("exited", job_id, self.jobs[job_id].reported))
                continue
            files = self._files(job_id)
            if (not os.path.exists(files["spec_path"])
                    or attempts.stale_spec(files["spec_path"], spec)):
                if spec.get("stopping") or self.boots.restarted:
                    # Stopped before the launcher ever got to start it; or the machine
                    # restarted since, and an unsynced spec may be gone although the job
                    # ran (boots.py): never run a job twice.
                    self.jobs[job_id] = Tracked(spec=spec, launched_at=time.time())
                    self.report(job_id, {"exit_code": None, "finished_at": time.time(),
                                         "detail": "stopped before it started"
                                         if spec.get("stopping") else RESTARTED_DETAIL})
                else:
                    self.start(spec)        # never launched (the daemon stopped first)
                continue
            tracked = Tracked(spec=spec, launched_at=_mtime(files["spec_path"]))
            self.jobs[job_id] = tracked
            self._load_pidfile(job_id, tracked)
            log.info("job %d adopted pid=%s monitor_pid=%s", job_id, tracked.job_pid,
                     tracked.monitor_pid)
        for job_id in list(self.jobs):
            if job_id not in wanted and self.jobs[job_id].reported:
                del self.jobs[job_id]
        try:
            self.boots.record()
        except OSError as exc:          # stays "restarted": the safe side
            log.warning("cannot record this boot in %s: %s", self.boots.path, exc)
        self.check_all()

    def _load_pidfile(self, job_id: int, tracked: Tracked, collect: bool = True) -> bool:
        info = safefs.read_json(self._files(job_id)["pid_path"])
        if not isinstance(info, dict):
            return False
        if tracked.job_pid is None and tracked.popen is not None and info.get("job_pid"):
            log.info("job %d started pid=%s gpus=%s monitor_pid=%s", job_id, info["job_pid"],
                     ",".join(map(str, tracked.spec.get("gpu_ids") or ())) or "-",
                     info.get("monitor_pid"))
        tracked.monitor_pid = info.get("monitor_pid")
        tracked.monitor_start = info.get("monitor_start")
        tracked.job_pid = info.get("job_pid")
        tracked.job_start = info.get("job_start")
        tracked.cgroup = info.get("cgroup")
        if info.get("uid") is not None:
            tracked.uid = info["uid"]
        if collect:
            self._collect_tree(tracked)
        return True

    def forget(self, job_id: int) -> None:
        tracked = self.jobs.pop(job_id, None)
        if tracked and tracked.popen is not None and tracked.popen.poll() is None:
            self.exiting.append(tracked.popen)

    def signal(self, job_id: int, signame: str, grace: float) -> None:
        tracked = self.jobs.get(job_id)
        if tracked is None:
            return
        if tracked.job_pid is None and not self._load_pidfile(job_id, tracked):
            tracked.pending_signal = (signame, grace)
            return
        if tracked.kill_deadline is not None:
            return          # already being stopped: a repeated order keeps the deadline
        sig = getattr(signal, signame)
        self._collect_tree(tracked)
        try:
            os.killpg(tracked.job_pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.error("job %d: cannot signal: %s", job_id, exc)
        tracked.kill_deadline = time.time() + grace
        log.info("job %d sent %s, SIGKILL in %gs", job_id, signame, grace)

    def forward(self, job_id: int, signame: str) -> None:
        """Pass a signal to the job's process group (`gjob attach` Ctrl-C): no stop, no
        SIGKILL afterwards; the job decides what the signal means."""
        tracked = self.jobs.get(job_id)
        if tracked is None or (tracked.job_pid is None
                               and not self._load_pidfile(job_id, tracked)):
            return
        try:
            os.killpg(tracked.job_pid, getattr(signal, signame))
            log.info("job %d forwarded %s", job_id, signame)
        except OSError as exc:
            log.warning("job %d: cannot forward %s: %s", job_id, signame, exc)

    # --- supervision ------------------------------------------------------------------

    def _monitor_process(self, tracked: Tracked) -> Optional[psutil.Process]:
        if tracked.monitor_pid is None:
            return None
        try:
            proc = psutil.Process(tracked.monitor_pid)
            if tracked.monitor_start is not None and abs(
                    proc.create_time() - tracked.monitor_start) > 1.0:
                return None   # the pid was reused by an unrelated process
            return proc
        except psutil.Error:
            return None

    def job_processes(self, tracked: Tracked) -> list:
        """The job's live processes: the monitor is a child subreaper, so every
        descendant of the job, even one that left its group and session or whose parent
        died, is a descendant of the monitor (the monitor itself is not counted)."""
        procs: dict = {}
        monitor = self._monitor_process(tracked)
        if monitor is not None:
            try:
                for p in monitor.children(recursive=True):
                    procs[p.pid] = p
            except psutil.Error:
                pass
        if tracked.job_pid is not None and tracked.job_pid not in procs:
            try:
                root = psutil.Process(tracked.job_pid)
                if tracked.job_start is None or abs(root.create_time()
                                                    - tracked.job_start) <= 1.0:
                    procs[root.pid] = root       # (else the pid names someone else now)
                    for p in root.children(recursive=True):
                        procs.setdefault(p.pid, p)
            except psutil.Error:
                pass
        if tracked.cgroup:
            # The kernel's list: it holds even processes whose monitor is gone.
            for pid in cgroup.processes(tracked.cgroup):
                if pid not in procs and pid != tracked.monitor_pid:
                    try:
                        procs[pid] = psutil.Process(pid)
                    except psutil.Error:
                        pass
        return list(procs.values())

    def _collect_tree(self, tracked: Tracked) -> None:
        """Remember every process of the job now, so that none escapes the final SIGKILL."""
        for p in self.job_processes(tracked):
            tracked.tree.setdefault(p.pid, p)

    def _kill_tree(self, tracked: Tracked) -> None:
        self._collect_tree(tracked)
        if tracked.cgroup:
            cgroup.kill_all(tracked.cgroup)
        # The job's group, only while one of its known processes is in it: an empty
        # group's id may name a stranger's group by now.
        if tracked.job_pid is not None and strays.in_group(tracked.job_pid,
                                                           tracked.tree.values()):
            try:
                os.killpg(tracked.job_pid, signal.SIGKILL)
            except OSError:
                pass
        for proc in tracked.tree.values():
            try:
                proc.kill()          # psutil refuses if the pid now names another process
            except psutil.Error:
                pass

    def monitor_alive(self, tracked: Tracked) -> bool:
        if tracked.popen is not None:
            return tracked.popen.poll() is None
        proc = self._monitor_process(tracked)
        try:
            return proc is not None and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def check(self, job_id: int) -> None:
        tracked = self.jobs.get(job_id)
        if tracked is None or tracked.reported:
            return
        if getattr(tracked.popen, "orphaned", False):
            tracked.popen = None   # its zygote died: watched by pid from now on, as adopted
        if tracked.kill_deadline is None and not tracked.pending_signal:
            status = safefs.read_json(self._files(job_id)["status_path"])
            if status is not None:      # ended, no stop pending: nothing to kill or walk
                self.report(job_id, status, pidfile=tracked.job_pid is None)
                return
        if tracked.job_pid is None:
            self._load_pidfile(job_id, tracked)
        if tracked.pending_signal and tracked.job_pid is not None:
            signame, grace = tracked.pending_signal
            tracked.pending_signal = None
            self.signal(job_id, signame, grace)
        status = safefs.read_json(self._files(job_id)["status_path"])
        if status is not None:
            if tracked.kill_deadline is not None:
                self._kill_tree(tracked)  # leftovers of a stopped job die with it
            self.report(job_id, status)
            return
        now = time.time()
        if tracked.kill_deadline is not None and now >= tracked.kill_deadline:
            log.warning("job %d ignored its stop signal: SIGKILL to its tree", job_id)
            self._kill_tree(tracked)
            tracked.kill_deadline = now + 5.0
        elif tracked.kill_deadline is not None:
            self._collect_tree(tracked)   # children forked while it shuts down die too
        if not self.monitor_alive(tracked):
            status = safefs.read_json(self._files(job_id)["status_path"])  # just ended?
            if status is not None:
                self.report(job_id, status)
            elif tracked.monitor_pid is None and now - tracked.launched_at < MONITOR_START_GRACE_SECS:
                pass
            else:
                self._monitor_vanished(job_id, tracked, now)
        elif (tracked.spec.get("memory_limit_mb") and tracked.job_pid and not tracked.cgroup
              and now >= tracked.next_memory_check):
            tracked.next_memory_check = now + self.config.launcher.memory_poll_secs
            self._check_memory(job_id, tracked)

    def _check_memory(self, job_id: int, tracked: Tracked) -> None:
        limit = tracked.spec["memory_limit_mb"]
        rss = 0
        procs = self.job_processes(tracked)
        for p in procs:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        rss_mb = rss // (1024 * 1024)
        if rss_mb > limit and tracked.kill_deadline is None:
            log.warning("job %d uses %d MB, over its %d MB limit: killing it", job_id, rss_mb,
                        limit)
            self._kill_tree(tracked)
            tracked.kill_deadline = time.time() + 5.0
            tracked.spec["memory_detail"] = (f"killed: memory {rss_mb} MB over the "
                                             f"{limit} MB limit")

    # --- a monitor that vanished (killed: by the job itself, `kill -9 $PPID`) ------------

    def _monitor_vanished(self, job_id: int, tracked: Tracked, now: float) -> None:
        """Nobody will record this job's end: kill whatever is left of it first (its
        GPUs are in use until then), and report it only once nothing is left."""
        found = {p.pid: p for p in self.job_processes(tracked)}
        found.update((pid, p) for pid, p in tracked.tree.items() if pid not in found)
        started = tracked.monitor_start or tracked.launched_at
        if started >= psutil.boot_time() - 1.0:     # else nothing of it survived a reboot
            # The monitor's session id is its pid: trusted only when we just reaped
            # the monitor ourselves (its pid was ours until then) and nobody has it now.
            session = (tracked.monitor_pid if tracked.popen is not None
                       and tracked.monitor_pid and not psutil.pid_exists(tracked.monitor_pid)
                       else None)
            uid, env = self._fingerprint(tracked)
            strays.scan(found, since=started - 1.0, session=session, uid=uid, env=env)
        procs = list(found.values())
        if tracked.strays_since is None:
            tracked.strays_since, tracked.strays_found = now, len(procs)
            if procs:
                log.warning("job %d: its monitor vanished; killing its %d processes",
                            job_id, len(procs))
        if tracked.job_pid is not None and strays.in_group(tracked.job_pid, procs):
            try:
                os.killpg(tracked.job_pid, signal.SIGKILL)
            except OSError:
                pass
        if tracked.cgroup:
            cgroup.kill_all(tracked.cgroup)
        strays.kill(procs)
        left = strays.still_running(procs)
        if left and now - tracked.strays_since < STRAY_KILL_SECS:
            return                   # the next check looks again (and kills new forks)
        if tracked.cgroup:
            cgroup.remove(tracked.cgroup)
        code = tracked.popen.poll() if tracked.popen is not None else None
        self.report(job_id, {"exit_code": None, "finished_at": now,
                             "detail": strays.vanished_detail(code, tracked.strays_found,
                                                              left)})

    def _fingerprint(self, tracked: Tracked) -> tuple:
        """(uid, environment) the job was started with: how `strays.scan` recognises
        its processes that left the monitor's session."""
        try:
            account = runas.target_account(tracked.spec.get("run_as_user"))
        except runas.Refused:
            return None, None
        env = runas.job_environment(build_env(tracked.spec, self.base_env), account)
        uid = tracked.uid if tracked.uid is not None else (
            account.pw_uid if account else os.geteuid())
        return uid, env

    def check_all(self) -> None:
        for job_id in list(self.jobs):
            self.check(job_id)
        if self.exiting:
            self.exiting = [p for p in self.exiting if p.poll() is None]
        if self.forks is not None:
            self.forks.maintain()

    def report(self, job_id: int, info: dict, pidfile: bool = False) -> None:
        """Send the job's end; then log it (with `pidfile`, its pid file is read first,
        for its "started" line)."""
        tracked = self.jobs.get(job_id)
        if tracked is not None:
            if tracked.spec.get("memory_detail"):
                info = dict(info, detail=tracked.spec["memory_detail"])
            elif tracked.kill_deadline is not None and info.get("signal"):
                # Ended by the stop the scheduler ordered (cancel, time limit): the
                # scheduler's own reason stands ("killed by SIGINT" would replace
                # "time limit reached"); the exit code still tells how it ended.
                info = dict(info, detail=None)
            elif tracked.kill_deadline is None:
                # A failure says why when its log's tail does (CUDA OOM, NCCL, ...);
                # not a job the scheduler stopped: its reason stands.
                info = diagnose.explain_exit(info, self._files(job_id)["log_path"])
            tracked.reported = info
        self.send(("exited", job_id, info))
        if tracked is not None:
            if pidfile:
                self._load_pidfile(job_id, tracked, collect=False)
            _log_exit(job_id, tracked, info)

    def send(self, msg) -> None:
        if self.channel is not None:
            self.channel.send(msg)

    # --- the executor seam (executor.py) -------------------------------------------

    description = "executor: local (jobs run under monitors on this machine)"

    def run_once(self) -> None:
        with self.lock:
            self.check_all()

    def wait(self, timeout: float, stop=None) -> None:
        if stop is not None:
            stop.wait(timeout)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.forks is not None:
            self.forks.close()
        log.info("launcher stopped; running jobs continue under their monitors")

    # --- the notification socket ----------------------------------------------------

    def serve_notifications(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(64)
            except OSError:
                return
            try:
                job_id = int(data)
            except ValueError:
                continue
            with self.lock:
                self.check(job_id)


def _log_exit(job_id: int, tracked: Tracked, info: dict) -> None:
    fields = f"exit_code={info.get('exit_code')}"
    if info.get("signal"):
        try:
            fields += f" signal={signal.Signals(info['signal']).name}"
        except (ValueError, TypeError):
            fields += f" signal={info['signal']}"
    ended = info.get("finished_at")
    if isinstance(ended, (int, float)):
        fields += f" runtime={max(0.0, ended - tracked.launched_at):.1f}s"
    if info.get("detail"):
        fields += f' detail="{info["detail"]}"'
    log.info("job %d exited %s", job_id, fields)


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return time.time()


def open_local(ctx: WorkerContext) -> "Launcher":
    """The local executor: monitors on this machine, their end notices on a socket."""
    paths = ctx.paths
    address = notify_address(paths.data_dir)
    sock = bind_notify_socket(address)
    cgroup_base = cgroup.detect(instance=cgroup.instance_name(paths.data_dir))
    log.info("memory limits: %s", f"cgroup v2 under {cgroup_base}" if cgroup_base
             else "sampled every [launcher] memory_poll_secs (no usable cgroup v2)")
    launcher = Launcher(paths, ctx.config, address, cgroup_base=cgroup_base)
    if launcher.forks is not None:
        launcher.forks.start()          # ready (imported) before the first job
    threading.Thread(target=launcher.serve_notifications, args=(sock,), daemon=True,
                     name="notify").start()
    return launcher


def main(ctx: WorkerContext, ready=None) -> None:
    setup_worker("launcher", ctx)
    stop = stop_event_on()
    # One launcher at a time (a replacement waits here for its predecessor to exit).
    hold_worker_lock(ctx.paths.data_dir / "launcher.lock")
    from gflow.launcher.executor import open_executor
    executor = open_executor(ctx, open_local)     # the executor seam (executor.py)
    log.info("%s", executor.description)
    executor.channel = HubClient(ctx.address, ctx.authkey, "launcher", executor.on_message)
    signal_ready(ready)
    while not stop.is_set():
        executor.run_once()
        executor.wait(POLL_SECS, stop)
    executor.close()
