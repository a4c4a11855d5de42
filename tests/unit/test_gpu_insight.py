"""GPU insight with simulated GPUs and a fake clock: who holds each GPU, memory that really
fits, idle holders, ignored processes and each job's sampled GPU use (issue 18).

The "foreign holder" is a real sleeping process started here, so its owner, command and
age are real; simulated usage (GFLOW_FAKE_GPUS "N:MEM;GPU=MEM@PID%UTIL" or the file
GFLOW_FAKE_GPU_PROCS names) puts it on a GPU. tests/integration/test_gpu_insight.py runs
the same through a daemon, with simulated GPUs and with the NVML stub.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time

import pytest

from gflow.api.metrics import render_metrics
from gflow.cli import gpu_view, render
from gflow.config import load_config
from gflow.errors import ConfigError, ParseError
from gflow.gpu import GpuInventory, check_fake_gpus, parse_fake_spec
from gflow.gpu_attribution import JobProcess, ProcFacts, job_of
from gflow.gpu_idle import IdleTracker, IgnoreList
from gflow.gpu_sim import parse_usage
from gflow.identity import Caller
from gflow.models import Job, job_from_wire, job_to_wire
from gflow.scheduler.policy import Candidate, Gpu, PolicyInput, plan
from test_api_routes import FakeClock, make_core
from test_core import settle, submit

ME = pwd.getpwuid(os.geteuid()).pw_name
MIN = 60.0


@pytest.fixture
def sleeper():
    """A real process to stand for a foreign GPU holder (`sleep 300`)."""
    procs = []

    def start(secs: int = 300) -> subprocess.Popen:
        p = subprocess.Popen(["sleep", str(secs)])
        procs.append(p)
        return p
    yield start
    for p in procs:
        p.kill()
        p.wait()


def end(proc) -> None:
    proc.kill()
    proc.wait()


def gpus_of(core) -> list:
    status, body = core.handle("gpus", {})
    assert status == 200, body
    return body["gpus"]


# --- simulated usage -------------------------------------------------------------------

def test_usage_grammar():
    assert [(e.gpu, e.used_mb, e.pid, e.util) for e in parse_usage(
        "1=50G@4242%0; 0=512M, 2=1.5G@7 # a comment\n3=100%30")] == \
        [(1, 51200, 4242, 0), (0, 512, None, None), (2, 1536, 7, None), (3, 100, None, 30)]
    for bad in ("1=", "x=5G", "1=5X", "1=5G@", "1=5G%101", "1:5G"):
        with pytest.raises(ParseError, match="invalid simulated GPU usage"):
            parse_usage(bad)
    assert parse_fake_spec("4:80G;1=50G@4242") == (4, 81920)
    assert check_fake_gpus({"GFLOW_FAKE_GPUS": "2:80G;5=1G"}) == \
        "simulated GPU usage in GFLOW_FAKE_GPUS names GPU 5, but there are only 2 GPUs"
    assert check_fake_gpus({"GFLOW_FAKE_GPUS": "2:80G;1=1G@7%3"}) is None


def test_simulated_usage_follows_live_processes_and_the_file(sleeper, tmp_path):
    holder = sleeper()
    usage = tmp_path / "usage"
    inv = GpuInventory(f"3:80G;1=50G@{holder.pid}%0;2=2G", str(usage))
    g0, g1, g2 = inv.poll()
    assert (g0.memory_used_mb, g0.utilization, g0.processes) == (0, 0, ())
    assert g1.process_pids == (holder.pid,) and g1.memory_used_mb == 51200
    assert (g1.processes[0].used_mb, g1.processes[0].util) == (51200, 0)
    assert g2.process_pids == () and g2.memory_used_mb == 2048     # used, no process shown
    usage.write_text(f"0=10G@{os.getpid()}%70\n")                  # read at every poll
    assert inv.poll()[0].processes[0].util == 70 and inv.poll()[0].utilization == 70
    end(holder)                      # as the driver would, an ended process is not reported
    assert inv.poll()[1].process_pids == () and inv.poll()[1].memory_used_mb == 0
    # Without simulated usage nothing is known, as before.
    assert GpuInventory("2").poll()[0].memory_used_mb is None


# --- attribution -----------------------------------------------------------------------

def test_job_of_walks_the_ancestors_and_checks_start_times():
    jobs = [JobProcess(7, monitor_pid=100, monitor_start=1000.0, job_pid=101, job_start=1001.0)]
    child = ProcFacts(555, "alice", "python train.py", 1002.0,
                      ((101, 1001.0), (100, 1000.0), (1, 1.0)))
    assert job_of(child, jobs) == 7
    orphan = ProcFacts(556, "alice", "python x.py", 1003.0, ((100, 1000.0), (1, 1.0)))
    assert job_of(orphan, jobs) == 7                  # re-parented to the subreaper
    reused = ProcFacts(557, "bob", "vllm serve", 9000.0, ((100, 8000.0), (1, 1.0)))
    assert job_of(reused, jobs) is None               # pid 100 is someone else now
    assert job_of(ProcFacts(4242, "bob", "x", 5.0, ((1, 1.0),)), jobs) is None


def test_a_foreign_holder_is_named_with_its_user_command_and_age(tmp_path, sleeper):
    holder = sleeper()
    clock = FakeClock(time.time())
    core = make_core(tmp_path, clock, gpus=f"2:80G;1=31.5G@{holder.pid}%0")
    g0, g1 = gpus_of(core)
    assert (g0["state"], g0["processes"], g0["memory_used_mb"]) == ("free", [], 0)
    assert g1["state"] == "foreign" and g1["memory_free_mb"] == 81920 - 32256
    (p,) = g1["processes"]
    assert (p["pid"], p["user"], p["command"], p["job_id"], p["foreign"]) == \
        (holder.pid, ME, "sleep 300", None, True)
    assert p["used_mb"] == 32256 and 0 <= p["age_secs"] < 60
    # /info: 0.4.13's keys unchanged, ours beside them.
    info = core.handle("info", {})[1]["gpus"]
    assert (info[1]["available"], info[1]["reason"], info[1]["state"]) == \
        (False, "Unmanaged", "foreign")
    assert info[1]["processes"][0]["command"] == "sleep 300"
    # ginfo's table.
    rows = gpu_view.gpu_rows({"gpus": info})
    assert rows[1][:2] == ["0", "free"]
    assert rows[2][1].startswith(f"foreign: {ME}'s `sleep 300` pid {holder.pid}, 31.5 GiB, ")
    assert rows[2][2:] == ["31.5/80.0 GiB", "0%"]


def test_a_job_process_is_attributed_through_its_monitor(tmp_path, sleeper):
    """The job's pid file names its monitor: a GPU process below it is the job's; its
    memory and utilisation become the job's sampled GPU use."""
    clock = FakeClock(time.time())
    core = make_core(tmp_path, clock, gpus="2:80G")
    usage = tmp_path / "usage"
    core.gpu_inventory = GpuInventory("2:80G", str(usage))
    jid = submit(core, gpus=1, submitted_by="alice")
    settle(core, False)
    assert core.jobs[jid].gpu_ids == [0]
    # A stand-in monitor with a child (the "training process").
    monitor = subprocess.Popen(["bash", "-c", "sleep 300 & echo $!; wait"],
                               stdout=subprocess.PIPE, text=True)
    try:
        child = int(monitor.stdout.readline())
        import psutil
        core.paths.logs_dir.mkdir(parents=True, exist_ok=True)
        core.paths.job_pidfile(jid).write_text(json.dumps({
            "monitor_pid": monitor.pid,
            "monitor_start": psutil.Process(monitor.pid).create_time(),
            "job_pid": child, "job_start": psutil.Process(child).create_time()}))
        usage.write_text(f"0=10G@{child}%80\n")
        core.refresh_gpus()
        (p,) = gpus_of(core)[0]["processes"]
        assert (p["job_id"], p["job_user"], p["foreign"]) == (jid, "alice", False)
        assert gpus_of(core)[0]["state"] == "job" and gpus_of(core)[0]["jobs"] == \
            [{"id": jid, "user": "alice"}]
        assert core.jobs[jid].gpu_usage == {"peak_memory_mb": 10240,
                                            "mean_util_percent": 80.0, "samples": 1}
        usage.write_text(f"0=20G@{child}%40\n")
        clock.t += 10
        core.refresh_gpus()
        usage.write_text(f"0=5G@{child}%60\n")
        clock.t += 10
        core.refresh_gpus()
        assert core.jobs[jid].gpu_usage == {"peak_memory_mb": 20480,
                                            "mean_util_percent": 60.0, "samples": 3}
        wire = core.handle("get_job", {"id": jid})[1]
        assert json.loads(wire)["gpu_usage"]["peak_memory_mb"] == 20480 \
            if isinstance(wire, (bytes, str)) else wire["gpu_usage"]["peak_memory_mb"] == 20480
        # Kept on the job when it ends (journalled with its final state).
        core.on_exited(jid, {"exit_code": 0, "finished_at": clock.t})
        settle(core, False)
        assert core.jobs[jid].gpu_usage["samples"] == 3
        core.store.commit()
        core.store.snapshot(core.snapshot_state())          # the snapshot keeps it too
        core.store.close()
        core = make_core(tmp_path, clock, gpus="2:80G")
        assert core.jobs[jid].gpu_usage == {"peak_memory_mb": 20480,
                                            "mean_util_percent": 60.0, "samples": 3}
        # gstats sums it up.
        stats = core.handle("stats", {"user": None, "since": None})[1]
        assert (stats["jobs_with_gpu_samples"], stats["max_gpu_peak_memory_mb"],
                stats["avg_gpu_util_percent"]) == (1, 20480, 60.0)
    finally:
        monitor.kill()
        monitor.wait()


def test_gpu_usage_round_trips_on_the_wire():
    job = Job(id=3, gpu_usage={"peak_memory_mb": 2048, "mean_util_percent": 12.5, "samples": 4})
    assert job_from_wire(job_to_wire(job)).gpu_usage == job.gpu_usage
    with pytest.raises(ValueError, match="gpu_usage"):
        job_from_wire({"gpu_usage": {"peak_memory_mb": "lots"}})


# --- memory that really fits -------------------------------------------------------------

def test_policy_places_a_memory_request_only_where_that_much_is_free():
    gpus = [Gpu(0, 81920, free_mb=30720), Gpu(1, 81920, free_mb=81000)]
    big = Candidate(id=1, user="u", gpus=1, gpu_memory_mb=83968 - 8192)   # 74G
    d = plan(PolicyInput(candidates=[big], occupants=[], dep_states={}, gpus=gpus))
    assert d.starts == [(1, [1])]
    d = plan(PolicyInput(candidates=[big], occupants=[], dep_states={}, gpus=gpus[:1]))
    assert d.waiting[1] == ("WaitingForResources",
                            "waiting: 1 GPUs, 0 free; GPU 0 has 30.0G free, 74G requested")
    # Two shared jobs in one pass do not both count on the same free memory.
    a = Candidate(id=2, user="u", gpus=1, shared=True, gpu_memory_mb=20480)
    b = Candidate(id=3, user="u", gpus=1, shared=True, gpu_memory_mb=20480)
    d = plan(PolicyInput(candidates=[a, b], occupants=[], dep_states={},
                         gpus=[Gpu(0, 81920, free_mb=30720)]))
    assert d.starts == [(2, [0])] and "GPU 0 has 10.0G free, 20G requested" in d.waiting[3][1]
    # Unknown free memory (simulated GPUs without usage): the old rules only.
    d = plan(PolicyInput(candidates=[big], occupants=[], dep_states={}, gpus=[Gpu(0, 81920)]))
    assert d.starts == [(1, [0])]


def test_memory_used_by_something_unseen_counts(tmp_path):
    core = make_core(tmp_path, FakeClock(), gpus="1:80G;0=50G")    # another container
    jid = submit(core, gpus=1, gpu_memory_limit_mb=40960)
    settle(core, True)
    job = core.jobs[jid]
    assert job.state.value == "Queued"
    assert job.reason_detail == "waiting: 1 GPUs, 0 free; GPU 0 has 30.0G free, 40G requested"
    small = submit(core, gpus=1, gpu_memory_limit_mb=20480)
    settle(core, True)
    assert core.jobs[small].state.value == "Running"        # 20G fits in the 30G left


def test_an_ignored_holder_frees_its_gpu_but_its_memory_still_counts(tmp_path, sleeper):
    """The reported case: a foreign server holds most of GPU 1. An admin lets jobs use the
    GPU; a job asking more memory than is left waits, naming the numbers, and starts
    when the foreign process ends."""
    holder = sleeper()
    clock = FakeClock(time.time())
    core = make_core(tmp_path, clock, gpus=f"2:80G;1=50G@{holder.pid}%0")
    first = submit(core, gpus=1)
    settle(core, True)
    assert core.jobs[first].gpu_ids == [0]
    big = submit(core, gpus=1, gpu_memory_limit_mb=40960)
    settle(core, True)
    assert core.jobs[big].reason_detail == "waiting: 1 GPUs, 0 free"    # GPU 1 is foreign
    assert core.handle("gpu_process_ignore", {"pid": holder.pid})[0] == 200
    settle(core, True)
    assert core.jobs[big].state.value == "Queued"
    assert core.jobs[big].reason_detail == \
        "waiting: 1 GPUs, 0 free; GPU 1 has 30.0G free, 40G requested"
    assert gpus_of(core)[1]["state"] == "free"
    assert gpus_of(core)[1]["processes"][0]["ignored"] is True
    end(holder)
    clock.t += 11
    core.refresh_gpus()
    settle(core, False)
    assert core.jobs[big].state.value == "Running" and core.jobs[big].gpu_ids == [1]
    # The entry ended with its process.
    assert core.handle("gpu_processes", {})[1]["ignored"] == []


# --- ignoring ------------------------------------------------------------------------------

def test_ignore_is_for_admins_persisted_and_checked(tmp_path, sleeper):
    holder = sleeper()
    clock = FakeClock(time.time())
    spec = f"2:80G;1=1G@{holder.pid}%0"
    core = make_core(tmp_path, clock, gpus=spec)
    alice = Caller(uid=54321, user="alice", via="unix")
    status, body = core.handle("gpu_process_ignore", {"pid": holder.pid}, alice)
    assert status == 403 and body["error"] == \
        "only a gflow admin may ignore a GPU process; alice is not one"
    assert core.handle("gpus", {}, alice)[0] == 200            # reads are for everyone
    assert core.handle("gpu_process_ignore", {"pid": 999999})[0] == 404
    assert core.handle("gpu_process_ignore", {"pid": "x"})[0] == 400
    assert core.handle("gpu_process_unignore", {"pid": holder.pid})[0] == 404
    status, body = core.handle("gpu_process_ignore", {"pid": holder.pid})
    assert status == 200 and body["ignored"]["user"] == ME and body["ignored"]["gpus"] == [1]
    assert core.handle("info", {})[1]["gpus"][1]["available"] is True
    # Persisted: a restarted scheduler still ignores it.
    core.store.close()
    again = make_core(tmp_path, clock, gpus=spec)
    assert [e["pid"] for e in again.handle("gpus", {})[1]["ignored"]] == [holder.pid]
    assert again.handle("gpu_process_unignore", {"pid": holder.pid})[0] == 200
    assert again.handle("info", {})[1]["gpus"][1]["available"] is False


def test_a_jobs_own_process_cannot_be_ignored(tmp_path):
    core = make_core(tmp_path, FakeClock(time.time()), gpus=f"1:80G;0=1G@{os.getpid()}")
    jid = submit(core, gpus=0)
    settle(core, True)
    import psutil
    core.paths.logs_dir.mkdir(parents=True, exist_ok=True)
    me = psutil.Process()
    core.paths.job_pidfile(jid).write_text(json.dumps(
        {"monitor_pid": me.pid, "monitor_start": me.create_time()}))
    core.refresh_gpus()
    status, body = core.handle("gpu_process_ignore", {"pid": os.getpid()})
    assert status == 409 and f"belongs to gflow job {jid}" in body["error"]


def test_ignore_list_file_round_trip(tmp_path):
    path = tmp_path / "gpu_ignored.json"
    ign = IgnoreList.load(path)
    ign.add({"pid": 5, "started_at": 10.0})
    ign.add({"pid": 6, "started_at": None})
    ign.save()
    again = IgnoreList.load(path)
    assert sorted(again.entries) == [5, 6]
    gone = again.expire(lambda pid, started: pid == 5, on_gpu={7})
    assert [e["pid"] for e in gone] == [6] and sorted(again.entries) == [5]
    path.write_text("not json")
    assert IgnoreList.load(path).entries == {}


# --- idle holders ---------------------------------------------------------------------------

def test_idle_tracker_with_a_fake_clock():
    t = IdleTracker(util_percent=5, after_secs=30 * MIN)
    k = (1, 4242, 100.0)
    assert t.observe(0, [(k, True, 0)]) == []
    assert t.observe(29 * MIN, [(k, True, 3)]) == []
    assert t.observe(30 * MIN, [(k, True, 0)]) == [k]
    assert t.flagged(k) and t.idle_secs(k, 31 * MIN) == 31 * MIN
    assert t.observe(40 * MIN, [(k, True, 0)]) == []            # flagged once per spell
    assert t.observe(41 * MIN, [(k, True, 50)]) == [] and not t.flagged(k)
    assert t.observe(42 * MIN, [(k, True, None)]) == []         # unknown is never idle
    assert t.observe(43 * MIN, [(k, False, 0)]) == []           # no memory held
    assert t.idle_secs(k, 44 * MIN) is None


def test_an_idle_holder_is_flagged_after_the_configured_time(tmp_path, sleeper):
    holder = sleeper()
    clock = FakeClock(time.time())
    core = make_core(tmp_path, clock, gpus=f"2:80G;1=642M@{holder.pid}%0",
                     config_text='[gpu]\nidle_after = "10m"\nidle_util_percent = 5\n')
    core.webhooks_on = True
    core.events.clear()
    clock.t += 9 * MIN
    core.refresh_gpus()
    (p,) = gpus_of(core)[1]["processes"]
    assert p["idle_secs"] == pytest.approx(9 * MIN) and p["idle"] is False
    assert not [e for e in core.events if e["event"] == "gpu_idle_held"]
    clock.t += 2 * MIN
    core.refresh_gpus()
    (p,) = gpus_of(core)[1]["processes"]
    assert p["idle"] is True
    assert p["release"] == (f"ask {ME} to end it, or a gflow admin can run: "
                            f"gctl gpu-process ignore {holder.pid}")
    (event,) = [e for e in core.events if e["event"] == "gpu_idle_held"]
    assert event["gpu"]["index"] == 1 and event["gpu"]["pid"] == holder.pid
    assert event["gpu"]["user"] == ME and event["gpu"]["used_mb"] == 642
    assert f"gctl gpu-process ignore {holder.pid}" in event["text"]
    # /metrics and ginfo show it.
    info = core.handle("info", {})[1]
    text = render_metrics({}, info, {}).decode()
    assert (f'gflow_gpu_idle_held_seconds{{gpu="1",job="",pid="{holder.pid}",user="{ME}"}} '
            f"660.0") in text
    assert gpu_view.idle_lines(info) == [
        f"GPU 1: idle 11 min at 0%, holding 0.6 GiB (pid {holder.pid}): ask {ME} to end it, "
        f"or a gflow admin can run: gctl gpu-process ignore {holder.pid}"]
    # Ignored: no longer flagged.
    assert core.handle("gpu_process_ignore", {"pid": holder.pid})[0] == 200
    assert gpus_of(core)[1]["processes"][0]["idle"] is False


def test_the_idle_event_is_a_known_webhook_event(tmp_path):
    cfg = tmp_path / "gflow.toml"
    cfg.write_text('[notifications]\nenabled = true\n[[notifications.webhooks]]\n'
                   'url = "http://127.0.0.1:9/x"\nevents = ["gpu_idle_held"]\n'
                   'filter_users = ["bob"]\n')
    hook = load_config(cfg, env={"HOME": str(tmp_path)}).notifications.webhooks[0]
    from gflow.notify import wants
    assert wants(hook, {"event": "gpu_idle_held", "gpu": {"user": "bob"}})
    assert not wants(hook, {"event": "gpu_idle_held", "gpu": {"user": "carol"}})


def test_gpu_settings(tmp_path):
    cfg = tmp_path / "gflow.toml"
    cfg.write_text('[gpu]\nidle_after = "1h30m"\nidle_util_percent = 2.5\n')
    c = load_config(cfg, env={"HOME": str(tmp_path)})
    assert (c.gpu.idle_after, c.gpu.idle_util_percent) == (5400.0, 2.5)
    assert load_config(None, env={"HOME": str(tmp_path / "none")}).gpu.idle_after == 1800.0
    for bad in ('idle_after = "soon"', "idle_after = 0", "idle_util_percent = 101"):
        cfg.write_text(f"[gpu]\n{bad}\n")
        with pytest.raises(ConfigError, match="gpu.idle_"):
            load_config(cfg, env={"HOME": str(tmp_path)})


# --- clients ---------------------------------------------------------------------------------

def test_ginfo_rows_escape_and_survive_malformed_replies():
    evil = "x\x1b[2J"
    info = {"gpus": [
        {"index": 0, "state": "job", "jobs": [{"id": 7, "user": "alice"}],
         "memory_total_mb": 81920, "memory_used_mb": 30720, "utilization_percent": 97,
         "processes": [{"pid": 9, "job_id": 7, "user": "alice"}]},
        {"index": 1, "state": "foreign", "processes": [
            {"pid": 4242, "user": "bob" + evil, "command": "serve" + evil, "used_mb": "?",
             "age_secs": 2 * 86400, "idle": True, "idle_secs": 3 * 3600,
             "release": "ask bob" + evil}]},
        {"index": 2, "state": "error", "error": "NVML: GPU is lost", "processes": []},
        "junk"]}
    rows = gpu_view.gpu_rows(info)
    text = "\n".join(" | ".join(r) for r in rows) + "\n".join(gpu_view.idle_lines(info))
    assert "\x1b" not in text
    assert rows[1] == ["0", "gflow job 7 of alice", "30.0/80.0 GiB", "97%"]
    assert rows[2][1] == "foreign: bobx\\x1b[2J's `servex\\x1b[2J` pid 4242, 2 days"
    assert rows[3][1] == "error: NVML: GPU is lost"
    assert gpu_view.idle_lines(info)[0].startswith("GPU 1: idle 3 h, holding - (pid 4242)")
    assert not gpu_view.has_insight({"gpus": [{"index": 0, "available": True}]})
    assert render.table(rows)


def test_gjob_show_and_gstats_show_gpu_use():
    from gflow.cli import gjob_show, gstats
    lines = gjob_show.show_lines({"id": 1, "gpu_usage": {"peak_memory_mb": 30720,
                                                         "mean_util_percent": 87.25,
                                                         "samples": 12}}, 0)
    assert "  GPUPeakMemory=30G (on one GPU)" in lines and "  GPUMeanUtil=87.2%" in lines
    table = gstats.render_table({"total_jobs": 1, "jobs_with_gpu_samples": 1,
                                 "avg_gpu_peak_memory_mb": 10240,
                                 "max_gpu_peak_memory_mb": 20480,
                                 "avg_gpu_util_percent": 55.0}, colour=False)
    assert "GPU Memory Peak: 10G avg, 20G max" in table
    assert "GPU Utilisation: 55.0% avg" in table


def test_gctl_gpu_process_commands(monkeypatch, capsys):
    from gflow.cli import gctl

    class Fake:
        def __init__(self):
            self.calls = []

        def call(self, method, path, **_kw):
            self.calls.append((method, path))
            return {"processes": [{"gpu": 1, "pid": 4242, "user": "bob", "command": "vllm",
                                   "used_mb": 51200, "util_percent": 0, "age_secs": 7200,
                                   "idle_secs": 3600, "idle": True}],
                    "ignored": [{"pid": 77, "user": "carol", "command": "jupyter",
                                 "gpus": [0]}]}

        def request(self, method, path, body=None, **_kw):
            self.calls.append((method, path))
            if path.endswith("/999/ignore"):
                return 404, {"error": "process 999 holds no GPU: no GPU reports it now"}
            return 200, {"ignored": {"pid": 4242, "user": "bob", "command": "vllm",
                                     "gpus": [1]}}

    fake = Fake()
    monkeypatch.setattr(gctl, "client_for", lambda args: fake)
    assert gctl.main(["gpu-process", "list"]) == 0
    out = capsys.readouterr().out
    assert "4242" in out and "60 min (flagged)" in out and "carol's `jupyter` pid 77 on GPU 0" in out
    assert gctl.main(["gpu-process", "ignore", "4242"]) == 0
    assert "Ignoring bob's `vllm` pid 4242 on GPU 1" in capsys.readouterr().out
    assert gctl.main(["gpu-process", "ignore", "999"]) == 1
    assert "holds no GPU" in capsys.readouterr().err
    assert gctl.main(["gpu-process", "unignore", "4242"]) == 0
    assert ("DELETE", "/gpu-processes/4242/ignore") in fake.calls


def test_the_http_routes(tmp_path, sleeper):
    from gflow.api.app import create_app
    from test_api_routes import CoreBridge, client_for
    holder = sleeper()
    core = make_core(tmp_path, FakeClock(time.time()), gpus=f"2:80G;1=1G@{holder.pid}%0")
    client = client_for(create_app(CoreBridge(core)))
    body = client.get("/gpus").get_json()
    assert [g["state"] for g in body["gpus"]] == ["free", "foreign"]
    assert (body["idle_util_percent"], body["idle_after_secs"]) == (5.0, 1800.0)
    procs = client.get("/gpu-processes").get_json()["processes"]
    assert [(p["gpu"], p["pid"]) for p in procs] == [(1, holder.pid)]
    assert client.post("/gpu-processes/999999/ignore").status_code == 404
    assert client.post("/gpu-processes/x/ignore").status_code == 400
    assert client.delete(f"/gpu-processes/{holder.pid}/ignore").status_code == 404
    resp = client.post(f"/gpu-processes/{holder.pid}/ignore")
    assert resp.status_code == 200 and resp.get_json()["ignored"]["pid"] == holder.pid
    assert client.get("/info").get_json()["gpus"][1]["available"] is True
    assert client.delete(f"/gpu-processes/{holder.pid}/ignore").status_code == 200
    # Someone who is not an admin may look, not change.
    alice = Caller(uid=54321, user="alice", via="unix").to_wire()
    other = client_for(create_app(CoreBridge(core)), alice)
    assert other.get("/gpus").status_code == 200
    assert other.post(f"/gpu-processes/{holder.pid}/ignore").status_code == 403
