"""`gflowd up`'s start of the master: a fork of the command itself, not a new interpreter."""

# Why a fork (issue 21: restart): a new `python -m gflow.cli.gflowd up --foreground`
# spent ~150 ms at rest (more on a busy machine) starting the interpreter, importing
# this package and building the parser before the master began, all of which the
# command has done already. The child becomes what that process was: its own session,
# stdin /dev/null, stdout and stderr the daemon log, no other descriptor, "/" as its
# directory, the configuration read again from there; then it runs the foreground
# master (`run`) and never returns into the command.

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

START_TIMEOUT_SECS = 30.0
# A large state takes longer to load (1M jobs, 670 MB: ~70 s on a loaded 2-core VM):
# `gflowd up` waits this much longer per byte of state before it gives up.
LOAD_SECS_PER_BYTE = 1 / 5e6


def start_timeout(p) -> float:
    size = 0
    wal = os.path.basename(p.wal_file)
    try:      # the WAL's segments too (state.wal.<n>, left by a background snapshot)
        segments = [os.path.join(p.data_dir, n) for n in os.listdir(p.data_dir)
                    if n.startswith(wal + ".") and n[len(wal) + 1:].isdigit()]
    except OSError:
        segments = []
    for path in (p.state_file, p.wal_file, p.legacy_state_file, *segments):
        try:
            size += os.path.getsize(path)
        except OSError:
            pass
    return START_TIMEOUT_SECS + size * LOAD_SECS_PER_BYTE


class Master:
    """The forked master as `gflowd up` watches it (subprocess.Popen's poll/returncode)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                got, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:       # reaped elsewhere: it has ended
                self.returncode = 1
            else:
                if got:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def fork_master(log_fd: int, run: Callable[[], int]) -> Master:
    """Fork; in the child set up as above and end with `run()`'s exit status."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()              # nothing buffered is written twice
    pid = os.fork()
    if pid:
        return Master(pid)
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        os.chdir("/")
        code = run()
    except BaseException:  # noqa: BLE001 - told in the log, as a new process's would be
        import traceback
        traceback.print_exc()
    finally:
        from gflow.procexit import exit_now
        exit_now(code if isinstance(code, int) else 1)
