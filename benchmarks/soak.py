"""Soak a running gflowd with submits, cancels and listings; sample its memory and open files.

Long form: `python -m benchmarks.soak --port 59000 --minutes 10` against a daemon you
started (loopback only). The test suite runs a short form (tests/reliability/test_soak.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class Sample:
    at: float
    pss_mb: float
    open_files: int
    jobs: int


@dataclass
class SoakResult:
    samples: list = field(default_factory=list)
    requests: int = 0
    errors: list = field(default_factory=list)

    def growth(self, skip: int = 2) -> tuple[float, int]:
        """(memory MB, open files) grown from the first post-warm-up sample to the last."""
        base, last = self.samples[min(skip, len(self.samples) - 1)], self.samples[-1]
        return last.pss_mb - base.pss_mb, last.open_files - base.open_files


def daemon_tree(master_pid: int) -> list:
    master = psutil.Process(master_pid)
    return [master] + master.children(recursive=False)


def measure(master_pid: int) -> tuple[float, int]:
    pss, files = 0.0, 0
    for p in daemon_tree(master_pid):
        try:
            if not (p.cmdline() or [""])[0].startswith("gflowd"):
                continue                   # jobs' monitors are not the daemon
            pss += p.memory_full_info().pss / 2**20
            files += p.num_fds()
        except psutil.Error:
            pass
    return pss, files


def soak(port: int, master_pid: int, seconds: float, *, sample_every: float = 2.0,
         clients: int = 3, seed: int = 1) -> SoakResult:
    """Submit (never-fitting jobs and short real ones), cancel, list, for `seconds`."""
    result = SoakResult()
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(seed + n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[int] = []
        while not stop.is_set():
            roll = rng.random()
            try:
                if roll < 0.5:
                    # Mostly jobs that wait forever (cancelled later); a few real ones.
                    real = rng.random() < 0.05
                    body = {"command": "true" if real else "sleep 30",
                            "gpus": 0 if real else 99, "submitted_by": f"s{n}"}
                    conn.request("POST", "/jobs", json.dumps(body),
                                 {"content-type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status == 201:
                        mine.append(json.loads(data)["id"])
                elif roll < 0.8 and mine:
                    conn.request("POST", f"/jobs/{mine.pop(rng.randrange(len(mine)))}/cancel")
                    resp = conn.getresponse()
                    resp.read()
                else:
                    conn.request("GET", "/jobs?state=Queued,Running&limit=200")
                    resp = conn.getresponse()
                    resp.read()
                if resp.status >= 500:
                    with lock:
                        result.errors.append(resp.status)
                with lock:
                    result.requests += 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    result.errors.append(repr(exc))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            pss, files = measure(master_pid)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/debug/metrics")
            by_state = json.loads(conn.getresponse().read())["jobs_by_state"]
            result.samples.append(Sample(time.monotonic(), pss, files, sum(by_state.values())))
            time.sleep(sample_every)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=59000)
    p.add_argument("--master-pid", type=int, help="default: from GET /health")
    p.add_argument("--minutes", type=float, default=10.0)
    args = p.parse_args(argv)
    pid = args.master_pid
    if pid is None:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
        conn.request("GET", "/health")
        pid = json.loads(conn.getresponse().read())["pid"]
    result = soak(args.port, pid, args.minutes * 60, sample_every=10.0)
    print(f"{'t(s)':>6} {'PSS MB':>8} {'fds':>5} {'jobs':>8}")
    t0 = result.samples[0].at
    for s in result.samples:
        print(f"{s.at - t0:6.0f} {s.pss_mb:8.1f} {s.open_files:5d} {s.jobs:8d}")
    mem, files = result.growth()
    print(f"requests: {result.requests}, errors: {len(result.errors)}, "
          f"growth after warm-up: {mem:+.1f} MB, {files:+d} open files")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
