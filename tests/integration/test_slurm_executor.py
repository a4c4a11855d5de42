"""The Slurm executor against the real single-node Slurm that .ci/run starts (issue 20).

One gflowd in Slurm mode per module for the plain cases; the restart and controller
tests have their own. Every test polls with a timeout; none asserts on Slurm's job id
values (they repeat across CI runs).
"""

from __future__ import annotations

import re

import pytest

from conftest import Daemon, wait_for
from slurm_cluster import controller, slurm_cluster, slurm_records, squeue_all  # noqa: F401

pytestmark = pytest.mark.usefixtures("slurm_cluster")

FINAL = ("Finished", "Failed", "Cancelled", "Timeout")


def slurm_daemon(home, **kw) -> Daemon:
    config = home / ".config" / "gflow"
    config.mkdir(parents=True, exist_ok=True)
    (config / "gflow.toml").write_text('[executor]\nkind = "slurm"\n'
                                       '[executor.slurm]\npoll_secs = 0.2\n')
    d = Daemon(home, **kw)
    d.start()
    return d


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    d = slurm_daemon(tmp_path_factory.mktemp("slurm-home"))
    yield d
    d.stop()


def submit(d: Daemon, *args) -> int:
    out = d.ok("gbatch", *args)
    return int(re.search(r"Submitted batch job (\d+)", out).group(1))


def log_of(d: Daemon, job_id: int) -> str:
    return (d.logs / f"{job_id}.log").read_text()


def test_a_job_runs_in_slurm_and_looks_like_a_local_one(sd):
    job_id = submit(sd, "--gpus", "1", "-J", "hello slurm",
                    "echo CVD=$CUDA_VISIBLE_DEVICES SJ=$SLURM_JOB_ID G=$GFLOW_JOB_ID; sleep 1")
    job = sd.wait_state(job_id, FINAL, timeout=30)
    assert job["state"] == "Finished", (job, log_of(sd, job_id))
    assert job["exit_code"] == 0
    key = job["executor_id"]
    assert key and key.isdigit(), job
    log = log_of(sd, job_id)
    m = re.search(r"CVD=(\d) SJ=(\d+) G=(\d+)", log)
    assert m, log
    assert m.group(2) == key and m.group(3) == str(job_id)
    # Slurm's placement, shown by gflow (read while it runs: squeue's gres_detail)
    assert job["gpu_ids"] == [int(m.group(1))]
    # Slurm's own record: the name, the comment that re-attaches after a restart.
    rec = slurm_records(key)[0]
    assert rec["JobName"] == "hello slurm" and rec["JobState"] == "COMPLETED"
    assert rec["Comment"].startswith("gflow:") and rec["Comment"].endswith(f":{job_id}@1")
    shown = sd.ok("gjob", "show", job_id)
    assert f"SlurmJobId={key}" in shown and "State=Finished (CD)" in shown
    listing = sd.ok("gqueue", "-a", "-u", "all", "-f", "JOBID,NAME,ST")
    assert re.search(rf"^\s*{job_id}\s+hello slurm\s+CD\s*$", listing, re.M), listing


def test_two_gpu_jobs_get_distinct_gpus_from_slurm(sd):
    ids = [submit(sd, "--gpus", "1", "echo CVD=$CUDA_VISIBLE_DEVICES; sleep 2")
           for _ in range(2)]
    jobs = [sd.wait_state(i, FINAL, timeout=30) for i in ids]
    assert [j["state"] for j in jobs] == ["Finished", "Finished"], jobs
    seen = sorted(re.search(r"CVD=(\d)", log_of(sd, i)).group(1) for i in ids)
    assert seen == ["0", "1"], seen
    a, b = jobs
    assert a["started_at"]["secs_since_epoch"] < b["finished_at"]["secs_since_epoch"]  # together


def test_a_dependency_chain_is_handed_over_at_once_and_runs_in_order(sd):
    first = submit(sd, "sleep 2; date +%s.%N")
    second = submit(sd, "--depends-on", str(first), "date +%s.%N")
    third = submit(sd, "--depends-on", str(second), "date +%s.%N")
    # Both dependents wait in Slurm (afterok on the parent's Slurm id), not in gflow.
    child = wait_for(lambda: (lambda j: j if j.get("executor_id") else None)(sd.job(third)),
                     timeout=15, what="job 3 handed over")
    parent_key = sd.job(second)["executor_id"]
    rec = slurm_records(child["executor_id"])[0]
    assert rec["Dependency"].startswith(f"afterok:{parent_key}"), rec
    jobs = [sd.wait_state(i, FINAL, timeout=40) for i in (first, second, third)]
    assert [j["state"] for j in jobs] == ["Finished"] * 3, jobs
    ends = [float(log_of(sd, i).split()[-1]) for i in (first, second, third)]
    assert ends == sorted(ends), ends


def test_a_failed_parent_cancels_its_dependents(sd):
    parent = submit(sd, "sleep 1; exit 3")
    child = submit(sd, "--depends-on", str(parent), "echo never")
    job = sd.wait_state(parent, FINAL, timeout=30)
    assert job["state"] == "Failed" and job["exit_code"] == 3, job
    assert job["reason_detail"] == "exit code 3", job
    kid = sd.wait_state(child, FINAL, timeout=30)
    assert kid["state"] == "Cancelled", kid
    assert kid["reason"] == {"DependencyFailed": parent}, kid
    assert "never" not in log_of(sd, child)


def test_an_array_keeps_its_concurrency_limit_in_slurm(sd):
    out = sd.ok("gbatch", "--array", "1-4", "--max-concurrent", "2",
                "echo task=$GFLOW_ARRAY_TASK_ID job=$GFLOW_JOB_ID; sleep 2")
    ids = [int(i) for i in re.findall(r"Submitted batch job (\d+)", out)]
    assert len(ids) == 4, out
    jobs = [sd.wait_state(i, FINAL, timeout=60) for i in ids]
    assert [j["state"] for j in jobs] == ["Finished"] * 4, jobs
    keys = [j["executor_id"] for j in jobs]
    array_ids = {k.split("_")[0] for k in keys}
    assert len(array_ids) == 1 and all("_" in k for k in keys), keys      # one Slurm array
    assert slurm_records(keys[0])[0].get("ArrayTaskThrottle") == "2"
    for job_id, job in zip(ids, jobs):
        assert f"task={job['task_id']} job={job_id}" in log_of(sd, job_id)
    spans = [(j["started_at"]["secs_since_epoch"], j["finished_at"]["secs_since_epoch"])
             for j in jobs]
    # Slurm's times are whole seconds: count overlaps strictly inside.
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2, spans


def test_cancelling_a_running_job_stops_it_in_slurm(sd):
    job_id = submit(sd, 'trap "echo got TERM; exit 5" TERM; sleep 60 & wait')
    job = sd.wait_state(job_id, ("Running",), timeout=30)
    key = job["executor_id"]
    sd.ok("gcancel", job_id)
    job = sd.wait_state(job_id, FINAL, timeout=30)
    assert job["state"] == "Cancelled" and job["reason_detail"] == "cancelled by user", job
    wait_for(lambda: "got TERM" in log_of(sd, job_id), timeout=20, what="the trap ran")
    wait_for(lambda: slurm_records(key) and slurm_records(key)[0]["JobState"] not in
             ("RUNNING", "COMPLETING"), timeout=30, what="Slurm job ended")
    wait_for(lambda: sd.job(job_id)["exit_code"] == 5, timeout=20,
             what="the job's own exit code recorded")


def test_a_time_limit_is_gflows_own_exact_one(sd):
    job_id = submit(sd, "--time", "0:03", 'trap "echo got INT; exit 6" INT; sleep 60 & wait')
    job = sd.wait_state(job_id, FINAL, timeout=40)
    assert job["state"] == "Timeout", job
    runtime = job["finished_at"]["secs_since_epoch"] - job["started_at"]["secs_since_epoch"]
    assert 2 <= runtime <= 8, job
    wait_for(lambda: "got INT" in log_of(sd, job_id), timeout=20, what="SIGINT reached it")


def test_hold_and_release_reach_a_job_waiting_in_slurm(sd):
    blocker = submit(sd, "sleep 4")
    job_id = submit(sd, "--depends-on", str(blocker), "echo released")
    job = wait_for(lambda: (lambda j: j if j.get("executor_id") else None)(sd.job(job_id)),
                   timeout=15, what="handed over")
    key = job["executor_id"]
    sd.ok("gjob", "hold", job_id)
    wait_for(lambda: slurm_records(key)[0]["Reason"].startswith("JobHeld"), timeout=15,
             what="held in Slurm")
    assert sd.job(job_id)["state"] == "Hold"
    assert sd.wait_state(blocker, FINAL, timeout=30)["state"] == "Finished"
    # Its parent is done: only the hold keeps it waiting, in Slurm as in gflow.
    assert slurm_records(key)[0]["JobState"] == "PENDING"
    assert sd.job(job_id)["state"] == "Hold"
    sd.ok("gjob", "release", job_id)
    assert sd.wait_state(job_id, FINAL, timeout=30)["state"] == "Finished"
    assert "released" in log_of(sd, job_id)


def test_what_slurm_refuses_waits_with_slurms_reason(sd):
    job_id = submit(sd, "--gpus", "3", "echo never")
    job = wait_for(lambda: (lambda j: j if "Slurm refused" in (j.get("reason_detail") or "")
                            else None)(sd.job(job_id)), timeout=20, what="refusal shown")
    assert job["state"] == "Queued" and job.get("executor_id") is None
    assert "Requested node configuration is not available" in job["reason_detail"]
    sd.ok("gcancel", job_id)


def test_shared_gpus_do_not_exist_in_slurm_mode(sd):
    res = sd.run("gbatch", "--gpus", "1", "--shared", "--gpu-memory", "1G", "echo x")
    assert res.returncode != 0
    assert "does not exist with the Slurm executor" in res.stderr, res.stderr


def test_a_restarted_gflowd_reattaches_to_its_slurm_jobs(tmp_path):
    d = slurm_daemon(tmp_path / "home-restart")
    try:
        first = submit(d, "sleep 3; echo first-done")
        second = submit(d, "--depends-on", str(first), "echo second-done")
        wait_for(lambda: d.job(second).get("executor_id"), timeout=15, what="handed over")
        d.wait_state(first, ("Running",), timeout=30)
        kill_daemon(d)                     # kill -9: master, scheduler, launcher, api
        d.start()
        jobs = [d.wait_state(i, FINAL, timeout=40) for i in (first, second)]
        assert [j["state"] for j in jobs] == ["Finished", "Finished"], jobs
        assert "second-done" in log_of(d, second)
        # Nothing was handed over twice.
        ours = [j for j in squeue_all() if str(j.get("comment", "")).endswith(
            (f":{first}@1", f":{second}@1")) and str(d.data_dir) and
            j.get("job_id") in {int(jobs[0]["executor_id"]), int(jobs[1]["executor_id"])}]
        assert len(ours) == 2, ours
    finally:
        d.stop()


def test_a_stopped_controller_is_reported_and_the_queued_job_waits(tmp_path):
    d = slurm_daemon(tmp_path / "home-ctld")
    try:
        wait_for(lambda: d.http("GET", "/health")[1].get("executor", {}).get("ok"),
                 timeout=15, what="executor healthy")
        controller("stop")
        try:
            job_id = submit(d, "echo after-the-restart")
            health = wait_for(lambda: (lambda h: h if h.get("executor", {}).get("ok") is False
                                       else None)(d.http("GET", "/health")[1]),
                              timeout=30, what="health says Slurm is down")
            assert "does not answer" in health["executor"]["detail"]
            job = d.job(job_id)
            assert job["state"] == "Queued" and "does not answer" in job["reason_detail"], job
            assert "NOT reachable" in d.ok("gflowd", "status")
        finally:
            controller("start")
        job = d.wait_state(job_id, FINAL, timeout=60)
        assert job["state"] == "Finished", job
        assert "after-the-restart" in log_of(d, job_id)
        assert d.http("GET", "/health")[1]["executor"]["ok"] is True
    finally:
        d.stop()


def kill_daemon(d: Daemon) -> None:
    """SIGKILL to gflowd's own processes only (Daemon.kill_all would also kill the Slurm
    job, whose processes carry this HOME)."""
    import psutil
    master = psutil.Process(d.master_pid())
    procs = [master, *master.children(recursive=True)]
    for p in procs:
        p.kill()
    psutil.wait_procs(procs, timeout=10)


def test_switching_to_slurm_under_a_running_local_job_says_what_happened(tmp_path):
    home = tmp_path / "home-switch"
    home.mkdir()
    d = Daemon(home, fake_gpus="1")
    try:
        d.start()
        local = submit(d, "sleep 60")
        d.wait_state(local, ("Running",), timeout=30)
        d.ok("gflowd", "down")
        config = home / ".config" / "gflow"
        config.mkdir(parents=True, exist_ok=True)
        (config / "gflow.toml").write_text('[executor]\nkind = "slurm"\n')
        d.start()
        job = d.wait_state(local, FINAL, timeout=30)
        assert job["state"] == "Failed", job
        assert "switched to Slurm" in job["reason_detail"], job
        # The new executor works: a job runs in Slurm.
        after = submit(d, "echo in-slurm")
        assert d.wait_state(after, FINAL, timeout=30)["state"] == "Finished"
        assert d.job(after)["executor_id"]
    finally:
        d.stop()
