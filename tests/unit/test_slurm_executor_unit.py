"""The Slurm executor (gflow/launcher/slurm/executor.py) driven without Slurm: a fake
runner stands in for sbatch, squeue, scontrol and scancel (answers shaped as Slurm
22.05's, ../shared/spec/slurm.md §4), a fake clock for time, a fake channel collects the
reports sent to the scheduler.

Expected values are written out by hand; nothing is computed with the code under test."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from gflow.config import load_config
from gflow.config_executor import ExecutorConfig
from gflow.launcher.slurm.executor import SlurmDown, SlurmExecutor
from gflow.paths import Paths

INSTANCE = "0123abcdef"
T0 = 1_795_500_000.0
REFUSAL = ("sbatch: error: Batch job submission failed: Requested node configuration is "
           "not available\n")
UP = {"kind": "slurm", "ok": True, "detail": ""}


class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeChannel:
    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)

    def close(self):
        pass


def rec(job_id, state="PENDING", **fields) -> dict:
    """One `squeue --json` job record as Slurm 22.05 writes it (the fields read here)."""
    out = {"job_id": job_id, "array_job_id": 0, "array_task_id": None,
           "array_task_string": "", "array_max_tasks": 0, "job_state": state,
           "state_reason": "None", "state_description": "", "exit_code": 0,
           "derived_exit_code": 0, "dependency": "", "gres_detail": [], "comment": "",
           "name": "job", "user_name": "alice", "submit_time": int(T0) - 10,
           "start_time": int(T0) + 3600, "end_time": 6090471375, "time_limit": None}
    out.update(fields)
    return out


def _tasks(text: str) -> list:
    out = []
    for part in text.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


class FakeSlurm:
    """A tiny Slurm: records every argv; the queue is a list of squeue records."""

    def __init__(self, first_id: int = 100):
        self.calls: list = []
        self.inputs: list = []
        self.up = True
        self.refuse = False
        self.squeue_broken = False
        self.next_id = first_id
        self.queue: list = []
        self.shown: dict = {}           # scontrol show -o job KEY -> line (beyond the queue)

    def __call__(self, argv, *, timeout, input=None, env=None, account=None):
        argv = list(argv)
        self.calls.append(argv)
        if argv == ["scontrol", "ping"]:
            if self.up:
                return _done(0, "Slurmctld(primary) at x is UP\n")
            return _done(1, "Slurmctld(primary) at x is DOWN\n")
        if not self.up:
            raise SlurmDown(f"{argv[0]} did not answer in 15s")
        if argv[0] == "sbatch":
            self.inputs.append(input)
            if self.refuse:
                return _done(1, "", REFUSAL)
            job_id = self.next_id
            self.next_id += 1
            comment = [a for a in argv if a.startswith("--comment=")][0][len("--comment="):]
            array = [a for a in argv if a.startswith("--array=")]
            if array:
                self.queue.append(rec(job_id, array_job_id=job_id,
                                      array_task_string=array[0][len("--array="):],
                                      comment=comment))
            else:
                self.queue.append(rec(job_id, comment=comment))
            return _done(0, f"{job_id}\n")
        if argv == ["squeue", "--json"]:
            if self.squeue_broken:
                return _done(1, "", "squeue: error: slurm_load_jobs: Socket timed out\n")
            return _done(0, json.dumps({"meta": {"Slurm": {"release": "22.05.8"}},
                                        "errors": [], "jobs": self.queue}))
        if argv[:4] == ["scontrol", "show", "-o", "job"]:
            line = self.shown.get(argv[4]) or self._line(argv[4])
            if line is None:
                return _done(1, "", "slurm_load_jobs error: Invalid job id specified\n")
            return _done(0, line + "\n")
        if argv[0] == "scancel" or argv[:2] in (["scontrol", "hold"],
                                                 ["scontrol", "release"]):
            return _done(0, "")
        raise AssertionError(f"unexpected command {argv}")

    def _line(self, key: str):
        for r in self.queue:
            base = (f"JobName=job UserId=alice(1000) JobState={r['job_state']} "
                    f"Reason={r['state_reason']} ExitCode=0:0")
            if r["array_job_id"]:
                tasks = ([r["array_task_id"]] if isinstance(r["array_task_id"], int)
                         else _tasks(r["array_task_string"]))
                for t in tasks:
                    if key == f"{r['array_job_id']}_{t}":
                        return (f"JobId={r['job_id']} ArrayJobId={r['array_job_id']} "
                                f"ArrayTaskId={t} {base}")
            elif key == str(r["job_id"]):
                return f"JobId={r['job_id']} {base}"
        return None

    def record(self, job_id: int) -> dict:
        return [r for r in self.queue if r["job_id"] == job_id][0]

    def of(self, name: str) -> list:
        return [c for c in self.calls if c[0] == name]


def _done(rc, out="", err=""):
    return subprocess.CompletedProcess([], rc, out, err)


@pytest.fixture
def paths(tmp_path):
    return Paths.from_env({"HOME": str(tmp_path)})


@pytest.fixture
def config(tmp_path):
    base = load_config(None, env={"HOME": str(tmp_path)})
    return dataclasses.replace(base, executor=ExecutorConfig(kind="slurm"))


@pytest.fixture
def slurm():
    return FakeSlurm()


@pytest.fixture
def clock():
    return FakeClock()


def build_argv(spec):
    if spec.get("command") == "BROKEN":
        raise KeyError("lr")            # as a sweep parameter the command names but lacks
    return ["/bin/sh", "-c", spec["command"]]


def build_env(spec, base):
    return {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "0"}


@pytest.fixture
def make(paths, config, slurm, clock):
    def make(instance=INSTANCE):
        ex = SlurmExecutor(paths, config, instance=instance, build_argv=build_argv,
                           build_env=build_env, runner=slurm, clock=clock)
        ex.channel = FakeChannel()
        return ex
    return make


def spec(job_id, *, command="python train.py", run_dir="/tmp", gpus=1, attempt=1,
         group_id=None, max_concurrent=None, task_id=None, executor_id=None, **more):
    out = {"id": job_id, "script": None, "command": command, "run_dir": run_dir,
           "gpu_ids": [], "task_id": task_id, "conda_env": None, "env": {},
           "parameters": {}, "memory_limit_mb": None, "run_name": None, "run_as_user": None,
           "umask": None, "attempt": attempt, "gpus": gpus, "time_limit": None,
           "slurm_deps": {"conds": [], "any": False}, "group_id": group_id,
           "max_concurrent": max_concurrent}
    if executor_id is not None:
        out["executor_id"] = executor_id
    out.update(more)
    return out


def step(ex, *msgs):
    for msg in msgs:
        ex.on_message(msg)
    ex.run_once()


def sent(ex, kind=None, job_id=None):
    out = ex.channel.sent
    if kind is not None:
        out = [m for m in out if m[0] == kind]
    if job_id is not None:
        out = [m for m in out if len(m) > 1 and m[1] == job_id]
    return out


def about(ex, job_id):
    """Every report about one gflow job (not health, not waiting reasons)."""
    return [m for m in ex.channel.sent
            if m[0] in ("submitted", "started", "exited", "refused") and m[1] == job_id]


def submitted_one(make, slurm, clock, job_id=1, **kw):
    ex = make()
    step(ex, ("submit", [spec(job_id, **kw)]))
    assert sent(ex, "submitted") == [("submitted", job_id, "100")]
    ex.channel.sent.clear()
    return ex


# --- handing a job over -----------------------------------------------------------------

def test_submit_is_one_sbatch_and_a_submitted_report(make, slurm, paths):
    ex = make()
    step(ex, ("submit", [spec(1, gpus=2)]))
    sbatches = slurm.of("sbatch")
    assert len(sbatches) == 1
    argv = sbatches[0]
    assert "--parsable" in argv
    assert f"--comment=gflow:{INSTANCE}:1@1" in argv
    assert "--kill-on-invalid-dep=yes" in argv
    assert "--gres=gpu:2" in argv
    assert "--chdir=/tmp" in argv
    assert f"--output={paths.logs_dir}/1.log" in argv
    assert not any(a.startswith("--dependency") or a.startswith("--array") for a in argv)
    assert sent(ex, "submitted") == [("submitted", 1, "100")]
    assert sent(ex, "refused") == [] and sent(ex, "exited") == []
    assert sent(ex, "executor") == [("executor", UP)]
    # The command is the batch script on stdin; the log exists before Slurm opens it.
    assert "export GFLOW_JOB_ID=1 GFLOW_ARRAY_TASK_ID=0" in slurm.inputs[0]
    assert "exec /bin/sh -c 'python train.py'" in slurm.inputs[0]
    assert (paths.logs_dir / "1.log").exists()


def test_sbatch_comes_after_the_first_squeue_listing(make, slurm):
    ex = make()
    step(ex, ("submit", [spec(1)]))
    names = [" ".join(c[:2]) for c in slurm.calls]
    assert names.index("squeue --json") < names.index("sbatch --parsable")


def test_dependencies_reach_sbatch(make, slurm):
    ex = make()
    step(ex, ("submit", [spec(2, slurm_deps={"conds": [["afterok", "77"],
                                                       ["afterany", "78_1"]],
                                             "any": True})]))
    assert "--dependency=afterok:77?afterany:78_1" in slurm.of("sbatch")[0]


def test_nothing_is_submitted_before_the_first_successful_listing(make, slurm, clock):
    slurm.squeue_broken = True
    ex = make()
    step(ex, ("submit", [spec(1)]))
    step(ex)
    assert slurm.of("sbatch") == []
    assert sent(ex, "submitted") == []
    health = sent(ex, "executor")
    assert health[-1][1]["ok"] is False
    assert health[-1][1]["detail"].startswith("cannot read Slurm's queue: squeue: ")
    slurm.squeue_broken = False
    clock.t += 0.25
    step(ex)
    assert len(slurm.of("sbatch")) == 1
    assert sent(ex, "submitted") == [("submitted", 1, "100")]
    assert sent(ex, "executor")[-1] == ("executor", UP)


def test_a_repeated_submit_of_a_handed_over_job_repeats_its_key(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    clock.t += 0.25
    step(ex, ("submit", [spec(1)]))
    assert len(slurm.of("sbatch")) == 1
    assert sent(ex, "submitted") == [("submitted", 1, "100")]


# --- a restarted gflowd: found by its comment, never submitted twice ----------------------

def test_restart_finds_the_job_by_its_comment_and_does_not_submit_it_again(
        make, slurm, clock):
    first = make()
    step(first, ("submit", [spec(7)]))
    assert len(slurm.of("sbatch")) == 1
    assert slurm.record(100)["comment"] == f"gflow:{INSTANCE}:7@1"
    # gflowd died before it journalled "100"; the new one is asked to submit job 7 again.
    clock.t += 30
    second = make()
    step(second, ("submit", [spec(7)]))
    assert len(slurm.of("sbatch")) == 1
    assert sent(second, "submitted") == [("submitted", 7, "100")]


def test_restart_with_a_listing_from_before(make, slurm, clock):
    slurm.queue = [rec(555, state="RUNNING", comment=f"gflow:{INSTANCE}:7@1",
                       start_time=int(T0) - 60, gres_detail=["gpu:1(IDX:1)"])]
    ex = make()
    step(ex, ("adopt", [spec(7)]))                   # handed over, never acknowledged
    assert slurm.of("sbatch") == []
    assert sent(ex, "submitted") == [("submitted", 7, "555")]
    assert sent(ex, "started") == [("started", 7, {"key": "555", "gpu_ids": [1],
                                                   "started_at": T0 - 60})]


def test_restart_submits_what_another_instance_or_attempt_submitted(make, slurm):
    slurm.queue = [rec(555, comment="gflow:ffffffffff:7@1"),      # another gflowd
                   rec(556, comment=f"gflow:{INSTANCE}:8@1")]      # an earlier attempt
    ex = make()
    step(ex, ("submit", [spec(7), spec(8, attempt=2)]))
    assert [a for c in slurm.of("sbatch") for a in c if a.startswith("--comment=")] == [
        f"--comment=gflow:{INSTANCE}:7@1", f"--comment=gflow:{INSTANCE}:8@2"]
    assert sent(ex, "submitted") == [("submitted", 7, "100"), ("submitted", 8, "101")]


# --- arrays -------------------------------------------------------------------------------

def test_array_group_is_one_sbatch_with_a_throttle(make, slurm):
    ex = make()
    specs = [spec(10 + i, task_id=i, group_id="g1", max_concurrent=2) for i in range(3)]
    step(ex, ("submit", specs))
    sbatches = slurm.of("sbatch")
    assert len(sbatches) == 1
    assert "--array=0-2%2" in sbatches[0]
    assert f"--comment=gflow:{INSTANCE}:10@1,11@1,12@1" in sbatches[0]
    assert "--output=/dev/null" in sbatches[0]
    assert sent(ex, "submitted") == [("submitted", 10, "100_0"), ("submitted", 11, "100_1"),
                                     ("submitted", 12, "100_2")]
    assert 'case "${SLURM_ARRAY_TASK_ID:-}" in' in slurm.inputs[0]


def test_array_found_again_after_a_restart(make, slurm, clock):
    specs = [spec(10 + i, task_id=i, group_id="g1", max_concurrent=2) for i in range(3)]
    step(make(), ("submit", specs))
    # Task 0 runs under its own job id (101), tasks 1-2 wait in the remainder record.
    slurm.queue = [rec(101, state="RUNNING", array_job_id=100, array_task_id=0,
                       comment=f"gflow:{INSTANCE}:10@1,11@1,12@1", start_time=int(T0),
                       gres_detail=["gpu:1(IDX:0)"]),
                   rec(100, array_job_id=100, array_task_string="1-2%2",
                       state_reason="JobArrayTaskLimit",
                       comment=f"gflow:{INSTANCE}:10@1,11@1,12@1")]
    clock.t += 30
    again = make()
    step(again, ("submit", specs))
    assert len(slurm.of("sbatch")) == 1
    assert sent(again, "submitted") == [("submitted", 10, "100_0"),
                                        ("submitted", 11, "100_1"),
                                        ("submitted", 12, "100_2")]


def test_group_without_a_limit_is_separate_jobs(make, slurm):
    ex = make()
    step(ex, ("submit", [spec(10 + i, task_id=i, group_id="g1") for i in range(3)]))
    assert len(slurm.of("sbatch")) == 3
    assert sent(ex, "submitted") == [("submitted", 10, "100"), ("submitted", 11, "101"),
                                     ("submitted", 12, "102")]


def test_an_unbuildable_task_does_not_strand_its_siblings(make, slurm, clock):
    ex = make()
    specs = [spec(10, task_id=0, group_id="g1", max_concurrent=2),
             spec(11, task_id=1, group_id="g1", max_concurrent=2, command="BROKEN"),
             spec(12, task_id=2, group_id="g1", max_concurrent=2)]
    step(ex, ("submit", specs))
    clock.t += 5
    step(ex)
    assert [m[:2] for m in about(ex, 11)] == [("refused", 11)]
    assert about(ex, 10) != [] and about(ex, 12) != []


# --- following Slurm --------------------------------------------------------------------

def test_running_record_reports_started_once_with_its_gpus(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    r = slurm.record(100)
    r.update(job_state="RUNNING", start_time=int(T0) + 2, gres_detail=["gpu:2(IDX:0-1)"],
             end_time=int(T0) + 2 + 365 * 86400)
    clock.t += 3
    step(ex)
    clock.t += 0.25
    step(ex)
    clock.t += 0.25
    step(ex)
    assert about(ex, 1) == [("started", 1, {"key": "100", "gpu_ids": [0, 1],
                                            "started_at": T0 + 2})]


def test_pending_reason_is_sent_when_it_changes(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    slurm.record(100)["state_reason"] = "Resources"
    clock.t += 0.25
    step(ex)
    clock.t += 0.25
    step(ex)
    assert sent(ex, "slurm_waiting") == [("slurm_waiting", {1: "Resources"})]
    assert about(ex, 1) == []


@pytest.mark.parametrize("state, reason, raw, info", [
    ("COMPLETED", "None", 0, {"exit_code": 0, "finished_at": T0 + 9}),
    ("FAILED", "NonZeroExitCode", 768, {"exit_code": 3, "finished_at": T0 + 9}),
    ("FAILED", "NonZeroExitCode", 32512, {"exit_code": 127, "finished_at": T0 + 9}),
    ("FAILED", "JobLaunchFailure", 9, {"exit_code": None, "finished_at": T0 + 9,
                                       "signal": 9,
                                       "detail": "Slurm: failed (JobLaunchFailure)"}),
    ("TIMEOUT", "TimeLimit", 0, {"exit_code": None, "finished_at": T0 + 9,
                                 "state": "Timeout",
                                 "detail": "Slurm: time limit reached (TimeLimit)"}),
    ("OUT_OF_MEMORY", "OutOfMemory", 0, {"exit_code": None, "finished_at": T0 + 9,
                                         "detail": "Slurm: out of memory (OutOfMemory)"}),
])
def test_final_record_reports_exited_with_the_decoded_code(make, slurm, clock, state, reason,
                                                           raw, info):
    ex = submitted_one(make, slurm, clock)
    slurm.record(100).update(job_state=state, state_reason=reason, exit_code=raw,
                             start_time=int(T0) + 1, end_time=int(T0) + 9)
    clock.t += 10
    step(ex)
    clock.t += 0.25
    step(ex)
    assert about(ex, 1) == [
        ("started", 1, {"key": "100", "gpu_ids": [], "started_at": T0 + 1}),
        ("exited", 1, dict(info, key="100"))]   # which Slurm job ended


def test_cancelled_in_slurm_while_pending(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    slurm.record(100).update(job_state="CANCELLED", state_reason="Dependency", exit_code=0,
                             start_time=0, end_time=int(T0) + 4)
    clock.t += 5
    step(ex)
    assert about(ex, 1) == [("exited", 1, {"exit_code": None, "finished_at": T0 + 4,
                                           "state": "Cancelled",
                                           "detail": "Slurm: cancelled (Dependency)",
                                           "key": "100"})]


def test_record_slurm_no_longer_knows_is_reported_lost(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    slurm.queue.clear()                       # purged (MinJobAge) before gflow saw the end
    clock.t += 5
    step(ex)
    assert ["scontrol", "show", "-o", "job", "100"] in slurm.calls
    assert about(ex, 1) == [("exited", 1, {
        "exit_code": None, "finished_at": T0 + 5,
        "detail": "Slurm no longer knows job 100 (purged before gflow saw it end)",
        "key": "100"})]
    clock.t += 5
    step(ex)
    assert len(sent(ex, "exited")) == 1


def test_record_missing_from_squeue_but_known_to_scontrol(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    slurm.queue.clear()
    slurm.shown["100"] = ("JobId=100 JobName=my job UserId=alice(1000) JobState=FAILED "
                          "Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 "
                          "RunTime=00:00:05")
    clock.t += 5
    step(ex)
    assert about(ex, 1) == [("exited", 1, {"exit_code": 3, "finished_at": None,
                                           "key": "100"})]


def test_forget_drops_a_reported_job(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    slurm.record(100).update(job_state="COMPLETED", start_time=int(T0) + 1,
                             end_time=int(T0) + 2)
    clock.t += 3
    step(ex)
    step(ex, ("forget", 1))
    assert 1 not in ex.jobs


# --- the controller down ----------------------------------------------------------------

def test_controller_down_keeps_the_submit_until_it_answers(make, slurm, clock):
    ex = make()
    step(ex)                                         # listed once, controller up
    assert sent(ex, "executor") == [("executor", UP)]
    slurm.up = False
    clock.t += 3
    step(ex, ("submit", [spec(1)]))
    clock.t += 3
    step(ex)
    assert slurm.of("sbatch") == []
    assert sent(ex, "submitted") == []
    down = sent(ex, "executor")[1:]
    assert len(down) == 1
    assert down[0][1]["kind"] == "slurm" and down[0][1]["ok"] is False
    assert down[0][1]["detail"].startswith(
        "the Slurm controller does not answer (Slurmctld(primary) at x is DOWN)")
    ex.channel.sent.clear()
    slurm.up = True
    clock.t += 3
    step(ex)
    assert len(slurm.of("sbatch")) == 1
    assert ex.channel.sent[:1] == [("executor", UP)]
    assert sent(ex, "submitted") == [("submitted", 1, "100")]


def test_controller_down_from_the_start(make, slurm, clock):
    slurm.up = False
    ex = make()
    step(ex, ("submit", [spec(1)]))
    assert [c[:2] for c in slurm.calls] == [["scontrol", "ping"]]
    assert sent(ex, "executor")[0][1]["ok"] is False
    slurm.up = True
    clock.t += 3
    step(ex)
    assert len(slurm.of("sbatch")) == 1
    assert sent(ex, "executor")[-1] == ("executor", UP)
    assert sent(ex, "submitted") == [("submitted", 1, "100")]


def test_cancel_of_a_job_waiting_for_the_controller_never_submits_it(make, slurm, clock):
    ex = make()
    step(ex)
    slurm.up = False
    clock.t += 3
    step(ex, ("submit", [spec(1), spec(2)]))
    step(ex, ("cancel", 1))
    slurm.up = True
    clock.t += 3
    step(ex)
    assert [a for c in slurm.of("sbatch") for a in c if a.startswith("--comment=")] == [
        f"--comment=gflow:{INSTANCE}:2@1"]
    assert about(ex, 1) == []
    assert sent(ex, "submitted") == [("submitted", 2, "100")]


@pytest.mark.parametrize("again", ["submit", "adopt"])
def test_a_job_ordered_twice_while_the_controller_is_down_is_submitted_once(
        make, slurm, clock, again):
    ex = make()
    step(ex)
    slurm.up = False
    clock.t += 3
    step(ex, ("submit", [spec(1)]))
    clock.t += 3
    step(ex, (again, [spec(1)]))     # the scheduler reloaded / reconnected meanwhile
    slurm.up = True
    clock.t += 3
    step(ex)
    assert len(slurm.of("sbatch")) == 1


# --- refusals ---------------------------------------------------------------------------

def test_sbatch_refusal_with_the_controller_up_is_a_refused_report(make, slurm, clock):
    slurm.refuse = True
    ex = make()
    step(ex, ("submit", [spec(1, gpus=3)]))
    assert sent(ex, "refused") == [("refused", 1, (
        "Slurm refused it: sbatch: error: Batch job submission failed: Requested node "
        "configuration is not available"))]
    assert "Requested node configuration" in sent(ex, "refused")[0][2]
    assert sent(ex, "submitted") == []
    assert all(m[1]["ok"] for m in sent(ex, "executor"))
    clock.t += 5
    step(ex)
    assert len(slurm.of("sbatch")) == 1           # not asked again by itself


# --- stopping, holding, cancelling ------------------------------------------------------

def test_signal_then_scancel_after_the_grace(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    slurm.record(100).update(job_state="RUNNING", start_time=int(T0) + 1)
    clock.t += 2
    step(ex)
    step(ex, ("signal", 1, "SIGTERM", 10))
    assert slurm.of("scancel") == [["scancel", "--full", "--signal=TERM", "100"]]
    clock.t += 5
    step(ex)
    assert slurm.of("scancel") == [["scancel", "--full", "--signal=TERM", "100"]]
    clock.t += 6                                    # past the grace, still RUNNING
    step(ex)
    assert slurm.of("scancel") == [["scancel", "--full", "--signal=TERM", "100"],
                                   ["scancel", "100"]]
    clock.t += 0.25
    step(ex)
    assert len(slurm.of("scancel")) == 2
    # Its end, a cancel gflow ordered, is reported without Slurm's "Cancelled".
    slurm.record(100).update(job_state="CANCELLED", exit_code=15, end_time=int(T0) + 14)
    clock.t += 1
    step(ex)
    assert sent(ex, "exited") == [("exited", 1, {"exit_code": None, "finished_at": T0 + 14,
                                                 "signal": 15, "state": None,
                                                 "detail": None, "key": "100"})]


def test_forward_and_tree_signal(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    step(ex, ("forward", 1, "SIGINT"), ("tree_signal", 1, "SIGSTOP"),
         ("tree_signal", 1, "SIGCONT"))
    assert slurm.of("scancel") == [["scancel", "--full", "--signal=INT", "100"],
                                   ["scancel", "--full", "--signal=STOP", "100"],
                                   ["scancel", "--full", "--signal=CONT", "100"]]


def test_hold_and_release(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    step(ex, ("hold", 1))
    assert [c for c in slurm.calls if c[:2] == ["scontrol", "hold"]] == [
        ["scontrol", "hold", "100"]]
    step(ex, ("release", 1))
    assert [c for c in slurm.calls if c[:2] == ["scontrol", "release"]] == [
        ["scontrol", "release", "100"]]


def test_cancel_scancels_and_reports_nothing_later(make, slurm, clock):
    ex = submitted_one(make, slurm, clock)
    step(ex, ("cancel", 1))
    assert slurm.of("scancel") == [["scancel", "100"]]
    slurm.record(100).update(job_state="CANCELLED", end_time=int(T0) + 1)
    for _ in range(3):
        clock.t += 3
        step(ex)
    assert about(ex, 1) == []
    assert 1 not in ex.jobs


def test_adopt_follows_a_journalled_key(make, slurm, clock):
    slurm.queue = [rec(300, state="RUNNING", comment=f"gflow:{INSTANCE}:4@1",
                       start_time=int(T0) - 5, gres_detail=["gpu:1(IDX:1)"])]
    ex = make()
    step(ex, ("adopt", [spec(4, executor_id="300")]))
    assert slurm.of("sbatch") == []
    assert about(ex, 4) == [("started", 4, {"key": "300", "gpu_ids": [1],
                                            "started_at": T0 - 5})]
