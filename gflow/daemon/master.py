"""The gflowd master: holds the lock and the port, starts the three workers and keeps them alive."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import time
from dataclasses import replace
from multiprocessing.connection import Pipe, wait
from typing import Callable, Optional

from gflow import __version__
from gflow.daemon.listeners import (
    StartupError, open_listener, open_unix_listener, remove_unix_socket, socket_path,
)
from gflow.daemon.spawn import WorkerProcess, start_worker
from gflow.gpu import check_fake_gpus
from gflow.identity import is_loopback
from gflow.ipc import channel_address
from gflow.workerproc import WorkerContext, set_title

log = logging.getLogger("gflow.master")

WORKERS = ("scheduler", "launcher", "api")
# supervisord's BACKOFF/FATAL idea: restart with growing delays, give up after a burst.
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
FAILURE_WINDOW_SECS = 120.0
MAX_FAILURES_IN_WINDOW = 6
STOP_TIMEOUT_SECS = 15.0
# How long a replacement worker may take to start serving during a reload.
READY_TIMEOUT_SECS = 60.0
# How long a new master waits for the workers of a killed predecessor to exit.
ORPHAN_WAIT_SECS = 15.0
# How often the master compares the daemon log's size with [logging] max_bytes.
LOG_CHECK_SECS = 1.0


class LockFile:
    """`gflowd.lock`: an exclusive flock plus the holder's pid, pgid and start time."""

    def __init__(self, path):
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                holder = read_lock_info(self.path)
                pid = holder.get("pid", "?") if holder else "?"
                raise StartupError(f"gflowd is already running (pid {pid}) for "
                                   f"{self.path.parent}") from None
            raise
        info = {"pid": os.getpid(), "pgid": os.getpgid(0), "started_at": time.time(),
                "version": __version__}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd

    def update(self, **extra) -> None:
        info = read_lock_info(self.path) or {}
        info.update(extra)
        # One write, never an empty file in between: clients read it at any moment
        # (padding keeps the JSON valid when the new text is shorter).
        data = json.dumps(info).encode()
        data = data.ljust(os.fstat(self.fd).st_size)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_lock_info(path) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.loads(f.read() or "null")
    except (OSError, ValueError):
        return None


def check_data_dir(paths, *, traversable: bool = False) -> None:
    """Create the data and logs directories 0700; refuse ones another account owns or
    others may write (OpenSSH's rule: never trust what someone else could have changed),
    and take back read access from others (the state holds environments).

    `traversable` (a root gflowd handing jobs to Slurm as their owners): 0711, so that
    slurmstepd, running as the job's owner, can open the job's log, which gflowd creates
    for that owner; nobody else can list the directories, and every other file in them
    is 0600."""
    try:
        os.makedirs(paths.data_dir.parent, exist_ok=True)
        for directory in (paths.data_dir, paths.logs_dir):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
            _check_private_dir(directory, 0o711 if traversable else 0o700)
        probe = paths.data_dir / f".write-test-{os.getpid()}"
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"state directory {paths.data_dir} is not writable ({exc.strerror}): "
                           "fix its permissions or set XDG_DATA_HOME") from None


def slurm_as_owners(config) -> bool:
    """A root gflowd whose jobs Slurm runs as their owners (docs/slurm.md)."""
    return (config.executor.kind == "slurm" and os.geteuid() == 0
            and config.security.run_as == "submitter")


def _check_private_dir(directory, mode: int = 0o700) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise StartupError(f"{directory} belongs to uid {st.st_uid}, not to the account "
                               "running gflowd: chown it or set XDG_DATA_HOME")
        if st.st_mode & 0o022:
            raise StartupError(f"{directory} is writable by others (mode "
                               f"{st.st_mode & 0o777:o}): run `chmod 700 {directory}`")
        if st.st_mode & 0o777 != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def wait_ready(reader, proc, timeout: float) -> bool:
    """True once the worker said it serves; False if it died or took too long."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready = wait([reader, proc.sentinel], timeout=remaining)
        if reader in ready:
            try:
                return bool(reader.recv())
            except (EOFError, OSError):
                return False
        if proc.sentinel in ready:
            return False


def process_identity(pid: int) -> Optional[list]:
    import psutil
    try:
        return [pid, psutil.Process(pid).create_time()]
    except psutil.Error:
        return None


def _pid_exists(ident) -> bool:
    """False only for a recorded worker pid that is certainly gone (signal 0 says so)."""
    try:
        pid = int(ident[0])
        if pid > 0:
            os.kill(pid, 0)
            return True
    except ProcessLookupError:
        return False
    except (OSError, TypeError, ValueError, IndexError, OverflowError):
        pass
    return True                 # not ours to signal, or unreadable: psutil decides


def wait_orphans(recorded: dict, timeout: float = ORPHAN_WAIT_SECS) -> None:
    """Workers of a master that was killed exit by themselves (they watch it); wait for
    them, so that the port, the journal and the channels are free, then kill stragglers."""
    if not any(_pid_exists(ident) for ident in (recorded or {}).values()):
        return                  # the usual case (a clean stop): no psutil import (12 ms)
    import psutil
    procs = []
    for name, ident in (recorded or {}).items():
        try:
            pid, created = ident
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) > 1.0:
                continue
            if not any(arg.startswith("gflowd:") for arg in proc.cmdline()[:1]):
                continue
            procs.append(proc)
        except (psutil.Error, TypeError, ValueError):
            continue
    if not procs:
        return
    log.warning("waiting for %d worker(s) of a previous gflowd to exit: %s", len(procs),
                ", ".join(str(p.pid) for p in procs))
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        log.error("previous worker pid %d did not exit: killing it", proc.pid)
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


class Worker:
    def __init__(self, name: str):
        self.name = name
        self.process: Optional[WorkerProcess] = None
        self.ready = None                   # the reading end of its "I serve" pipe
        self.failures: list[float] = []
        self.restart_at: Optional[float] = None
        self.backoff = BACKOFF_START
        self.stopping = False


class Master:
    def __init__(self, config, env: dict, *, log_level: int = logging.INFO,
                 gpus_from_cli: bool = False, log_file=None, log_follow: bool = False,
                 level_for: Optional[Callable] = None):
        from gflow.paths import Paths
        self.config = config
        self.env = env
        self.paths = Paths.from_env(env)
        self.log_level = log_level
        # The daemon log: only the master rotates it (gflow.logutil); `level_for(config)`
        # recomputes the level when a reload changes [logging] level.
        self.log_file = str(log_file) if log_file is not None else None
        self.log_follow = log_follow
        self.level_for = level_for
        self._log_checked = 0.0
        self.gpus_from_cli = gpus_from_cli
        self.workers = {name: Worker(name) for name in WORKERS}
        self.signals: list[int] = []
        self.listener: Optional[socket.socket] = None
        self.unix_listener: Optional[socket.socket] = None
        self.unix_path = None
        self.lock = LockFile(self.paths.lock_file)
        self.ctx: Optional[WorkerContext] = None
        self.overrides: Optional[dict] = None
        self.started_at = time.time()
        self.reloads = 0

    # --- start-up -------------------------------------------------------------------

    def prepare(self) -> None:
        # A bad simulated-GPU spec would only show as workers dying over and over.
        problem = check_fake_gpus(self.env)
        if problem:
            raise StartupError(problem)
        check_data_dir(self.paths, traversable=slurm_as_owners(self.config))
        previous = read_lock_info(self.paths.lock_file) or {}
        self.lock.acquire()
        wait_orphans(previous.get("workers") or {})
        daemon = self.config.daemon
        self.listener = open_listener(daemon.host, daemon.port)
        port = self.listener.getsockname()[1]
        self.unix_path = socket_path(self.config, self.paths, port)
        if self.unix_path is not None:
            self.unix_listener = open_unix_listener(self.unix_path)
        self.lock.update(host=daemon.host, port=port,
                         socket=str(self.unix_path) if self.unix_path else None)
        if not is_loopback(self.listener.getsockname()[0]):
            log.warning("listening on %s: callers from other hosts are anonymous (they may "
                        "read, never change: see [security])", daemon.host)
        try:
            address = channel_address(self.paths.data_dir)   # in <data_dir>/run (0700)
        except PermissionError as exc:
            raise StartupError(f"{exc.strerror}") from None
        self.ctx = WorkerContext(
            config=self.config, env=self.env, address=address,
            authkey=os.urandom(32), log_level=self.log_level, gpus_from_cli=self.gpus_from_cli,
            started_at=self.started_at, log_file=self.log_file, log_follow=self.log_follow)

    def start_process(self, name: str):
        """Start one worker process; returns it and the reading end of its ready pipe."""
        reader, writer = Pipe(duplex=False)
        fds = {"ready": writer.fileno()}
        if name == "api":
            fds["listen_socket"] = self.listener.fileno()
            fds["unix_socket"] = self.unix_listener.fileno() if self.unix_listener else None
        try:
            proc = start_worker(name, (self.ctx,), fds)
        finally:
            writer.close()
        log.info("started %s worker pid=%d", name, proc.pid)
        return proc, reader

    def spawn(self, worker: Worker) -> None:
        proc, reader = self.start_process(worker.name)
        self._adopt_process(worker, proc, reader)

    def _adopt_process(self, worker: Worker, proc, reader) -> None:
        if worker.ready is not None:
            worker.ready.close()
        worker.process, worker.ready = proc, reader
        worker.stopping = False
        self.record_workers()

    def record_workers(self) -> None:
        """Worker pids in the lock file: a master started after this one was killed waits
        for them to go before it binds the port."""
        if self.lock.fd is None:
            return
        workers = {}
        for w in self.workers.values():
            if w.process is not None and w.process.pid:
                ident = process_identity(w.process.pid)
                if ident:
                    workers[w.name] = ident
        try:
            self.lock.update(workers=workers)
        except OSError as exc:
            log.warning("could not record the workers in %s: %s", self.lock.path, exc)

    # --- the loop -------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        set_title("gflowd: master")
        self.prepare()
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)
        for name in WORKERS:
            self.spawn(self.workers[name])
        log.info("gflowd %s master pid=%d listening on %s:%s", __version__, os.getpid(),
                 self.config.daemon.host, self.listener.getsockname()[1])
        try:
            while True:
                sentinels = [w.process.sentinel for w in self.workers.values()
                             if w.process is not None]
                ready = wait(sentinels + [rfd], timeout=self.wake_in())
                if rfd in ready:
                    try:
                        os.read(rfd, 512)
                    except BlockingIOError:
                        pass
                while self.signals:
                    sig = self.signals.pop(0)
                    if sig in (signal.SIGTERM, signal.SIGINT):
                        log.info("received %s: stopping", signal.Signals(sig).name)
                        return self.stop()
                    self.reload()
                if not self.supervise():
                    return self.stop(code=1)
                self.check_log()
        finally:
            self.lock.release()

    def wake_in(self) -> float:
        """How long the loop may sleep: until a worker is due to be restarted (its
        backoff ends), at most LOG_CHECK_SECS; signals and worker exits wake it anyway."""
        now = time.monotonic()
        due = [w.restart_at - now for w in self.workers.values() if w.restart_at is not None]
        return max(0.0, min(due + [LOG_CHECK_SECS]))

    def check_log(self, now: Optional[float] = None) -> None:
        """Rotate the daemon log once it passed [logging] max_bytes (at most once a
        second). Only the master rotates; every process reopens the file by itself."""
        if self.log_file is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._log_checked < LOG_CHECK_SECS:
            return
        self._log_checked = now
        from gflow.logutil import rotate
        limits = self.config.logging
        if rotate(self.log_file, limits.max_bytes, limits.backups):
            for handler in logging.getLogger().handlers:
                reopen = getattr(handler, "reopenIfNeeded", None)
                if reopen is not None:
                    reopen()
            log.info("log rotated (max_bytes=%d backups=%d)", limits.max_bytes, limits.backups)

    def supervise(self) -> bool:
        """Restart dead workers with backoff; False once one keeps dying (FATAL)."""
        now = time.monotonic()
        for worker in self.workers.values():
            proc = worker.process
            if proc is not None and not proc.is_alive():
                code = proc.exitcode
                proc.join(0)
                worker.process = None
                worker.failures = [t for t in worker.failures if now - t < FAILURE_WINDOW_SECS]
                worker.failures.append(now)
                if len(worker.failures) > MAX_FAILURES_IN_WINDOW:
                    log.critical("%s worker died %d times in %.0fs (last exit %s): giving up",
                                 worker.name, len(worker.failures), FAILURE_WINDOW_SECS, code)
                    return False
                delay = 0 if len(worker.failures) == 1 else worker.backoff
                worker.backoff = min(worker.backoff * 2, BACKOFF_MAX) if delay else BACKOFF_START
                worker.restart_at = now + delay
                log.error("%s worker exited (code %s); restarting in %.1fs", worker.name, code,
                          delay)
            if worker.process is None and worker.restart_at is not None \
                    and now >= worker.restart_at:
                worker.restart_at = None
                self.spawn(worker)
        return True

    def stop_worker(self, worker: Worker, timeout: float = STOP_TIMEOUT_SECS) -> None:
        proc = worker.process
        if proc is None:
            return
        self.terminate_worker(worker)
        proc.join(timeout)
        if proc.is_alive():
            log.error("%s worker did not stop in %.0fs: killing it", worker.name, timeout)
            proc.kill()
            proc.join(5)
        worker.process = None
        if worker.ready is not None:
            worker.ready.close()
            worker.ready = None

    def terminate_worker(self, worker: Worker) -> None:
        """Ask a worker to stop (SIGTERM, once); stop_worker waits for it."""
        proc = worker.process
        if proc is None or worker.stopping:
            return
        worker.stopping = True
        if proc.is_alive():
            proc.terminate()

    def stop(self, code: int = 0) -> int:
        # The API (no new requests; it finishes those it has, which the scheduler still
        # answers) and the launcher (jobs keep running under their monitors) stop side
        # by side; the scheduler last, so its final commit sees everything.
        for name in ("api", "launcher"):
            self.terminate_worker(self.workers[name])
        for name in ("api", "launcher", "scheduler"):
            self.stop_worker(self.workers[name])
        if self.listener is not None:
            self.listener.close()
        remove_unix_socket(self.unix_listener, self.unix_path)
        log.info("gflowd stopped")
        return code

    def reload(self) -> None:
        """Zero-downtime reload: the port stays open; workers are replaced one by one."""
        from gflow.config import load_config
        extra_path = self.paths.data_dir / "reload-overrides.json"
        try:
            with open(extra_path) as f:
                self.overrides = {**(self.overrides or {}), **json.load(f)}
            os.unlink(extra_path)
        except (OSError, ValueError):
            pass
        try:
            self.config = load_config(self.env.get("GFLOW_CONFIG_PATH") or None, env=self.env,
                                      overrides=self.overrides)
            for warning in self.config.warnings:
                log.warning("%s", warning)
        except Exception as exc:  # a bad edit must not take the daemon down
            log.error("reload: keeping the old configuration: %s", exc)
            self.reloads += 1      # `gflowd reload` waits for this count and shows the error
            self.lock.update(reloads=self.reloads, last_reload={
                "at": time.time(), "secs": 0.0,
                "error": f"configuration not reloaded: {exc}"})
            return
        if self.level_for is not None:
            level = self.level_for(self.config)
            if level != self.log_level:
                log.info("log level %s", logging.getLevelName(level))
                self.log_level = level
                logging.getLogger().setLevel(level)
        self.ctx = replace(self.ctx, config=self.config, log_level=self.log_level,
                           gpus_from_cli=self.gpus_from_cli or "daemon.gpus" in (self.overrides or {}))
        started = time.monotonic()
        log.info("reloading workers")
        # All three replacements start at once and import while the old workers serve.
        fresh = {name: self.start_process(name) for name in ("scheduler", "launcher", "api")}
        problems = [name for name in ("scheduler", "launcher", "api")
                    if not self.replace_worker(self.workers[name], *fresh[name])]
        secs = time.monotonic() - started
        self.reloads += 1
        self.lock.update(reloads=self.reloads, last_reload={
            "at": time.time(), "secs": round(secs, 3),
            "error": f"worker(s) not ready: {', '.join(problems)}" if problems else None})
        log.info("reload complete in %.2fs", secs)

    def replace_worker(self, worker: Worker, proc, reader) -> bool:
        """Hand over from the old worker to `proc`, started beforehand. The scheduler and
        the launcher take an exclusive lock before they touch their resources (the
        journal, the notification socket), so the new one takes over the moment the old
        one has gone; the scheduler's channel asks the other workers to hold their
        requests meanwhile (nothing is refused). Two API workers may share the listening
        socket: the old one stops accepting once the new one serves, and finishes the
        requests it has."""
        old = worker.process
        if worker.name == "api":
            ok = wait_ready(reader, proc, READY_TIMEOUT_SECS)
            self._retire(worker, old)
        else:
            self._retire(worker, old)
            ok = wait_ready(reader, proc, READY_TIMEOUT_SECS)
        self._adopt_process(worker, proc, reader)
        if not ok:
            log.error("reload: the new %s worker (pid %d) is not ready after %.0fs",
                      worker.name, proc.pid, READY_TIMEOUT_SECS)
        return ok

    def _retire(self, worker: Worker, old) -> None:
        if old is None:
            return
        worker.stopping = True
        if old.is_alive():
            old.terminate()
        old.join(STOP_TIMEOUT_SECS)
        if old.is_alive():
            log.error("%s worker pid %d did not stop in %.0fs: killing it", worker.name, old.pid,
                      STOP_TIMEOUT_SECS)
            old.kill()
            old.join(5)


def configure_logging(level: int, log_file=None):
    """The master's logging: `log_file` (rotated by the master) and/or stderr."""
    from gflow.logutil import configure_daemon_logging
    return configure_daemon_logging(level, log_file, process_name="master")
