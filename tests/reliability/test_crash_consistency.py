"""No acknowledged submission is lost, duplicated or altered by a kill -9, and no id is reused."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time

import psutil
import pytest

from conftest import Daemon, processes_with_home, wait_for

CLIENTS = 4


class Storm:
    """Keep-alive clients submitting uniquely tagged jobs; records every acknowledgement."""

    def __init__(self, port: int, tag: str):
        self.port = port
        self.tag = tag
        self.acked: dict[int, str] = {}        # job id -> the command we sent
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    def _client(self, n: int) -> None:
        conn = None
        seq = 0
        while not self.stop.is_set():
            seq += 1
            command = f"echo {self.tag}-{n}-{seq}"
            body = json.dumps({"command": command, "gpus": 99, "submitted_by": "storm"})
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("POST", "/jobs", body, {"content-type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn = None                    # the daemon is gone: not acknowledged
                time.sleep(0.01)
                continue
            if resp.status == 201:
                with self.lock:
                    job_id = json.loads(data)["id"]
                    assert job_id not in self.acked, f"id {job_id} acknowledged twice"
                    self.acked[job_id] = command

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)


def daemon_processes(d: Daemon) -> dict[str, psutil.Process]:
    master = psutil.Process(d.master_pid())
    out = {"master": master}
    for child in master.children():
        title = (child.cmdline() or [""])[0]
        if title.startswith("gflowd: "):
            out[title.split(": ", 1)[1].strip()] = child
    return out


def kill9(procs) -> None:
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass


def check_all_acknowledged(d: Daemon, acked: dict[int, str], seen_max: int) -> int:
    status, jobs = d.http("GET", "/jobs")
    assert status == 200
    by_id = {}
    for job in jobs:
        assert job["id"] not in by_id, f"job {job['id']} listed twice"
        by_id[job["id"]] = job
    lost = sorted(i for i in acked if i not in by_id)
    assert not lost, f"{len(lost)} acknowledged jobs lost: {lost[:10]}"
    for job_id, command in acked.items():
        assert by_id[job_id]["command"] == command, f"job {job_id} altered"
    ids = sorted(by_id)
    assert ids == list(range(1, len(ids) + 1)), "job ids are not dense"
    out = d.ok("gbatch", "--gpus", "99", "echo", "probe")
    new_id = int(out.split()[3])
    assert new_id > max([seen_max, *by_id]), "an id was handed out again"
    return new_id


def storm_and_kill(d: Daemon, victims: str, rng: random.Random, round_no: int,
                   seen_max: int) -> tuple[dict, int]:
    with Storm(d.port, f"r{round_no}") as storm:
        wait_for(lambda: len(storm.acked) >= 5, timeout=20, what="a few acknowledgements")
        time.sleep(rng.uniform(0.0, 0.6))
        procs = daemon_processes(d)
        if victims == "all":
            kill9(procs.values())
        else:
            kill9([procs[victims]])
        time.sleep(0.3)
    acked = dict(storm.acked)
    if victims in ("all", "master"):
        # Workers notice their master is gone and exit by themselves.
        wait_for(lambda: not [p for p in processes_with_home(str(d.home))
                              if (p.cmdline() or [""])[0].startswith("gflowd")],
                 timeout=15, what="every daemon process to exit after the kill")
        d.start()
    else:
        # The master restarts the worker; the daemon keeps answering.
        wait_for(lambda: d.http("GET", "/health")[0] == 200, timeout=20,
                 what="the daemon to be healthy again")
    new_id = check_all_acknowledged(d, acked, seen_max)
    return acked, new_id


@pytest.fixture
def storm_daemon(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    cfg = d.home / ".config" / "gflow"
    cfg.mkdir(parents=True)
    # Tiny WAL threshold: snapshots happen all the time, so kills land mid-snapshot too.
    (cfg / "gflow.toml").write_text("[scheduler]\nsnapshot_wal_bytes = 4096\n")
    d.start()
    return d


@pytest.mark.parametrize("victims", ["all", "master", "scheduler", "api", "launcher"])
def test_kill9_during_a_storm_loses_nothing(storm_daemon, victims):
    rng = random.Random(hash(victims) & 0xFFFF)
    acked, _ = storm_and_kill(storm_daemon, victims, rng, 0, 0)
    assert len(acked) >= 5


@pytest.mark.slow
def test_twenty_random_kill_rounds(storm_daemon):
    rng = random.Random(int(os.environ.get("GFLOW_KILL_SEED", "20261124")))
    all_acked: dict[int, str] = {}
    seen_max = 0
    for round_no in range(20):
        victims = rng.choice(["all", "all", "master", "scheduler", "api", "launcher"])
        acked, seen_max = storm_and_kill(storm_daemon, victims, rng, round_no, seen_max)
        overlap = set(acked) & set(all_acked)
        assert not overlap, f"ids acknowledged in two rounds: {sorted(overlap)[:5]}"
        all_acked.update(acked)
    check_all_acknowledged(storm_daemon, all_acked, seen_max)
