"""What every daemon worker does first: its title, its logging, and dying with its master."""

from __future__ import annotations

import ctypes
import faulthandler
import fcntl
import logging
import os
import select
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Optional

PR_SET_PDEATHSIG = 1
M_ARENA_MAX = -8            # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1
MMAP_THRESHOLD = 8 * 1024 * 1024


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker needs, picklable for the `spawn` start method."""
    config: Any                 # gflow.config.Config
    env: dict                   # the environment the paths are derived from
    address: str                # the scheduler hub's channel address
    authkey: bytes
    log_level: int = logging.INFO
    gpus_from_cli: bool = False
    started_at: float = 0.0     # when the master started: the daemon's uptime counts from it
    log_file: Optional[str] = None  # the daemon log (gflowd.log) when there is one
    log_follow: bool = False        # stderr is that log: move fds 1 and 2 along on rotation

    @property
    def paths(self):
        from gflow.paths import Paths
        return Paths.from_env(self.env)


from gflow.logutil import LOG_FORMAT  # noqa: E402  (re-exported)


def set_title(title: str) -> None:
    # Keep /proc/<pid>/environ readable (by default setproctitle writes the title over
    # it): operators and tests find a daemon's processes by their HOME.
    os.environ.setdefault("SPT_NOENV", "1")
    try:
        import setproctitle
        setproctitle.setproctitle(title)
    except ImportError:  # the title is a convenience; the daemon works without it
        pass


def setup_worker(name: str, ctx: WorkerContext) -> None:
    """Title, logging (the daemon log file and/or the inherited stderr: see
    gflow.logutil), SIGINT ignored (the master decides). malloc and the tie to the master
    were set up before, by gflow.daemon.entry."""
    from gflow.logutil import configure_daemon_logging
    set_title(f"gflowd: {name}")
    configure_daemon_logging(ctx.log_level, ctx.log_file, process_name=name,
                             stderr_is_log=ctx.log_follow)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # `kill -USR2 <worker>` writes every thread's stack to the daemon log (a stuck worker).
    faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True)


def tune_malloc() -> None:
    """glibc malloc settings for a gflowd process (issue 21: memory). One arena: by default
    every thread that allocates gets one and keeps what it freed (the API worker's request
    threads each held a copy of the last listing they served: 60 -> 240 MB at 10k jobs
    after a dozen `GET /jobs`); the GIL runs one thread at a time, so more arenas buy no
    parallelism. Fixed mmap and trim thresholds: by default freeing one 72 MB listing
    (100k jobs) raises them to 32 and 64 MB, and up to 64 MB of freed heap stays in the
    process for good. Below 8 MB (a 10k-job listing is 7 MB) blocks still come from the
    heap and are reused without new page faults. Only this process: exec'd jobs start
    afresh."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):   # not glibc
        return
    mallopt(M_ARENA_MAX, 1)
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)


def release_free_heap() -> None:
    """Give freed heap pages back to the system (glibc's malloc_trim). After a large
    listing is sent, up to 2 x MMAP_THRESHOLD of freed heap would otherwise stay in the
    process (the API worker's PSS at 10k jobs was 29-44 MB from run to run)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass


def exit_with_master(master: int, name: str) -> None:
    """Exit when the master dies, even by SIGKILL, so that no orphan keeps serving the
    port: at once (a thread waits on a pidfd of the master) and by SIGTERM (PDEATHSIG,
    also where there are no pidfds). If it is gone already, go now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    try:
        pidfd: Optional[int] = os.pidfd_open(master)
    except (AttributeError, OSError):   # Linux < 5.3, or the master is gone
        pidfd = None
    if os.getppid() != master:          # it died before prctl took effect
        os._exit(0)
    if pidfd is None:
        return

    def wait_master() -> None:
        select.select([pidfd], [], [])
        logging.getLogger("gflow").warning("master exited; %s worker exiting", name)
        os._exit(0)

    threading.Thread(target=wait_master, name="master-watch", daemon=True).start()


def stop_event_on(signals=(signal.SIGTERM,)) -> threading.Event:
    """An event set by the given signals: handlers only set a flag, the loop acts."""
    event = threading.Event()

    def handler(_signum, _frame) -> None:
        event.set()

    for sig in signals:
        signal.signal(sig, handler)
    return event


def signal_ready(ready) -> None:
    """Tell the master this worker serves (it waits for that while replacing workers)."""
    if ready is None:
        return
    try:
        ready.send(True)
        ready.close()
    except (OSError, EOFError, ValueError):
        pass


def hold_worker_lock(path) -> int:
    """An exclusive flock that only one worker of a kind may hold (the scheduler owns the
    journal, the launcher the notification socket). A replacement started during a
    reload waits here, already imported, until its predecessor has exited: never two at
    once, even when the predecessor is an orphan of a killed master. The fd stays open
    (and the lock held) until the process exits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # (workers are not multiprocessing children: the lock's name says which one)
        logging.getLogger("gflow").info("waiting for the previous %s worker to exit",
                                        os.path.basename(path).split(".")[0])
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
