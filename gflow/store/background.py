"""A snapshot written by a forked child, from its copy-on-write view of the scheduler's memory."""

# Why a child: building the snapshot (job_to_wire of every job), encoding it and writing
# it takes seconds at 100k jobs, and the scheduler answers nothing meanwhile. fork()
# costs milliseconds (page tables) and gives the child a frozen copy of the state; the
# parent goes on at once and polls the child (waitpid WNOHANG) after each batch.
#
# The child runs in a copy of a process that has other threads, which are gone in the
# child along with whatever locks they held: it uses no logging, no locks, no imports,
# nothing but the state builder it was given, msgpack and the file primitives, then
# leaves by os._exit (no atexit handlers, no buffered output flushed twice). It dies
# with its parent (PR_SET_PDEATHSIG), so that no orphan writes state.msgpack behind the
# back of the scheduler that replaces a killed one. Store (store.py) owns the WAL
# segments that make this safe; this module only runs the child and reports its end.

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

_PR_SET_PDEATHSIG = 1
_libc = None


def _prctl():
    """libc's prctl, loaded in the parent (loading a library in the child could lock)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return getattr(_libc, "prctl", None) if _libc else None


@dataclass
class Child:
    pid: int
    segments: list[int]                 # the WAL segments its snapshot makes redundant
    started: float = field(default_factory=time.monotonic)


def start(write: Callable[[], None]) -> int:
    """Fork a child that runs `write()` and exits 0 when it returned, 1 when it raised.
    Returns the child's pid in the parent; raises OSError when fork failed."""
    prctl = _prctl()
    parent = os.getpid()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process: the child here touches
        # nothing another thread may have held (see the top of this module).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:                                # the child: nothing in here may log or lock
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:      # the parent died before prctl took effect
            os._exit(1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)      # no inherited Python handler runs
        title = sys.modules.get("setproctitle")     # only if the worker loaded it
        if title is not None:
            title.setproctitle("gflowd: snapshot writer")
        gc.disable()                    # a collection would touch (copy) every page
        write()
        code = 0
    except BaseException:               # noqa: BLE001 - reported as the exit status
        code = 1
    finally:
        os._exit(code)
    return 0                            # not reached


def poll(pid: int) -> Optional[str]:
    """None while the child runs; "" when it exited 0; otherwise why it failed."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "its exit status was lost (reaped elsewhere)"
    if got == 0:
        return None
    return describe(status)


def stop(pid: int) -> None:
    """Kill the child and wait for it: once this returns it can no longer write a file."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def describe(status: int) -> str:
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return "" if code == 0 else f"the writer exited with status {code}"
    if os.WIFSIGNALED(status):
        return f"the writer was killed by signal {os.WTERMSIG(status)}"
    return f"the writer ended with wait status {status}"
