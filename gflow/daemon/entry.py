"""What a worker process runs: its module is imported there, not in the master."""

# The master used to import each worker's module to hand its `main` to multiprocessing,
# which pickles a function by name only: the child imports the module anyway. That cost
# the master ~0.1 s before it could spawn the scheduler (and the API's Flask after it),
# on every start. The child imports this small module instead, then the worker's.

from __future__ import annotations

import os
import sys


def run_worker(name: str, *args, **kwargs) -> None:
    if name == "scheduler":
        from gflow.scheduler.service import main
    elif name == "launcher":
        from gflow.launcher.service import main
    else:
        from gflow.api.service import main
    main(*args, **kwargs)


def child_main() -> None:
    """The worker started by gflow.daemon.spawn: read (name, sys.path, master pid), then
    its arguments, from stdin; sockets and the ready pipe arrive as inherited fds."""
    import pickle
    stdin = os.fdopen(0, "rb", closefd=False)
    name, sys.path[:], master = pickle.load(stdin)
    from gflow.workerproc import exit_with_master, tune_malloc
    tune_malloc()                   # before any thread: one malloc arena for them all
    exit_with_master(master, name)
    # Only now: unpickling the context imports gflow.config from the master's sys.path.
    args, fds = pickle.load(stdin)
    # Jobs and helpers started from here must not read the master's pipe.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    run_worker(name, *args, **_inherited(fds))


def _inherited(fds: dict) -> dict:
    """Keyword arguments from inherited fds: `ready` (a pipe's write end) and, for the
    API, `listen_socket` and `unix_socket`."""
    import socket
    from multiprocessing.connection import Connection
    kwargs = {}
    for key, fd in fds.items():
        if fd is None:
            kwargs[key] = None
        elif key == "ready":
            kwargs[key] = Connection(fd, readable=False)
        else:
            kwargs[key] = socket.socket(fileno=fd)
    return kwargs
