"""Daemon lifecycle with real daemons: jobs outlive restarts, kills, reloads and crashes."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from conftest import processes_with_home, wait_for
from test_lifecycle_helpers import (FAST, JOBS, Load, alive, assert_all_exist, configure,
                                    healthy, job_pid, job_processes, kill9, workers)


def waiter(d, tmp_path, job_id_hint: str, code: int) -> tuple[list, object]:
    """gbatch arguments of a job that runs until its go-file exists, then exits `code`."""
    go = tmp_path / f"go-{job_id_hint}"
    return ["bash", str(JOBS / "wait_for_file.sh"), str(go), str(code)], go


# --- jobs and daemon restarts -----------------------------------------------------------------

def test_running_job_survives_down_and_up_and_keeps_its_exit_code(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="1")
    configure(d, FAST)
    d.start()
    args, go = waiter(d, tmp_path, "a", 7)
    d.ok("gbatch", "--gpus", "1", *args)
    d.wait_state(1, "Running")
    pid = job_pid(d, 1)

    d.ok("gflowd", "down")
    wait_for(lambda: d.master_pid() is None or not psutil.pid_exists(d.master_pid()),
             what="the master to exit")
    assert alive(pid), "a daemon stop must not touch running jobs"

    d.start()
    job = d.job(1)
    assert job["state"] == "Running" and job["gpu_ids"] == [0]
    # The adopted job still holds its GPU: a second GPU job waits.
    d.ok("gbatch", "--gpus", "1", "true")
    # A pass has looked at job 2 (it leaves its waiting reason) and kept it queued.
    two = wait_for(lambda: (lambda j: j if j["reason_detail"] or j["state"] != "Queued"
                                        else None)(d.job(2)),
                   what="a pass to consider job 2")
    assert two["state"] == "Queued" and "0 free" in two["reason_detail"], two

    go.touch()
    job = d.wait_state(1, ("Failed", "Finished"))
    assert job["state"] == "Failed" and job["exit_code"] == 7
    assert job["reason_detail"] == "exit code 7"
    assert d.wait_state(2, "Finished")["exit_code"] == 0      # the GPU was handed on
    assert "ExitCode=7" in d.ok("gjob", "show", "1")


def test_jobs_that_end_while_the_daemon_is_down(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="2")
    configure(d, FAST)
    d.start()
    ok_args, ok_go = waiter(d, tmp_path, "ok", 0)
    bad_args, bad_go = waiter(d, tmp_path, "bad", 5)
    d.ok("gbatch", *ok_args)
    d.ok("gbatch", *bad_args)
    d.wait_state(1, "Running")
    d.wait_state(2, "Running")
    job_pid(d, 1), job_pid(d, 2)
    d.ok("gflowd", "down")

    ok_go.touch()
    bad_go.touch()
    for job_id in (1, 2):
        wait_for(lambda: (d.logs / f"{job_id}.status").exists(), what="the monitor's status")

    d.start()
    first = d.wait_state(1, ("Finished", "Failed"))
    second = d.wait_state(2, ("Finished", "Failed"))
    assert (first["state"], first["exit_code"]) == ("Finished", 0)
    assert (second["state"], second["exit_code"]) == ("Failed", 5)
    assert (d.logs / "1.log").read_text().splitlines()[-1] == "done"


def test_restart_keeps_jobs_and_accepts_gpu_flags(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="2")
    configure(d, FAST)
    d.start()
    args, go = waiter(d, tmp_path, "r", 0)
    d.ok("gbatch", *args)
    d.wait_state(1, "Running")
    pid = job_pid(d, 1)
    old_master = d.master_pid()
    out = d.ok("gflowd", "restart", "--gpus", "1", "--gpu-allocation-strategy", "random",
               "--gpu-poll-interval-secs", "2")
    assert "gflowd started" in out
    assert d.master_pid() != old_master
    assert alive(pid) and d.job(1)["state"] == "Running"
    status, info = d.http("GET", "/info")
    assert info["allowed_gpu_indices"] == [1]
    assert info["gpu_allocation_strategy"] == "random"
    go.touch()
    assert d.wait_state(1, ("Finished", "Failed"))["exit_code"] == 0


# --- stopping jobs ----------------------------------------------------------------------------

def test_cancel_kills_the_whole_tree(daemon_factory):
    d = daemon_factory()
    configure(d, FAST)
    d.start()
    d.ok("gbatch", "bash", "-c", "sleep 300 & sleep 300; wait")
    d.ok("gbatch", "bash", str(JOBS / "forker.sh"))
    d.wait_state(1, "Running")
    d.wait_state(2, "Running")
    wait_for(lambda: len(job_processes(d, "sleep 30", "sleep")) == 5, what="five sleepers")
    wait_for(lambda: (d.logs / "2.log").exists() and "ready" in (d.logs / "2.log").read_text(),
             what="the forker to be ready")
    d.ok("gcancel", "1")
    d.ok("gcancel", "2")
    for job_id in (1, 2):
        job = d.wait_state(job_id, "Cancelled")
        assert job["reason"] == "CancelledByUser"
    wait_for(lambda: not job_processes(d, "sleep 30"), timeout=10,
             what="every process of the cancelled jobs to be gone")
    # The monitors recorded how the jobs ended.
    wait_for(lambda: d.job(1)["exit_code"] is not None and d.job(2)["exit_code"] is not None,
             what="exit codes of the cancelled jobs")
    assert d.job(1)["exit_code"] == 128 + signal.SIGTERM


def test_term_ignoring_job_is_killed_after_the_grace_period(daemon_factory):
    d = daemon_factory()
    configure(d, "[launcher]\nkill_grace_secs = 2.0\n")
    d.start()
    d.ok("gbatch", "--gpus", "0", "bash", str(JOBS / "ignore_term.sh"))
    d.wait_state(1, "Running")
    wait_for(lambda: "ready" in (d.logs / "1.log").read_text() if (d.logs / "1.log").exists()
             else False, what="the job to trap TERM")
    pid = job_pid(d, 1)
    start = time.monotonic()
    d.ok("gcancel", "1")
    assert d.job(1)["state"] == "Cancelled"
    wait_for(lambda: not alive(pid), timeout=15, what="the TERM-ignoring job to be killed")
    took = time.monotonic() - start
    assert 1.5 <= took < 10, f"killed after {took:.2f}s with a 2s grace period"
    assert not job_processes(d, "sleep 300")
    job = wait_for(lambda: (lambda j: j if j["exit_code"] is not None else None)(d.job(1)),
                   what="the recorded exit code")
    assert job["exit_code"] == 128 + signal.SIGKILL and job["state"] == "Cancelled"


def test_memory_limit_is_enforced(daemon_factory):
    d = daemon_factory()
    configure(d, FAST)
    d.start()
    d.ok("gbatch", "--memory", "64M", "python3", str(JOBS / "hog.py"), "200")
    job = d.wait_state(1, "Failed", timeout=30)
    assert "64 MB limit" in job["reason_detail"] and "memory" in job["reason_detail"]
    assert job["exit_code"] == 128 + signal.SIGKILL
    wait_for(lambda: not job_processes(d, "hog.py"), what="the hog to be gone")
    assert "64 MB limit" in d.ok("gjob", "show", "1")
    # A job under its limit is left alone.
    d.ok("gbatch", "--memory", "512M", "python3", "-c", "print(len(bytearray(10**7)))")
    assert d.wait_state(2, ("Finished", "Failed"))["state"] == "Finished"


# --- worker crashes -------------------------------------------------------------------------

def test_each_worker_killed_in_turn_loses_nothing(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="1")
    configure(d, FAST)
    d.start()
    args, go = waiter(d, tmp_path, "k", 3)
    d.ok("gbatch", "--gpus", "1", *args)
    d.wait_state(1, "Running")
    pid = job_pid(d, 1)
    failures = {}
    with Load(d, reads=2, submits=2) as load:
        load.wait_progress()
        for name in ("scheduler", "launcher", "api"):
            before = workers(d)
            mark = len(load.results)
            kill9(before[name])
            wait_for(lambda: workers(d).get(name, before[name]) != before[name]
                     and len(workers(d)) == 3, what=f"a new {name} worker")
            wait_for(lambda: healthy(d), what="the daemon to answer again")
            load.wait_progress()
            failures[name] = [r for r in load.results[mark:] if not r[1]]
            assert alive(pid), f"killing the {name} worker killed a job"
    acked = list(load.acked)
    assert len(acked) >= 15
    assert_all_exist(d, acked)
    assert len(set(acked)) == len(acked)
    # A scheduler crash: reads in flight are sent again to the next scheduler; a change
    # in flight is answered 503 ("may or may not have been made"), never acknowledged.
    assert all(kind == "submit" and detail[0] == 503 and "may or may not" in str(detail)
               for kind, _ok, detail in failures["scheduler"]), failures["scheduler"]
    assert failures["launcher"] == []
    # The API worker's own connections die with it (nothing there was acknowledged).
    assert all(isinstance(detail, str) for _k, _ok, detail in failures["api"]), failures["api"]
    assert d.job(1)["state"] == "Running"
    go.touch()
    assert d.wait_state(1, ("Failed", "Finished"))["exit_code"] == 3


def test_killed_master_takes_its_workers_but_not_the_jobs(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="1")
    configure(d, FAST)
    d.start()
    args, go = waiter(d, tmp_path, "m", 0)
    d.ok("gbatch", "--gpus", "1", *args)
    d.wait_state(1, "Running")
    pid = job_pid(d, 1)
    old = list(workers(d).values())
    assert len(old) == 3
    kill9(d.master_pid())
    wait_for(lambda: not any(alive(w) for w in old), timeout=10,
             what="the workers of the killed master to exit")
    assert alive(pid)
    d.start()
    assert d.job(1)["state"] == "Running"
    go.touch()
    assert d.wait_state(1, ("Finished", "Failed"))["state"] == "Finished"


def test_up_right_after_a_master_kill_waits_for_the_old_workers(daemon_factory):
    d = daemon_factory()
    configure(d, FAST)
    d.start()
    d.ok("gbatch", "true")
    d.wait_state(1, "Finished")
    kill9(d.master_pid())
    d.start()                       # at once: the old workers may still hold the port
    assert d.job(1)["state"] == "Finished"
    d.ok("gbatch", "true")
    assert d.wait_state(2, "Finished")


# --- reload ---------------------------------------------------------------------------------

def test_reload_under_load_answers_every_call(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="1")
    configure(d, FAST)
    d.start()
    args, go = waiter(d, tmp_path, "rl", 0)
    d.ok("gbatch", "--gpus", "1", *args)
    d.wait_state(1, "Running")
    pid = job_pid(d, 1)
    master = d.master_pid()
    durations = []
    with Load(d, reads=2, submits=1, gqueue=1) as load:
        load.wait_progress(n=3)
        for _ in range(3):
            before = set(workers(d).values())
            started = time.monotonic()
            out = d.ok("gflowd", "reload")
            durations.append(time.monotonic() - started)
            assert out.startswith("gflowd reloaded")
            assert not before & set(workers(d).values()), "every worker is replaced"
            load.wait_progress(n=3)
    assert load.failures() == []
    assert load.count("gqueue") >= 3 and load.count("read") >= 10
    assert_all_exist(d, load.acked)
    assert d.master_pid() == master
    assert alive(pid) and d.job(1)["state"] == "Running"
    info = json.loads((d.data_dir / "gflowd.lock").read_text())
    assert info["reloads"] == 3 and info["last_reload"]["error"] is None
    print(f"reload took {', '.join(f'{t:.2f}' for t in durations)} s; "
          f"{load.count()} calls answered, 0 failed; slowest read {load.read_latency:.2f} s")
    go.touch()
    assert d.wait_state(1, ("Finished", "Failed"))["state"] == "Finished"


def test_reload_flags_and_sighup_reread_the_config(daemon_factory):
    d = daemon_factory(fake_gpus="3")
    configure(d, FAST)
    d.start()
    assert d.http("GET", "/info")[1]["allowed_gpu_indices"] is None

    def reloads() -> int:
        return json.loads((d.data_dir / "gflowd.lock").read_text()).get("reloads", 0)

    # SIGHUP re-reads gflow.toml.
    configure(d, FAST + '\n[daemon]\ngpus = [1]\ngpu_allocation_strategy = "random"\n')
    os.kill(d.master_pid(), signal.SIGHUP)
    wait_for(lambda: reloads() == 1, what="the SIGHUP reload")
    info = d.http("GET", "/info")[1]
    assert info["allowed_gpu_indices"] == [1] and info["gpu_allocation_strategy"] == "random"

    # `reload` takes 0.4.13's flags (and our poll interval); they override the file.
    d.ok("gflowd", "reload", "--gpus", "0,2", "--gpu-allocation-strategy", "sequential",
         "--gpu-poll-interval-secs", "3")
    info = d.http("GET", "/info")[1]
    assert info["allowed_gpu_indices"] == [0, 2]
    assert info["gpu_allocation_strategy"] == "sequential"

    # A broken config file is refused; the daemon keeps running on the old one.
    configure(d, "[launcher]\nkill_grace_secs = -1\n")
    os.kill(d.master_pid(), signal.SIGHUP)
    wait_for(lambda: reloads() == 3, what="the refused reload")
    last = json.loads((d.data_dir / "gflowd.lock").read_text())["last_reload"]
    assert "configuration not reloaded" in last["error"] and "kill_grace_secs" in last["error"]
    assert healthy(d) and d.http("GET", "/info")[1]["allowed_gpu_indices"] == [0, 2]
    res = d.run("gflowd", "reload")
    assert res.returncode != 0 and "kill_grace_secs" in res.stderr


# --- status ---------------------------------------------------------------------------------

def test_status_lines(daemon_factory):
    d = daemon_factory(fake_gpus="2")
    res = d.run("gflowd", "status")
    # exit status 3 when stopped, as LSB and systemctl (0.4.13: 0; issue 23)
    assert res.stdout.splitlines()[0] == "Status: Not running" and res.returncode == 3
    d.start()
    time.sleep(1.1)
    lines = d.ok("gflowd", "status").splitlines()
    assert lines[0] == "Status: Running"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert int(fields["PID"]) == d.master_pid()
    h, m, s = map(int, fields["Uptime"].split(":"))
    assert h * 3600 + m * 60 + s >= 1
    assert fields["Version"]
    assert fields["GPUs"].startswith("2")
    # Uptime is the daemon's: a reload does not reset it.
    d.ok("gflowd", "reload")
    fields = dict(line.split(": ", 1) for line in d.ok("gflowd", "status").splitlines()[1:])
    h, m, s = map(int, fields["Uptime"].split(":"))
    assert h * 3600 + m * 60 + s >= 1

    api = workers(d)["api"]
    os.kill(api, signal.SIGSTOP)
    try:
        res = d.run("gflowd", "status")
        assert res.stdout.splitlines()[0] == "Status: Unhealthy"
    finally:
        os.kill(api, signal.SIGCONT)
    d.ok("gflowd", "down")
    res = d.run("gflowd", "status")
    assert res.stdout.splitlines()[0] == "Status: Not running" and res.returncode == 3


@pytest.mark.slow
def test_repeated_kills_and_reloads_soak(daemon_factory, tmp_path):
    """Many rounds of worker kills and reloads under load: nothing acknowledged is lost."""
    d = daemon_factory(fake_gpus="2")
    configure(d, FAST)
    d.start()
    args, go = waiter(d, tmp_path, "soak", 0)
    d.ok("gbatch", *args)
    d.wait_state(1, "Running")
    pid = job_pid(d, 1)
    with Load(d, reads=2, submits=2) as load:
        for round_ in range(6):
            if round_ % 2:
                d.ok("gflowd", "reload")
            else:
                name = ("scheduler", "launcher", "api")[round_ // 2 % 3]
                before = workers(d)
                kill9(before[name])
                wait_for(lambda: workers(d).get(name, before[name]) != before[name]
                         and len(workers(d)) == 3, what=f"a new {name} worker")
            wait_for(lambda: healthy(d), what="health")
            load.wait_progress()
    assert_all_exist(d, load.acked)
    assert alive(pid)
    go.touch()
    assert d.wait_state(1, ("Finished", "Failed"))["state"] == "Finished"
    leftovers = [p for p in processes_with_home(str(d.home)) if p.pid == pid]
    assert not leftovers


def test_a_stop_in_progress_survives_a_reload(daemon_factory):
    """A cancelled job that ignores TERM keeps its GPU until it is really gone, and the
    new launcher and scheduler finish the stop (the draining set is rebuilt)."""
    d = daemon_factory(fake_gpus="1")
    configure(d, "[launcher]\nkill_grace_secs = 3.0\n")
    d.start()
    d.ok("gbatch", "--gpus", "1", "bash", str(JOBS / "ignore_term.sh"))
    d.wait_state(1, "Running")
    wait_for(lambda: "ready" in (d.logs / "1.log").read_text(), what="the TERM trap")
    pid = job_pid(d, 1)
    d.ok("gbatch", "--gpus", "1", "true")
    d.ok("gcancel", "1")
    d.ok("gflowd", "reload")
    assert alive(pid)
    assert d.job(2)["state"] == "Queued", "the GPU is still held by the stopping job"
    wait_for(lambda: not alive(pid), timeout=20, what="the stopped job to be killed")
    assert d.wait_state(2, "Finished")["exit_code"] == 0
    job = d.job(1)
    assert job["state"] == "Cancelled" and job["exit_code"] == 128 + signal.SIGKILL
