"""Scheduling rules through a real daemon with two simulated GPUs (issue 3's scenarios)."""

from __future__ import annotations

from conftest import wait_for


def gpus_in_log(d, job_id) -> str:
    return (d.logs / f"{job_id}.log").read_text().strip()


def test_priorities_and_disjoint_gpus(daemon):
    d = daemon
    d.ok("gbatch", "--gpus", "2", "--name", "big", "bash", "-c",
         'echo $CUDA_VISIBLE_DEVICES; sleep 1')
    for prio in (1, 100, 200):
        d.ok("gbatch", "--gpus", "1", "--priority", prio, "bash", "-c",
             'echo $CUDA_VISIBLE_DEVICES; sleep 2')
    big = d.wait_state(1, "Running")
    assert big["gpu_ids"] == [0, 1]
    assert all(d.job(i)["state"] == "Queued" for i in (2, 3, 4))
    d.wait_state(1, "Finished")
    p200, p100 = d.wait_state(4, "Running"), d.wait_state(3, "Running")
    assert d.job(2)["state"] == "Queued"                     # priority 1 waits
    assert sorted(p200["gpu_ids"] + p100["gpu_ids"]) == [0, 1]
    for i in (2, 3, 4):
        d.wait_state(i, "Finished", timeout=30)
    assert gpus_in_log(d, 1) == "0,1"
    assert {gpus_in_log(d, 3), gpus_in_log(d, 4)} == {"0", "1"}
    assert d.job(2)["started_at"]["secs_since_epoch"] >= min(
        d.job(3)["finished_at"]["secs_since_epoch"], d.job(4)["finished_at"]["secs_since_epoch"])


def test_dependency_failure_cascades_and_any_mode(daemon):
    d = daemon
    d.ok("gbatch", "bash", "-c", "exit 1")                     # 1 fails
    d.ok("gbatch", "--depends-on", "1", "echo", "never")        # 2: cancelled
    d.ok("gbatch", "--depends-on", "2", "echo", "never")        # 3: transitively
    d.ok("gbatch", "echo", "ok")                                # 4 succeeds
    d.ok("gbatch", "--depends-on-any", "1,4", "echo", "any")    # 5 runs
    d.ok("gbatch", "--no-auto-cancel", "--depends-on", "1", "echo", "x")   # 6 stays
    two = d.wait_state(2, "Cancelled")
    assert two["reason"] == {"DependencyFailed": 1}
    assert d.wait_state(3, "Cancelled")["reason"] == {"DependencyFailed": 2}
    d.wait_state(5, "Finished")
    six = wait_for(lambda: (lambda j: j if j["reason_detail"] and "never be met"
                            in j["reason_detail"] else None)(d.job(6)), what="job 6 flagged")
    assert six["state"] == "Queued"


def test_time_limit_ends_in_timeout(daemon):
    d = daemon
    d.ok("gbatch", "-t", "0:02", "sleep", "60")
    d.ok("gbatch", "--depends-on", "1", "echo", "after")
    job = d.wait_state(1, "Timeout", timeout=20)
    runtime = job["finished_at"]["secs_since_epoch"] - job["started_at"]["secs_since_epoch"]
    assert 1 <= runtime <= 4
    assert "time limit" in job["reason_detail"]
    assert d.wait_state(2, "Cancelled")["reason"] == {"DependencyFailed": 1}


def test_held_job_waits_for_release(daemon):
    d = daemon
    d.ok("gbatch", "sleep", "1")
    d.ok("gbatch", "--depends-on", "1", "echo", "child")
    d.ok("gjob", "hold", "2")
    d.ok("gbatch", "--depends-on", "1", "echo", "twin")          # 3: the same, not held
    d.wait_state(1, "Finished")
    # The pass that started the twin saw the dependency met: had it ignored the hold, it
    # would have started job 2 as well.
    d.wait_state(3, ("Running", "Finished"))
    assert d.job(2)["state"] == "Hold"
    d.ok("gjob", "release", "2")
    d.wait_state(2, "Finished")


def test_held_dependents_of_a_failed_job_are_cancelled(daemon, tmp_path):
    d = daemon
    go = tmp_path / "go"
    d.ok("gbatch", "bash", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 1")
    d.ok("gbatch", "--depends-on", "1", "echo", "never")        # 2: held, then cancelled
    d.ok("gbatch", "--depends-on", "2", "echo", "never")        # 3: held too, transitively
    d.ok("gjob", "hold", "2,3")
    d.wait_state(1, "Running")
    go.touch()
    assert d.wait_state(2, "Cancelled")["reason"] == {"DependencyFailed": 1}
    assert d.wait_state(3, "Cancelled")["reason"] == {"DependencyFailed": 2}


def test_group_limit_and_gpus_released(daemon):
    d = daemon
    d.ok("gbatch", "--array", "1-4", "--max-concurrent", "2", "--gpus", "1", "sleep", "0.3")
    for i in range(1, 5):
        d.wait_state(i, "Finished", timeout=30)
    status, info = d.http("GET", "/info")
    assert [g["available"] for g in info["gpus"]] == [True, True]


def test_gpu_jobs_never_stall_behind_short_jobs(daemon):
    """A GPU job queued behind CPU jobs starts in the pass of its own submission while its
    GPUs are idle: it does not wait for the jobs ahead of it to end (they run 60 s here, so a
    stall cannot pass), nor for a later tick."""
    d = daemon
    for _ in range(6):
        d.ok("gbatch", "sleep", "60")
    for i in range(1, 7):
        d.wait_state(i, "Running")
    d.ok("gbatch", "--gpus", "2", "echo", "gpu job")
    job = d.wait_state(7, ("Running", "Finished"), timeout=5)
    assert job["gpu_ids"] == [0, 1]
    waited = (job["started_at"]["secs_since_epoch"] + job["started_at"]["nanos_since_epoch"] / 1e9
              - job["submitted_at"]["secs_since_epoch"]
              - job["submitted_at"]["nanos_since_epoch"] / 1e9)
    assert 0 <= waited < 1.0, waited          # the same pass: milliseconds, not a tick
    assert all(d.job(i)["state"] == "Running" for i in range(1, 7))
