"""Helpers shared by the lifecycle and launcher integration tests (no tests here)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil

from conftest import processes_with_home, wait_for

JOBS = Path(__file__).resolve().parent.parent / "fixtures" / "jobs"


def configure(d, text: str) -> None:
    """Write the daemon's ~/.config/gflow/gflow.toml (before `start`, or before a reload)."""
    path = d.home / ".config" / "gflow" / "gflow.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


FAST = """
[launcher]
kill_grace_secs = 1.0
memory_poll_secs = 0.2
"""


def workers(d) -> dict:
    """{'scheduler': pid, 'launcher': pid, 'api': pid} among the master's children."""
    master = psutil.Process(d.master_pid())
    out = {}
    for child in master.children():
        try:
            title = (child.cmdline() or [""])[0]
        except psutil.Error:
            continue
        if title.startswith("gflowd: "):
            out[title.split(": ", 1)[1]] = child.pid
    return out


def job_processes(d, needle: str, program: str | None = None) -> list:
    """Live (non-zombie) processes of the temp HOME whose command line contains needle
    (and whose program, argv[0], is `program` when given)."""
    found = []
    for proc in processes_with_home(str(d.home)):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            argv = proc.cmdline()
            if program is not None and (not argv or os.path.basename(argv[0]) != program):
                continue
            if needle in " ".join(argv):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def job_pid(d, job_id: int) -> int:
    import json
    path = d.logs / f"{job_id}.pid"
    info = wait_for(lambda: path.exists() and json.loads(path.read_text() or "null"),
                    what=f"job {job_id}'s pid file")
    return info["job_pid"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def healthy(d) -> bool:
    try:
        status, body = d.http("GET", "/health", timeout=5)
    except OSError:
        return False
    return status == 200


class Load:
    """Threads that keep calling the daemon and record every answer.

    `reads`: GET /jobs; `submits`: POST /jobs of a job that never runs (it asks for more
    GPUs than there are), whose id is recorded once the daemon acknowledged it;
    `gqueue`: the real client.
    """

    def __init__(self, d, *, reads: int = 2, submits: int = 1, gqueue: int = 0):
        self.d = d
        self.stop = threading.Event()
        self.results: list = []          # (kind, ok, detail)
        self.acked: list[int] = []
        self.read_latency = 0.0           # the slowest answered GET /jobs, seconds
        self.lock = threading.Lock()
        self.threads = ([threading.Thread(target=self._reads, daemon=True) for _ in range(reads)]
                        + [threading.Thread(target=self._submits, daemon=True)
                           for _ in range(submits)]
                        + [threading.Thread(target=self._gqueue, daemon=True)
                           for _ in range(gqueue)])

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(90)

    def _record(self, kind, ok, detail=None):
        with self.lock:
            self.results.append((kind, ok, detail))

    def _reads(self):
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status, _ = self.d.http("GET", "/jobs", timeout=60)
                self.read_latency = max(self.read_latency, time.monotonic() - started)
                self._record("read", status == 200, status)
            except Exception as exc:   # noqa: BLE001 - every failure counts
                self._record("read", False, repr(exc))

    def _submits(self):
        while not self.stop.is_set():
            try:
                status, body = self.d.http("POST", "/jobs", {
                    "command": "true", "submitted_by": "tester", "run_dir": "/",
                    "gpus": 64}, timeout=60)
            except Exception as exc:   # noqa: BLE001
                self._record("submit", False, repr(exc))
                continue
            if status in (200, 201):
                with self.lock:
                    self.acked.append(body["id"])
                self._record("submit", True, status)
            else:
                self._record("submit", False, (status, body))

    def _gqueue(self):
        while not self.stop.is_set():
            res = self.d.run("gqueue", "-a", timeout=60)
            self._record("gqueue", res.returncode == 0, res.stderr.strip()[-200:])

    def count(self, kind=None) -> int:
        return sum(1 for k, _, _ in self.results if kind in (None, k))

    def failures(self) -> list:
        return [r for r in self.results if not r[1]]

    def wait_progress(self, n: int = 5, timeout: float = 30.0) -> None:
        """Wait until every kind of caller got n more answers."""
        start = {k: self.count(k) for k in ("read", "submit", "gqueue")}
        active = [k for k, target in (("read", self._reads), ("submit", self._submits),
                                      ("gqueue", self._gqueue))
                  if any(t._target == target for t in self.threads)]
        wait_for(lambda: all(self.count(k) >= start[k] + n for k in active), timeout=timeout,
                 interval=0.05, what=f"{n} more answers of each kind")


def assert_all_exist(d, ids) -> None:
    missing = [i for i in ids if d.http("GET", f"/jobs/{i}")[0] != 200]
    assert not missing, f"acknowledged jobs lost: {missing[:20]}"


def elapsed(since: float) -> float:
    return time.monotonic() - since
