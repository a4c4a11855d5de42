"""Start a worker as a fresh interpreter and watch it through a pidfd, with no helper process."""

# multiprocessing's "spawn" start method did this before, but it also starts its
# resource tracker (one more Python process, ~6 MB of PSS for the daemon's life) for
# named semaphores and shared memory that gflowd never uses. The worker gets its
# arguments as two pickles on its stdin (gflow.daemon.entry) and the sockets and pipes it
# needs as inherited fds; nothing else of the master's leaks into it (close_fds).

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from multiprocessing.connection import wait
from typing import Optional

# What the child runs: the small gflow.daemon.entry, which then imports its worker.
CHILD_CODE = "from gflow.daemon.entry import child_main; child_main()"


class WorkerProcess:
    """The master's handle on one worker: the part of multiprocessing.Process it uses."""

    def __init__(self, popen: subprocess.Popen, sentinel: int, name: str):
        self.popen = popen
        self.pid = popen.pid
        self.name = name
        # Readable once the worker has exited: what the master's loop waits on.
        self.sentinel: Optional[int] = sentinel

    @property
    def exitcode(self) -> Optional[int]:
        """None while it runs, else its exit status (-N: killed by signal N)."""
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait up to `timeout` for the worker to exit and reap it; the sentinel is closed
        once it has (nobody waits on a finished worker)."""
        if self.popen.poll() is None and self.sentinel is not None:
            wait([self.sentinel], timeout)
        if self.popen.poll() is not None and self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None

    def terminate(self) -> None:
        self.popen.terminate()          # both: nothing once it has been reaped

    def kill(self) -> None:
        self.popen.kill()


def start_worker(name: str, args: tuple, fds: dict) -> WorkerProcess:
    """Run `gflow.daemon.entry.run_worker(name, *args, **kwargs)` in a new interpreter,
    where kwargs are made from the fds it inherits under the same numbers (see
    entry._inherited: {keyword: fd or None}). `args` must pickle with plain pickle."""
    prologue = pickle.dumps((name, list(sys.path), os.getpid()))
    payload = pickle.dumps((args, fds))
    popen = subprocess.Popen([sys.executable, "-c", CHILD_CODE], stdin=subprocess.PIPE,
                             pass_fds=[fd for fd in fds.values() if fd is not None],
                             close_fds=True)
    try:
        sentinel = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):   # no pidfd_open (Linux < 5.3)
        sentinel = _exit_pipe(popen.pid)
    try:
        popen.stdin.write(prologue + payload)
        popen.stdin.close()
    except OSError:                 # it died at once: the master's loop sees it exit
        pass
    return WorkerProcess(popen, sentinel, name)


def _exit_pipe(pid: int) -> int:
    """A sentinel without pidfds: a thread waits for the worker to exit (leaving it to
    be reaped by the master's loop) and then closes the write end of a pipe."""
    import threading
    r, w = os.pipe()

    def watch() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except OSError:             # already reaped
            pass
        finally:
            os.close(w)

    threading.Thread(target=watch, daemon=True, name=f"watch-{pid}").start()
    return r
