"""Issue 17's pure rules and client parts: dependency conditions, begin times and quotas in
the policy; parsing `--begin`; the [quota] config; log line ranges; gbatch/gjob/gctl/gflowd."""

from __future__ import annotations

import pytest

from gflow.begintime import format_begin, parse_begin
from gflow.config import load_config
from gflow.config_quota import QuotaConfig, QuotaLimits
from gflow.errors import ConfigError, ParseError
from gflow.scheduler.policy import (
    Candidate, Occupant, dependency_status, dependency_verdict,
)
import test_cli_commands
from test_cli_commands import FakeClient, job, run

# gjob/gctl run against test_cli_commands' fake client, in an isolated HOME and cwd.
fake = test_cli_commands.fake
isolated = test_cli_commands.isolated
from test_policy import run as plan_run

# --- dependency conditions ------------------------------------------------------------------

FINAL = ["Finished", "Failed", "Cancelled", "Timeout"]


@pytest.mark.parametrize("condition,expected", [
    ("afterok", {"Queued": "wait", "Running": "wait", "Finished": "ok", "Failed": "never",
                 "Cancelled": "never", "Timeout": "never"}),
    ("afterany", {"Queued": "wait", "Running": "wait", "Finished": "ok", "Failed": "ok",
                  "Cancelled": "ok", "Timeout": "ok"}),
    ("afternotok", {"Queued": "wait", "Running": "wait", "Finished": "never", "Failed": "ok",
                    "Cancelled": "ok", "Timeout": "ok"}),
])
def test_dependency_verdicts(condition, expected):
    assert {s: dependency_verdict(condition, s) for s in expected} == expected


def test_conditions_combine_in_all_and_any_modes():
    c = Candidate(id=9, user="u", deps=(1, 2), dep_conditions=("afterany", "afternotok"))
    assert dependency_status(c, {1: "Failed", 2: "Timeout"}) == ("ok", None)
    assert dependency_status(c, {1: "Running", 2: "Failed"}) == ("wait", 1)
    assert dependency_status(c, {1: "Running", 2: "Finished"}) == ("never", 2)
    any_mode = Candidate(id=9, user="u", deps=(1, 2), dep_mode_any=True,
                         dep_conditions=("afterok", "afternotok"))
    assert dependency_status(any_mode, {1: "Failed", 2: "Running"}) == ("wait", 2)
    assert dependency_status(any_mode, {1: "Failed", 2: "Finished"}) == ("never", 2)
    assert dependency_status(any_mode, {1: "Finished", 2: "Finished"}) == ("ok", None)
    # Without conditions nothing changed: every parent must finish.
    plain = Candidate(id=9, user="u", deps=(1, 2))
    assert dependency_status(plain, {1: "Finished", 2: "Failed"}) == ("never", 2)


# --- begin times and quotas in the policy ---------------------------------------------------

def test_begin_time_waits_reports_the_first_wake_and_blocks_nobody():
    cands = [Candidate(id=1, user="a", gpus=1, priority=200, begin_at=500.0, begin_text="x"),
             Candidate(id=2, user="a", gpus=1, begin_at=300.0, begin_text="00:05"),
             Candidate(id=3, user="a", gpus=2)]
    d = plan_run(cands, n_gpus=2, now=100.0)
    assert d.starts == [(3, [0, 1])]
    assert d.waiting[2] == ("BeginTime", "starts at 00:05") and d.wake_at == 300.0
    d = plan_run(cands, n_gpus=2, now=300.0)
    assert d.waiting[1][0] == "BeginTime" and d.wake_at == 500.0
    assert [s[0] for s in d.starts] == [2]        # due now: starts before the bigger job


def test_quota_counts_what_starts_in_the_same_pass():
    quotas = QuotaConfig(default_user=QuotaLimits(max_running_gpus=3),
                         projects={"p": QuotaLimits(max_running_jobs=2)})
    cands = [Candidate(id=i, user="a", gpus=1, project="p" if i < 4 else None)
             for i in range(1, 6)]
    running = [Occupant(id=9, user="a", gpu_ids=(7,), project="p")]
    d = plan_run(cands, running, n_gpus=8, quotas=quotas)
    assert [s[0] for s in d.starts] == [1, 4]
    assert d.waiting[2] == ("Quota", "project p runs 2 of 2 jobs allowed")
    assert d.waiting[5] == ("Quota", "a runs 3 of 3 GPUs allowed")
    assert not d.protecting


def test_a_job_bigger_than_its_quota_says_so():
    quotas = QuotaConfig(users={"a": QuotaLimits(max_running_gpus=2)})
    d = plan_run([Candidate(id=1, user="a", gpus=3)], n_gpus=4, quotas=quotas)
    assert d.waiting[1] == ("Quota", "a runs 0 of 2 GPUs allowed; this job needs 3, more "
                                     "than the quota ever allows")


# --- parsing --begin --------------------------------------------------------------------------

# 2026-11-23 10:00:00 UTC = 18:00 in Asia/Shanghai
NOW = 1795428000.0


@pytest.mark.parametrize("text,expected", [
    ("now", NOW), ("now+90", NOW + 5400), ("now+2h", NOW + 7200), ("now + 30s", NOW + 30),
    ("now+1d", NOW + 86400), ("now+2hours", NOW + 7200),
    ("19:30", NOW + 5400), ("17:00", NOW + 23 * 3600), ("18:00", NOW + 86400),
    ("18:00:30", NOW + 30),
    ("2026-11-24", NOW + 6 * 3600), ("2026-11-24 09:15", NOW + 15 * 3600 + 900),
    ("2026-11-24T09:15:00", NOW + 15 * 3600 + 900),
    ("2026-11-23T12:00:00Z", NOW + 7200), ("2026-11-23T12:00:00+01:00", NOW + 3600),
])
def test_begin_formats_in_the_configured_zone(text, expected):
    assert parse_begin(text, NOW, "Asia/Shanghai") == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "25:00", "now+5w", "12:61", "2026-13-01",
                                  "now-5"])
def test_bad_begin_times_are_refused(text):
    with pytest.raises(ParseError):
        parse_begin(text, NOW, "UTC")


def test_format_begin_adds_the_date_when_not_within_a_day():
    assert format_begin(NOW + 5400, NOW, "Asia/Shanghai") == "19:30"
    assert format_begin(NOW + 2 * 86400, NOW, "UTC") == "2026-11-25 10:00"


# --- the [quota] config -----------------------------------------------------------------------

def test_quota_config_merges_defaults_and_named_entries(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text("[quota.default_user]\nmax_running_jobs = 4\nmax_running_gpus = 2\n"
                    "[quota.users.alice]\nmax_running_gpus = 4\n"
                    "[quota.default_project]\nmax_queued_jobs = 9\n"
                    "[quota.projects.nlp]\nmax_running_jobs = 1\n[quota.team]\nx = 1\n")
    cfg = load_config(path, env={"HOME": str(tmp_path)})
    assert cfg.quota.user_limits("alice") == QuotaLimits(4, 4, None)
    assert cfg.quota.user_limits("bob") == QuotaLimits(4, 2, None)
    assert cfg.quota.project_limits("nlp") == QuotaLimits(1, None, 9)
    assert cfg.quota.project_limits(None) is None
    assert cfg.warnings == (f"unknown setting 'quota.team' in {path} (ignored)",)
    over = QuotaConfig(users={"alice": QuotaLimits(max_running_jobs=1)},
                       default_user=QuotaLimits(max_queued_jobs=50))
    assert cfg.quota.merged_with(over).user_limits("alice") == QuotaLimits(1, 4, 50)


def test_bad_quota_values_name_the_key(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text("[quota.users.alice]\nmax_running_gpus = -1\n")
    with pytest.raises(ConfigError, match=r"quota\.users\.alice\.max_running_gpus"):
        load_config(path, env={"HOME": str(tmp_path)})


# --- log line ranges --------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"one", b"one\n", b"a\nb\nc\n", b"a\nb\nc",
                                     b"\n\n\n", b"x" * 70000 + b"\n" + b"y\n" * 40000 + b"z"])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 50000])
def test_first_and_last_lines_match_splitlines(tmp_path, content, k):
    from gflow.api.routes.job_extras import read_first, read_last
    path = tmp_path / "log"
    path.write_bytes(content)
    lines = content.splitlines(keepends=True)
    assert read_first(str(path), k) == (b"".join(lines[:k]), False)
    assert read_last(str(path), k)[0] == b"".join(lines[-k:] if k else [])


def test_log_lines_never_follow_a_symlink(tmp_path):
    from gflow.api.replies import ApiError
    from gflow.api.routes.job_extras import read_last
    (tmp_path / "secret").write_text("x\n")
    (tmp_path / "log").symlink_to(tmp_path / "secret")
    with pytest.raises(ApiError):
        read_last(str(tmp_path / "log"), 1)


# --- gbatch -----------------------------------------------------------------------------------

class Recorder(FakeClient):
    def submit(self, body):
        self.submitted = body
        return {"id": 7, "run_name": "gflow-job-7"}


@pytest.fixture
def submitted(monkeypatch):
    from gflow.cli import gbatch
    client = Recorder(jobs=[job(i, "Finished") for i in (3, 4)])
    monkeypatch.setattr(gbatch.Client, "from_env", classmethod(lambda cls, *a, **k: client))
    monkeypatch.setattr(gbatch.Client, "from_config", classmethod(lambda cls, *a, **k: client))
    monkeypatch.setattr("gflow.cli.submit_checks.warn_gpu_count", lambda *a: None)
    return client


def test_gbatch_slurm_dependencies_begin_and_retries(capsys, submitted, monkeypatch):
    monkeypatch.setenv("GFLOW_TIMEZONE", "UTC")
    rc, out, err = run(capsys, "gbatch", "--depends-on", "afterany:3,afterok:@",
                       "--begin", "now+2h", "--max-retries", "2", "true")
    assert rc == 0, err
    body = submitted.submitted
    assert body["depends_on_ids"] == [3, 4] and body["dependency_mode"] == "All"
    assert body["dependency_conditions"] == {"3": "afterany"}
    assert body["max_retries"] == 2
    import time
    assert abs(body["scheduled_at"]["secs_since_epoch"] - (time.time() + 7200)) < 5


def test_gbatch_any_mode_and_refusals(capsys, submitted):
    assert run(capsys, "gbatch", "-d", "afternotok:3?afterok:4", "true")[0] == 0
    assert submitted.submitted["dependency_mode"] == "Any"
    assert submitted.submitted["dependency_conditions"] == {"3": "afternotok"}
    for argv, words in ((["-d", "singleton:3"], "'singleton' is not supported"),
                        (["-d", "afterok:"], "invalid dependency"),
                        (["-d", "afterok:3,afterany:4?afterok:5"], "not both"),
                        (["--begin", "soon"], "invalid value 'soon' for --begin")):
        rc, _out, err = run(capsys, "gbatch", *argv, "true")
        assert rc == 1 and words in err, err


@pytest.mark.parametrize("word,pointer", [("list", "gqueue"), ("status", "gjob show"),
                                          ("log", "gjob log"), ("queue", "gqueue")])
def test_gbatch_refuses_subcommands_of_other_queues(capsys, submitted, word, pointer):
    rc, _out, err = run(capsys, "gbatch", word)
    assert rc == 1 and pointer in err and "gbatch only submits jobs" in err
    assert not hasattr(submitted, "submitted")


def test_gbatch_begin_directive(tmp_path, capsys, submitted):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n# GFLOW --begin=now+10\necho hi\n")
    assert run(capsys, "gbatch", str(script))[0] == 0
    assert submitted.submitted["scheduled_at"] is not None


# --- gjob wait / suspend / log / show ---------------------------------------------------------

def test_gjob_wait_returns_the_first_failures_exit_code(capsys, fake, monkeypatch):
    from gflow.cli import gjob_more
    monkeypatch.setattr(gjob_more, "POLL_SECS", 0)
    fake.jobs = {1: job(1, "Running"), 2: job(2, "Running"), 3: job(3, "Finished")}
    rounds = iter([
        lambda: fake.jobs.update({2: job(2, "Failed", exit_code=7,
                                         finished_at={"secs_since_epoch": 20,
                                                      "nanos_since_epoch": 0})}),
        lambda: fake.jobs.update({1: job(1, "Failed", exit_code=4,
                                         finished_at={"secs_since_epoch": 30,
                                                      "nanos_since_epoch": 0})}),
    ])
    real = fake.list_jobs

    def list_jobs(**kw):
        next(rounds, lambda: None)()
        return real(**kw)
    monkeypatch.setattr(fake, "list_jobs", list_jobs)
    rc, out, _err = run(capsys, "gjob", "wait", "1-3")
    assert rc == 7
    assert out.splitlines() == ["Job 3 finished", "Job 2 failed (exit code 7)",
                                "Job 1 failed (exit code 4)"]


def test_gjob_wait_any_and_all_finished(capsys, fake):
    fake.jobs = {1: job(1, "Running"), 2: job(2, "Finished")}
    assert run(capsys, "gjob", "wait", "--any", "1", "2")[0] == 0
    fake.jobs = {1: job(1, "Finished"), 2: job(2, "Timeout", exit_code=None)}
    assert run(capsys, "gjob", "wait", "1,2", "--silent")[:2] == (1, "")
    rc, _out, err = run(capsys, "gjob", "wait", "9")
    assert rc == 1 and "Job 9 not found" in err


def test_gjob_suspend_resume_and_release_at(capsys, fake, monkeypatch):
    fake.jobs = {5: job(5, "Running"), 6: job(6, "Hold")}
    rc, out, _ = run(capsys, "gjob", "suspend", "5")
    assert rc == 0 and "keeps its GPUs" in out
    assert fake.requests[-1][:2] == ("POST", "/jobs/5/suspend")
    assert run(capsys, "gjob", "resume", "5")[1] == "Job 5 resumed.\n"
    monkeypatch.setenv("GFLOW_TIMEZONE", "UTC")
    rc, out, _ = run(capsys, "gjob", "release", "6", "--at", "now+1h")
    assert rc == 0 and "starts no earlier than" in out
    method, path, body, _q = fake.requests[-1]
    assert (method, path) == ("POST", "/jobs/6/release") and body["at"] > 0


def test_gjob_log_first_last_and_attempt(capsys, fake, tmp_path):
    fake.jobs = {5: job(5, "Failed")}
    old = tmp_path / "5.attempt-1.log"
    old.write_text("attempt one\n")
    fake.routes[("GET", "/jobs/5/log/lines")] = lambda b, q: (200, b"l1\nl2\n")
    fake.routes[("GET", "/jobs/5/log")] = lambda b, q: (
        (200, str(old)) if q.get("attempt") == 1 else (404, {"error": "Job 5 has no attempt 9 "
                                                                     "(attempts: 1-2)"}))
    real = fake.request
    fake.request = lambda m, p, body=None, query=None, raw=False: real(m, p, body, query)
    assert run(capsys, "gjob", "log", "5", "--last", "2")[:2] == (0, "l1\nl2\n")
    assert fake.requests[-1][3] == {"attempt": None, "first": None, "last": 2}
    assert run(capsys, "gjob", "log", "5", "--attempt", "1")[:2] == (0, "attempt one\n")
    rc, _out, err = run(capsys, "gjob", "log", "5", "--attempt", "9")
    assert rc == 1 and "no attempt 9" in err


def test_gjob_show_lists_attempts_begin_and_conditions():
    from gflow.cli.gjob_show import show_lines
    t = {"secs_since_epoch": 1795428000, "nanos_since_epoch": 0}
    j = job(5, "Running", depends_on_ids=[3, 4], dependency_mode="All", max_retries=2,
            dependency_conditions={"3": "afterany"}, scheduled_at=t, suspended_at=t,
            started_at=t, attempts=[{"attempt": 1, "state": "Failed", "exit_code": 3,
                                     "started_at": t, "finished_at": t,
                                     "detail": "exit code 3"}])
    text = "\n".join(show_lines(j, 1795428060.0))
    assert "DependsOn=afterany:3,afterok:4" in text
    assert "Begin=" in text and "Suspended=" in text and "(for 00:01:00)" in text
    assert "Attempts: (max retries 2)" in text
    assert "#1 Failed exit=3" in text and "#2 Running (current" in text


def test_gqueue_shows_suspended_and_the_new_reasons():
    from gflow.cli import gqueue, render
    assert gqueue.cell(job(1, "Running", suspended_at={"secs_since_epoch": 1,
                                                       "nanos_since_epoch": 0}),
                       "ST", False, 0) == "S"
    assert render.nodelist_cell(job(2, pending_reason="BeginTime")) == "(BeginTime)"
    assert render.nodelist_cell(job(3, pending_reason="Quota")) == "(Quota)"
    assert render.nodelist_cell(job(4)) == "(Resources)"


# --- gctl quota, gflowd start/stop ------------------------------------------------------------

def test_gctl_quota_list_set_remove(capsys, fake):
    rows = [{"scope": "default_user", "name": None, "limits": {"max_running_gpus": 2},
             "config": {"max_running_gpus": 2}, "override": {}},
            {"scope": "user", "name": "alice", "limits": {"max_running_gpus": 4},
             "override": {"max_running_gpus": 4}, "config": {}, "running_jobs": 1,
             "running_gpus": 2, "queued_jobs": 0}]
    fake.routes[("GET", "/quotas")] = (200, {"quotas": rows})
    fake.routes[("PUT", "/quotas")] = lambda b, q: (200, {"override": b["limits"]})
    fake.routes[("DELETE", "/quotas")] = (200, {"removed": True})
    rc, out, _ = run(capsys, "gctl", "quota", "list")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["SCOPE", "NAME", "JOBS", "GPUS", "QUEUED", "SOURCE"]
    assert lines[1].split() == ["default_user", "*", "-", "2", "-", "config"]
    assert lines[2].split() == ["user", "alice", "1/-", "2/4", "0/-", "override"]
    rc, out, _ = run(capsys, "gctl", "quota", "set", "--user", "alice",
                     "--max-running-gpus", "4", "--max-queued-jobs", "none")
    assert rc == 0 and out.startswith("Updated user 'alice' quota")
    assert fake.requests[-1][2] == {"scope": "user", "name": "alice", "limits": {
        "max_running_gpus": 4, "max_queued_jobs": None}}
    assert run(capsys, "gctl", "quota", "remove", "--default-project")[0] == 0
    assert fake.requests[-1][3] == {"scope": "default_project", "name": None}
    rc, _out, err = run(capsys, "gctl", "quota", "set", "--user", "a")
    assert rc == 1 and "give at least one" in err


def test_gflowd_start_and_stop_are_up_and_down():
    from gflow.cli import gflowd
    parser = gflowd.build_parser()
    assert parser.parse_args(["start"]).cmd in ("up", "start")
    assert parser.parse_args(["stop"]).cmd in ("down", "stop")


# --- gqueue --start, gstats --gpu-hours -------------------------------------------------------

def _t(secs):
    return {"secs_since_epoch": int(secs), "nanos_since_epoch": 0}


def _d(secs):
    return {"secs": int(secs), "nanos": 0}


def test_start_estimates_follow_time_limits_and_order():
    from gflow.cli.gqueue_start import INF, estimate
    now = 10_000.0
    jobs = [job(1, "Running", gpus=1, gpu_ids=[0], started_at=_t(now - 600),
                time_limit=_d(3600)),                       # GPU 0 free at now+3000
            job(2, "Running", gpus=1, gpu_ids=[1]),        # GPU 1: no limit, never free
            job(3, gpus=1, time_limit=_d(600)),             # after 1: now+3000
            job(4, gpus=1, priority=5),                     # after 3: now+3600
            job(5, gpus=2),                                 # needs GPU 1 too: unknown
            job(6, gpus=0, depends_on_ids=[3]),             # after 3 ends: now+3600
            job(7, gpus=0, scheduled_at=_t(now + 50)),      # its begin time
            job(8, gpus=0, depends_on_ids=[2])]             # behind a job without limit
    starts = estimate(jobs, [0, 1], now)
    assert starts[3] == now + 3000 and starts[4] == now + 3600
    assert starts[5] == INF and starts[8] == INF
    assert starts[6] == now + 3600 and starts[7] == now + 50


def test_gqueue_start_prints_start_times(capsys, fake):
    fake.routes[("GET", "/info")] = (200, {"gpus": [{"index": 0}], "allowed_gpu_indices": None})
    fake.jobs = {1: job(1, "Running", gpus=1, gpu_ids=[0]), 2: job(2, gpus=1),
                 3: job(3, gpus=0), 4: job(4, "Hold")}
    rc, out, _ = run(capsys, "gqueue", "--start")
    lines = [ln.split() for ln in out.splitlines()]
    assert rc == 0 and lines[0] == ["JOBID", "NAME", "USER", "ST", "START_TIME", "NODES",
                                    "NODELIST(REASON)"]
    assert lines[1][4] == "unknown" and lines[3][4] == "N/A"
    assert lines[2][4][:4].isdigit()


def test_gpu_hours_count_the_period_attempts_and_projects():
    from gflow.cli.gstats_hours import gpu_hours
    jobs = [job(1, "Finished", gpus=2, submitted_by="alice", project="nlp",
                started_at=_t(0), finished_at=_t(7200)),
            job(2, "Running", gpus=1, submitted_by="bob", started_at=_t(3600),
                attempts=[{"started_at": _t(0), "finished_at": _t(1800), "gpu_ids": [0, 1]}]),
            job(3, "Finished", gpus=0, submitted_by="carol", started_at=_t(0),
                finished_at=_t(9000))]
    out = gpu_hours(jobs, since=3600, until=10_800, now=10_800)
    assert out["users"] == {"alice": [2.0, 1], "bob": [2.0, 1]}
    assert out["projects"] == {"nlp": [2.0, 1], "-": [2.0, 1]}
    out = gpu_hours(jobs, since=0, until=10_800, now=10_800)
    assert out["users"]["bob"] == [3.0, 1]          # 1 h of 2 GPUs (attempt 1) + 2 h of 1


def test_gstats_gpu_hours_outputs(capsys, fake):
    fake.jobs = {1: job(1, "Finished", gpus=1, submitted_by="alice", project="p",
                        started_at=_t(1_700_000_000), finished_at=_t(1_700_003_600))}
    rc, out, _ = run(capsys, "gstats", "--gpu-hours", "-o", "csv")
    assert rc == 0 and out.splitlines() == ["kind,name,gpu_hours,jobs", "user,alice,1.00,1",
                                            "project,p,1.00,1"]
    import json
    doc = json.loads(run(capsys, "gstats", "--gpu-hours", "-o", "json")[1])
    assert doc["users"] == [{"user": "alice", "gpu_hours": 1.0, "jobs": 1}]
    out = run(capsys, "gstats", "--gpu-hours")[1]
    assert "USER" in out and "alice" in out and "PROJECT" in out


def test_fair_share_orders_within_a_priority_only():
    cands = [Candidate(id=1, user="a", gpus=1), Candidate(id=2, user="b", gpus=1),
             Candidate(id=3, user="a", gpus=1, priority=20)]
    assert [s[0] for s in plan_run(cands, n_gpus=2).starts] == [3, 1]
    shares = {"a": 500.0, "b": 10.0}
    assert [s[0] for s in plan_run(cands, n_gpus=2, shares=shares).starts] == [3, 2]


def test_fair_share_config(tmp_path):
    from gflow.config_fairshare import FairShareConfig
    path = tmp_path / "g.toml"
    path.write_text('[daemon.fair_share]\nenabled = true\nhalf_life = "12h"\n')
    cfg = load_config(path, env={"HOME": str(tmp_path)})
    assert cfg.daemon.fair_share == FairShareConfig(True, 43200.0)
    assert load_config(None, env={"HOME": str(tmp_path / "x")}).daemon.fair_share.enabled is False
    path.write_text("[daemon.fair_share]\nhalf_life_secs = 0\n")
    with pytest.raises(ConfigError, match="half_life_secs"):
        load_config(path, env={"HOME": str(tmp_path)})


def test_gjob_show_and_gqueue_show_the_fair_share_factor(capsys, fake):
    fake.routes[("GET", "/fair-share")] = (200, {"enabled": True, "users": {
        "tester": {"factor": 0.25, "usage_gpu_hours": 3.5}}})
    fake.jobs = {1: job(1, "Queued")}
    out = run(capsys, "gjob", "show", "1")[1]
    assert "Factor=0.250 (tester: 3.50 GPU-hours" in out
    out = run(capsys, "gqueue", "-f", "JOBID,USER,FAIRSHARE")[1]
    assert out.splitlines()[1].split() == ["1", "tester", "0.250"]
