"""One job end to end through a real daemon: submit, run, log, list, show, stop."""

from __future__ import annotations

import psutil

from conftest import processes_with_home, wait_for


def test_one_job_end_to_end(daemon_factory):
    d = daemon_factory()          # no GFLOW_FAKE_GPUS and no config file: embedded defaults
    d.start()
    out = d.ok("gbatch", "--name", "hello", "bash", "-c", "echo hi")
    assert out == "Submitted batch job 1 (hello)\n"
    job = d.wait_state(1, "Finished")
    assert job["exit_code"] == 0
    assert job["gpu_ids"] == []
    assert (d.logs / "1.log").read_text() == "hi\n"

    listing = d.ok("gqueue", "-a")
    lines = listing.splitlines()
    assert lines[0].split() == ["JOBID", "NAME", "ST", "TIME", "NODES", "NODELIST(REASON)"]
    assert lines[1].split()[:3] == ["1", "hello", "CD"]
    assert d.ok("gqueue") == "No jobs found.\n"     # finished jobs only with -a

    assert d.ok("gjob", "log", "1") == "hi\n"
    show = d.ok("gjob", "show", "1")
    assert "  State=Finished (CD)" in show and "  ExitCode=0" in show

    # /health names the master, whose children are the three titled workers.
    status, health = d.http("GET", "/health")
    assert status == 200 and health["status"] == "ok"
    master = psutil.Process(health["pid"])
    assert master.pid == d.master_pid()
    titles = {c.cmdline()[0] for c in master.children() if c.cmdline()}
    for name in ("scheduler", "launcher", "api"):
        assert f"gflowd: {name}" in titles, titles

    d.ok("gflowd", "down")
    wait_for(lambda: not processes_with_home(str(d.home)), timeout=10,
             what="every daemon process to exit")


def test_failing_job_records_exit_code(daemon):
    daemon.ok("gbatch", "bash", "-c", "echo out; echo err >&2; exit 3")
    job = daemon.wait_state(1, "Failed")
    assert job["exit_code"] == 3
    assert job["reason"] is None                   # 0.4.13 keeps reason null for Failed
    assert job["reason_detail"] == "exit code 3"
    assert (daemon.logs / "1.log").read_text() == "out\nerr\n"


def test_second_up_says_already_running(daemon):
    res = daemon.run("gflowd", "up")
    assert res.returncode == 0
    assert "already running" in res.stdout


def test_job_environment(daemon, tmp_path):
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    daemon.ok("gbatch", "--gpus", "1", "--array", "1-2", "bash", "-c",
              'echo "$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER $GFLOW_ARRAY_TASK_ID '
              '$GFLOW_JOB_ID $PWD $MY_VAR"', cwd=workdir,
              env={**daemon.env, "MY_VAR": "from-submitter"})
    for job_id in (1, 2):
        daemon.wait_state(job_id, "Finished")
    first = (daemon.logs / "1.log").read_text().split()
    second = (daemon.logs / "2.log").read_text().split()
    assert first[1:4] == ["PCI_BUS_ID", "1", "1"] and second[1:4] == ["PCI_BUS_ID", "2", "2"]
    assert {first[0], second[0]} == {"0", "1"}   # two fake GPUs, one each, at the same time
    assert first[-1] == "from-submitter"
    assert " ".join(first[4:-1]) == str(workdir)
