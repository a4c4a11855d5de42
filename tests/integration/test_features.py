"""Issue 17 on a real daemon: Slurm-style dependencies and gjob wait, delayed start (woken by
APScheduler, across a restart), retries with per-attempt logs, quotas, suspend/resume, log
line ranges and the misused gbatch subcommands."""

from __future__ import annotations

import json
import time

import psutil

from conftest import wait_for

# A long periodic pass: what starts a delayed job on time is the APScheduler wake-up.
SLOW_TICK = "[scheduler]\nperiodic_pass_secs = 600.0\n"


def configure(d, text: str) -> None:
    cfg = d.home / ".config" / "gflow"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "gflow.toml").write_text(text)


def job_pid(d, job_id: int) -> int:
    path = d.logs / f"{job_id}.pid"
    info = wait_for(lambda: path.exists() and json.loads(path.read_text() or "{}"),
                    what=f"pid file of job {job_id}")
    return info["job_pid"]


def test_slurm_dependencies_and_gjob_wait(daemon):
    d = daemon
    d.ok("gbatch", "bash", "-c", "sleep 1; exit 3")                  # 1 fails
    d.ok("gbatch", "--depends-on", "afterany:1", "echo", "any")      # 2 runs anyway
    d.ok("gbatch", "--depends-on", "afternotok:1", "echo", "notok")  # 3 runs: 1 failed
    d.ok("gbatch", "--dependency", "afterok:1", "echo", "ok")        # 4 cancelled
    assert d.job(2)["dependency_conditions"] == {"1": "afterany"}
    res = d.run("gjob", "wait", "1-3")
    assert res.returncode == 3, res
    assert "Job 1 failed (exit code 3)" in res.stdout
    for i in (2, 3):
        assert d.wait_state(i, "Finished")["exit_code"] == 0
    assert d.wait_state(4, "Cancelled")["reason"] == {"DependencyFailed": 1}
    assert "DependsOn=afterany:1" in d.ok("gjob", "show", "2")
    assert d.run("gjob", "wait", "--any", "2", "4").returncode == 0
    # gbatch refuses what other queues call subcommands.
    res = d.run("gbatch", "list")
    assert res.returncode == 1 and "use gqueue" in res.stderr
    assert d.http("GET", "/jobs/5")[0] == 404


def test_begin_time_is_woken_on_time_and_survives_a_restart(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    configure(d, SLOW_TICK)
    d.start()
    d.ok("gbatch", "--begin", "now+3s", "echo", "soon")
    d.ok("gbatch", "--begin", "now+8s", "echo", "later")
    submitted = time.time()
    job = wait_for(lambda: (lambda j: j if j.get("pending_reason") else None)(d.job(1)),
                   what="a pass to name the begin time")
    assert job["state"] == "Queued" and job["reason"] is None
    assert job["reason_detail"].startswith("starts at ")
    assert "(BeginTime)" in d.ok("gqueue")
    # No periodic pass for 600 s: only the APScheduler wake-up starts it.
    one = d.wait_state(1, "Finished", timeout=15)
    started = one["started_at"]["secs_since_epoch"]
    assert one["scheduled_at"]["secs_since_epoch"] <= started + 1
    assert started - submitted < 6
    assert d.job(2)["state"] == "Queued"
    d.ok("gflowd", "stop")                          # upstream's names for down and up
    d.ok("gflowd", "start")
    two = d.wait_state(2, "Finished", timeout=20)
    assert two["started_at"]["secs_since_epoch"] >= two["scheduled_at"]["secs_since_epoch"]
    # gjob release --at: held now, released to start a few seconds later.
    d.ok("gbatch", "--begin", "now+1h", "echo", "held")
    d.ok("gjob", "hold", "3")
    out = d.ok("gjob", "release", "3", "--at", "now+2s")
    assert "starts no earlier than" in out
    three = d.wait_state(3, "Finished", timeout=15)
    assert three["started_at"]["secs_since_epoch"] >= three["scheduled_at"][
        "secs_since_epoch"] >= int(time.time()) - 15


def test_retries_keep_every_attempt_and_its_log(daemon, tmp_path):
    d = daemon
    counter = tmp_path / "count"
    script = (f'n=$(cat {counter} 2>/dev/null || echo 0); echo "attempt $n"; '
              f'echo $((n+1)) > {counter}; [ "$n" -ge 2 ] || exit 5')
    d.ok("gbatch", "--max-retries", "3", "bash", "-c", script)
    d.ok("gbatch", "--depends-on", "1", "echo", "after")
    job = d.wait_state(1, "Finished", timeout=30)
    assert job["exit_code"] == 0
    assert [(a["attempt"], a["exit_code"]) for a in job["attempts"]] == [(1, 5), (2, 5)]
    assert d.wait_state(2, "Finished")["exit_code"] == 0
    two = d.job(2)
    assert two["started_at"]["secs_since_epoch"] >= job["finished_at"]["secs_since_epoch"]
    assert (d.logs / "1.attempt-1.log").read_text().strip() == "attempt 0"
    assert d.ok("gjob", "log", "1", "--attempt", "2").strip() == "attempt 1"
    assert d.ok("gjob", "log", "1").strip() == "attempt 2"
    show = d.ok("gjob", "show", "1")
    assert "Attempts: (max retries 3)" in show and "#1 Failed exit=5" in show
    assert d.run("gjob", "log", "1", "--attempt", "7").returncode == 1
    # A job that fails every time ends Failed after its last retry.
    d.ok("gbatch", "--max-retries", "1", "bash", "-c", "exit 9")
    three = d.wait_state(3, "Failed", timeout=30)
    assert three["exit_code"] == 9 and len(three["attempts"]) == 1


def test_quotas_wait_refuse_and_change_at_runtime(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="4")
    configure(d, "[quota.default_user]\nmax_running_jobs = 1\nmax_queued_jobs = 2\n")
    d.start()
    go = tmp_path / "go"
    waiter = ["bash", "-c", f"while [ ! -e {go} ]; do sleep 0.1; done"]
    d.ok("gbatch", *waiter)
    d.wait_state(1, "Running")
    d.ok("gbatch", *waiter)
    user = d.job(1)["submitted_by"]
    two = wait_for(lambda: (lambda j: j if j.get("pending_reason") else None)(d.job(2)),
                   what="job 2 held by its quota")
    assert two["reason_detail"] == f"{user} runs 1 of 1 job allowed"
    assert "(Quota)" in d.ok("gqueue")
    d.ok("gbatch", *waiter)
    res = d.run("gbatch", "true")                       # a third queued job: refused
    assert res.returncode == 1
    assert res.stderr.strip() == (f"Failed to add job: quota: {user} has 2 of 2 queued jobs "
                                  "allowed (max_queued_jobs); nothing was submitted")
    listing = d.ok("gctl", "quota", "list")
    assert f"user          {user}" in listing or user in listing
    # Raised at runtime (this account runs the daemon: it is an admin); persisted.
    d.ok("gctl", "quota", "set", "--user", user, "--max-running-jobs", "3")
    d.wait_state(2, "Running")
    d.wait_state(3, "Running")
    status, body = d.http("GET", "/quotas")
    row = next(r for r in body["quotas"] if r["scope"] == "user" and r["name"] == user)
    assert row["running_jobs"] == 3 and row["override"] == {"max_running_jobs": 3}
    d.ok("gflowd", "restart")
    status, body = d.http("GET", "/quotas")
    row = next(r for r in body["quotas"] if r["scope"] == "user" and r["name"] == user)
    assert row["limits"]["max_running_jobs"] == 3
    assert d.http("PUT", "/quotas", {"scope": "user", "name": user,
                                     "limits": {"max_gpus": 1}})[0] == 400
    d.ok("gctl", "quota", "remove", "--user", user)
    go.touch()
    for i in (1, 2, 3):
        d.wait_state(i, "Finished")


def test_suspend_resume_and_log_line_ranges(daemon, tmp_path):
    d = daemon
    d.ok("gbatch", "--gpus", "1", "bash", "-c",
         "for i in $(seq 1 1000); do echo $i; done; i=0; "
         "while true; do i=$((i+1)); echo tick $i; sleep 0.1; done")
    d.wait_state(1, "Running")
    pid = job_pid(d, 1)
    log = d.logs / "1.log"
    wait_for(lambda: "tick" in log.read_text(), what="the job to print")
    assert d.ok("gjob", "log", "1", "--first", "3") == "1\n2\n3\n"
    status, text = d.http("GET", "/jobs/1/log/lines?first=2")
    assert (status, text) == (200, "1\n2\n")
    out = d.ok("gjob", "suspend", "1")
    assert "keeps its GPUs" in out
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
             what="the job to stop")
    time.sleep(0.5)
    size = log.stat().st_size
    time.sleep(0.6)
    assert log.stat().st_size == size                  # nothing runs while suspended
    assert d.job(1)["state"] == "Running" and d.job(1)["gpu_ids"] == [0]
    line = next(ln for ln in d.ok("gqueue").splitlines() if ln.split()[0] == "1")
    assert line.split()[2] == "S"
    assert d.run("gjob", "suspend", "1").returncode == 1          # already suspended
    d.ok("gjob", "resume", "1")
    wait_for(lambda: log.stat().st_size > size, what="the job to run again")
    last = d.ok("gjob", "log", "1", "--last", "1")
    assert last.startswith("tick ") and last.count("\n") == 1
    # A suspended job can still be cancelled (it gets SIGCONT after the SIGTERM).
    d.ok("gjob", "suspend", "1")
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
             what="the job to stop again")
    d.ok("gcancel", "1")
    job = d.wait_state(1, "Cancelled")
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status()
             == psutil.STATUS_ZOMBIE, timeout=8, what="the job to exit quickly")
    assert job["exit_code"] is None or job["exit_code"] != 0


def test_gqueue_start_and_gstats_gpu_hours(daemon):
    d = daemon
    d.ok("gbatch", "--gpus", "2", "-t", "10:00", "sleep", "30")        # 1: both GPUs, 10 min
    one = d.wait_state(1, "Running")
    d.ok("gbatch", "--gpus", "1", "-t", "5", "true")                    # 2: after 1
    d.ok("gbatch", "--gpus", "2", "true")                               # 3: after 2 (order)
    lines = [ln.split() for ln in d.ok("gqueue", "--start").splitlines()]
    assert lines[0][4] == "START_TIME"
    rows = {r[0]: r for r in lines[1:]}
    from datetime import datetime
    expected = one["started_at"]["secs_since_epoch"] + 600
    got = datetime.strptime(rows["2"][4], "%Y-%m-%dT%H:%M:%S").timestamp()
    assert abs(got - expected) <= 2
    got3 = datetime.strptime(rows["3"][4], "%Y-%m-%dT%H:%M:%S").timestamp()
    assert abs(got3 - (expected + 300)) <= 2
    # The waiting jobs first: cancelling 1 first frees its GPUs, and 2 may start (and
    # count) before the same command reaches it.
    d.ok("gcancel", "2-3")
    d.ok("gcancel", "1")
    d.wait_state(1, "Cancelled")
    doc = json.loads(d.ok("gstats", "--gpu-hours", "-o", "json"))
    user = one["submitted_by"]
    row = next(r for r in doc["users"] if r["user"] == user)
    assert row["jobs"] == 1 and 0 < row["gpu_hours"] < 0.1       # 2 GPUs for a few seconds


def test_fair_share_lets_the_user_with_less_recent_use_go_first(daemon_factory, tmp_path):
    d = daemon_factory(fake_gpus="1")
    configure(d, '[daemon.fair_share]\nenabled = true\nhalf_life = "7d"\n')
    d.start()

    def submit(user, command, **kw):
        status, body = d.http("POST", "/jobs", {"command": command, "gpus": 1,
                                                "submitted_by": user, "run_dir": str(tmp_path),
                                                **kw})
        assert status == 201, body
        return body["id"]
    first = submit("alice", "sleep 1")
    d.wait_state(first, "Finished")
    go = tmp_path / "go"
    blocker = submit("carol", f"while [ ! -e {go} ]; do sleep 0.1; done")
    d.wait_state(blocker, "Running")
    late_alice = submit("alice", "sleep 0.5")
    bob = submit("bob", "sleep 0.5")                  # submitted after alice's, same priority
    go.touch()
    d.wait_state(late_alice, "Finished")
    b, a = d.job(bob), d.job(late_alice)
    assert b["started_at"]["secs_since_epoch"] <= a["started_at"]["secs_since_epoch"]
    assert a["started_at"]["secs_since_epoch"] >= b["finished_at"]["secs_since_epoch"]
    status, body = d.http("GET", "/fair-share")
    assert status == 200 and body["enabled"] and body["users"]["alice"]["factor"] < 1
    table = d.ok("gqueue", "-a", "-u", "all", "-f", "JOBID,USER,FAIRSHARE").splitlines()
    assert any(line.split()[1:] == ["alice", f"{body['users']['alice']['factor']:.3f}"]
               for line in table[1:])
    assert "FairShare:" in d.ok("gjob", "show", str(first))


def test_email_notifications_reach_a_real_smtp_server(daemon_factory):
    from smtp_server import Mailbox
    with Mailbox() as box:
        d = daemon_factory(fake_gpus="1")
        configure(d, "[notifications]\nenabled = true\n[notifications.email]\n"
                     f'smtp_host = "127.0.0.1"\nsmtp_port = {box.port}\n'
                     'from = "gflow <gflow@lab.example>"\nto = ["admins@lab.example"]\n'
                     'events = ["job_failed"]\n')
        d.start()
        d.ok("gbatch", "--notify-email", "alice@lab.example", "--notify-on", "started,completed",
             "echo", "hi")
        d.ok("gbatch", "bash", "-c", "exit 2")
        d.wait_state(1, "Finished")
        d.wait_state(2, "Failed")
        messages = box.wait(3)
        by_rcpt: dict = {}
        for rcpts, msg in messages:
            by_rcpt.setdefault(tuple(rcpts), []).append(msg)
        alice = sorted(m["X-Gflow-Event"] for m in by_rcpt[("alice@lab.example",)])
        assert alice == ["job_completed", "job_started"]
        (admin,) = by_rcpt[("admins@lab.example",)]
        assert admin["Subject"].startswith("[gflow] job 2 (bash -c")
        assert admin["Subject"].endswith(" failed: exit code 2")
        assert admin["From"] == "gflow <gflow@lab.example>"
        assert "exit_code: 2" in admin.get_content()
        # The address is the owner's business: not in listings, nor in webhooks.
        assert "notify" not in d.job(1)
    # A daemon without [notifications.email] refuses --notify-email at once.
    other = daemon_factory(fake_gpus="1")
    other.start()
    res = other.run("gbatch", "--notify-email", "a@b.example", "true")
    assert res.returncode == 1 and "sends no e-mail" in res.stderr
