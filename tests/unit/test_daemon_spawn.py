"""The master's own worker start (gflow.daemon.spawn) and a worker's tie to its master."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from conftest import wait_for
from gflow.daemon.spawn import WorkerProcess, _exit_pipe


def sleeper() -> WorkerProcess:
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return WorkerProcess(popen, os.pidfd_open(popen.pid), "sleeper")


def test_a_worker_handle_reports_its_end_like_multiprocessing():
    proc = sleeper()
    assert proc.is_alive() and proc.exitcode is None
    proc.join(0)                        # still running: nothing closed
    assert proc.sentinel is not None
    proc.terminate()
    proc.join(30)
    assert not proc.is_alive() and proc.exitcode == -signal.SIGTERM
    assert proc.sentinel is None        # closed once it was reaped
    proc.kill()                         # a no-op on a reaped process


def test_without_pidfds_a_pipe_tells_the_end_and_leaves_the_reaping_to_the_loop():
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc = WorkerProcess(popen, _exit_pipe(popen.pid), "sleeper")
    proc.join(0)
    assert proc.is_alive() and proc.sentinel is not None
    proc.kill()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL and proc.sentinel is None


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def test_a_worker_whose_master_is_already_gone_exits_at_once():
    res = run_child("""
        from gflow.workerproc import exit_with_master
        exit_with_master(1, "api")             # not our parent: the master died before
        print("went on")
    """)
    assert res.returncode == 0 and res.stdout == ""
    res = run_child("""
        import os
        from gflow.workerproc import exit_with_master
        exit_with_master(os.getppid(), "api")
        print("went on")
    """)
    assert res.returncode == 0 and res.stdout == "went on\n"


def test_a_worker_exits_when_its_master_is_killed():
    # A stand-in master starts a child that ties itself to it, then is SIGKILLed.
    master = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import os, sys, time; from gflow.workerproc import exit_with_master; "
            "exit_with_master(os.getppid(), 'api'); print('tied', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "tied\\n"
        print(child.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(master.stdout.readline())
    finally:
        master.kill()
        master.wait()

    def gone() -> bool:
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True
    wait_for(gone, timeout=30, what="the orphaned worker to exit")
