"""What a spawned worker process runs: its module is imported there, not in the master."""

# The master used to import each worker's module to hand its `main` to multiprocessing,
# which pickles a function by name only: the child imports the module anyway. That cost
# the master ~0.1 s before it could spawn the scheduler (and the API's Flask after it),
# on every start. The child imports this small module instead, then the worker's.

from __future__ import annotations


def run_worker(name: str, *args, **kwargs) -> None:
    if name == "scheduler":
        from gflow.scheduler.service import main
    elif name == "launcher":
        from gflow.launcher.service import main
    else:
        from gflow.api.service import main
    main(*args, **kwargs)
