"""Issue 23 with real daemons: a job that ended while gflowd was down keeps its recorded
end, a configured GPU restriction ends with the config, and shared GPUs and reservations
show in ginfo and gctl show-gpus."""

from __future__ import annotations

import time

import psutil

from conftest import wait_for
from test_lifecycle_helpers import FAST, configure


def secs(value) -> float:
    """A wire time ({"secs_since_epoch", "nanos_since_epoch"}) as epoch seconds."""
    return value["secs_since_epoch"] + value["nanos_since_epoch"] / 1e9


def stopped(d) -> bool:
    return d.master_pid() is None or not psutil.pid_exists(d.master_pid())


def test_a_job_that_ended_while_gflowd_was_down_keeps_its_recorded_end(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    configure(d, FAST)
    d.start()
    d.ok("gbatch", "bash", "-c", "sleep 2; exit 5")
    d.wait_state(1, "Running")
    d.ok("gflowd", "down")
    wait_for(lambda: stopped(d), what="the master to exit")
    wait_for(lambda: (d.logs / "1.status").exists(), what="the monitor's status")
    time.sleep(3)                                   # the daemon stays down a while longer
    d.start()
    job = d.wait_state(1, ("Failed", "Finished"))
    assert (job["state"], job["exit_code"]) == ("Failed", 5)
    runtime = secs(job["finished_at"]) - secs(job["started_at"])
    assert 1.5 <= runtime < 3.5, runtime            # not the ~6 s until the restart
    stats = d.http("GET", "/stats")[1]
    assert 1.5 <= stats["avg_runtime_secs"] < 3.5


def test_a_configured_gpu_restriction_ends_with_the_config(daemon_factory):
    d = daemon_factory(fake_gpus="4")
    configure(d, FAST + "\n[daemon]\ngpus = [0, 2]\n")
    d.start()
    assert d.ok("gctl", "show-gpus").splitlines()[-1] == "allowed: 0,2 (from gflow.toml)"
    d.ok("gflowd", "restart")
    assert d.http("GET", "/info")[1]["allowed_gpu_indices"] == [0, 2]
    configure(d, FAST)                              # the line is removed
    d.ok("gflowd", "restart")
    info = d.http("GET", "/info")[1]
    assert (info["allowed_gpu_indices"], info["allowed_gpu_source"]) == (None, "default")
    assert d.ok("gctl", "show-gpus").splitlines()[-1] == "allowed: all detected GPUs"
    # A runtime `gctl set-gpus` is what is remembered across restarts.
    d.ok("gctl", "set-gpus", "1")
    d.ok("gflowd", "restart")
    assert d.ok("gctl", "show-gpus") == (
        "0\tavailable\trestricted\n1\tavailable\n2\tavailable\trestricted\n"
        "3\tavailable\trestricted\nallowed: 1 (from gctl set-gpus)\n")
    d.ok("gflowd", "restart", "--gpus", "3")
    assert d.ok("gctl", "show-gpus").splitlines()[-1] == "allowed: 3 (from --gpus)"


def test_shared_gpus_and_reservations_show_who_holds_them(daemon_factory):
    d = daemon_factory(fake_gpus="2:24G")
    configure(d, FAST)
    d.start()
    for _ in range(2):
        d.ok("gbatch", "--shared", "--gpus", "1", "--gpu-memory", "4G", "sleep", "60")
    d.wait_state(1, "Running")
    d.wait_state(2, "Running")
    gpu0 = d.http("GET", "/info")[1]["gpus"][0]
    assert gpu0["available"] is False
    assert (gpu0["shared_jobs"], gpu0["shared_memory_mb"], gpu0["memory_mb"]) == (
        [1, 2], 8192, 24576)
    assert d.ok("gctl", "show-gpus").splitlines()[0] == (
        "0\tin_use\tshared by jobs 1,2 (8192 of 24576 MB reserved)")
    d.ok("gctl", "reserve", "create", "--user", "alice", "--gpu-spec", "1",
         "--start", "2099-01-01 10:00", "--duration", "1h")
    rows = [line.split(None, 4) for line in d.ok("ginfo").splitlines()[1:]]
    assert rows[0] == ["gpu", "1", "1", "idle"]
    assert rows[1][:4] == ["gpu", "1", "0", "shared"]
    assert "8G of 24G reserved" in rows[1][4] and rows[1][4].startswith("1 (")
    assert rows[2][:4] == ["gpu", "1", "1", "reserved"]
    assert rows[2][4].startswith("(alice 2099-01-01 ")
    d.ok("gcancel", "1,2")
