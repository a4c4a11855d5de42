"""Reading Slurm's answers (gflow/launcher/slurm/parse.py), from documents shaped like the
real ones (docs: /work/shared/spec/slurm.md, sections 4.2-4.6 and pitfall 18).

Every expected value below is written out by hand from the documented shapes; nothing
is computed with the code under test."""

from __future__ import annotations

import pytest

from gflow.launcher.slurm import parse
from gflow.launcher.slurm.parse import SlurmJob

# --- Slurm 22.05.8 `squeue --json` ------------------------------------------------------

NOW = 1764000000          # a submit time; every other time is an offset from it


def rec_2205(job_id, state, **over):
    """One 22.05 job record with the fields squeue really prints (section 4.2)."""
    rec = {
        "account": "", "accrue_time": NOW, "admin_comment": "",
        "array_job_id": 0, "array_task_id": None, "array_max_tasks": 0,
        "array_task_string": "", "association_id": 0, "batch_features": "",
        "batch_flag": True, "batch_host": "localhost", "flags": [],
        "burst_buffer": "", "burst_buffer_state": "", "cluster": "ci",
        "cluster_features": "", "command": "", "comment": "",
        "contiguous": False, "core_spec": None, "thread_spec": None,
        "cores_per_socket": None, "billable_tres": 1.0, "cpus_per_task": None,
        "cpu_frequency_minimum": None, "cpu_frequency_maximum": None,
        "cpu_frequency_governor": None, "cpus_per_tres": "", "deadline": 0,
        "delay_boot": 0, "dependency": "", "derived_exit_code": 0,
        "eligible_time": NOW, "end_time": NOW + 31536000, "excluded_nodes": "",
        "exit_code": 0, "features": "", "federation_origin": "",
        "federation_siblings_active": "", "federation_siblings_viable": "",
        "gres_detail": [], "group_id": 1000, "job_id": job_id,
        "job_resources": {}, "job_state": state, "last_sched_evaluation": NOW,
        "licenses": "", "max_cpus": 0, "max_nodes": 0, "mcs_label": "",
        "memory_per_tres": "", "name": "wrap", "nodes": "localhost",
        "nice": None, "tasks_per_core": None, "tasks_per_node": 0,
        "tasks_per_socket": None, "tasks_per_board": 0, "cpus": 1,
        "node_count": 1, "tasks": 1, "het_job_id": 0, "het_job_id_set": "",
        "het_job_offset": 0, "partition": "debug", "memory_per_node": None,
        "memory_per_cpu": 100, "minimum_cpus_per_node": 1,
        "minimum_tmp_disk_per_node": 0, "preempt_time": 0, "pre_sus_time": 0,
        "priority": 4294901759, "profile": None, "qos": "", "reboot": False,
        "required_nodes": "", "requeue": True, "resize_time": 0, "restart_cnt": 0,
        "resv_name": "", "shared": None, "show_flags": ["SHOW_ALL", "SHOW_DETAIL"],
        "sockets_per_board": 0, "sockets_per_node": None, "start_time": NOW + 1,
        "state_description": "", "state_reason": "None", "standard_error": "",
        "standard_input": "/dev/null", "standard_output": "", "submit_time": NOW,
        "suspend_time": 0, "system_comment": "", "time_limit": None,
        "time_minimum": 0, "threads_per_core": None, "tres_bind": "", "tres_freq": "",
        "tres_per_job": "", "tres_per_node": "", "tres_per_socket": "",
        "tres_per_task": "", "tres_req_str": "cpu=1,mem=100M,node=1,billing=1",
        "tres_alloc_str": "cpu=1,mem=100M,node=1,billing=1", "user_id": 1000,
        "user_name": "alice", "wckey": "", "current_working_directory": "/home/alice",
    }
    rec.update(over)
    return rec


# An array 120 (`--array=0-6%2`, no GPUs) submitted just before the plain job 123: tasks 0
# and 1 started first (ids 121, 122), then 2, 3 and 4 (ids 124, 125, 126); tasks 5 and 6
# are still pending on the remainder record, which keeps job_id 120 (section 4.6).
ARRAY_2205 = [
    rec_2205(121, "COMPLETED", array_job_id=120, array_task_id=0, array_max_tasks=2,
             name="sweep", comment="gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1",
             start_time=NOW + 1, end_time=NOW + 11, exit_code=0),
    rec_2205(122, "FAILED", array_job_id=120, array_task_id=1, array_max_tasks=2,
             name="sweep", comment="gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1",
             state_reason="NonZeroExitCode", start_time=NOW + 1, end_time=NOW + 12,
             exit_code=768),
    rec_2205(124, "CANCELLED", array_job_id=120, array_task_id=2, array_max_tasks=2,
             name="sweep", comment="gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1",
             start_time=NOW + 12, end_time=NOW + 20, exit_code=15),
    rec_2205(125, "RUNNING", array_job_id=120, array_task_id=3, array_max_tasks=2,
             name="sweep", comment="gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1",
             start_time=NOW + 20, end_time=NOW + 20 + 31536000),
    rec_2205(126, "RUNNING", array_job_id=120, array_task_id=4, array_max_tasks=2,
             name="sweep", comment="gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1",
             start_time=NOW + 21, end_time=NOW + 21 + 31536000),
    rec_2205(120, "PENDING", array_job_id=120, array_task_id=None, array_max_tasks=2,
             array_task_string="5-6%2", name="sweep",
             comment="gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1",
             state_reason="JobArrayTaskLimit", start_time=NOW + 600,
             end_time=6090471375, exit_code=0),
]

PLAIN_2205 = [
    # running on both GPUs; no time limit, so end_time is start + 1 year
    rec_2205(123, "RUNNING", name="train", comment="gflow:ci:7@1",
             tres_per_node="gres:gpu:2", gres_detail=["gpu:2(IDX:0-1)"],
             start_time=NOW + 5, end_time=NOW + 5 + 31536000),
    rec_2205(127, "FAILED", state_reason="NonZeroExitCode", exit_code=32512,
             comment="gflow:ci:8@1", start_time=NOW + 6, end_time=NOW + 7),
    rec_2205(128, "FAILED", state_reason="JobLaunchFailure", exit_code=9,
             comment="gflow:ci:9@1", start_time=NOW + 6, end_time=NOW + 8),
    rec_2205(129, "TIMEOUT", state_reason="TimeLimit", exit_code=15, time_limit=1,
             comment="gflow:ci:10@1", start_time=NOW + 6, end_time=NOW + 69),
    # cancelled while it waited for its --begin: the last pending reason is kept
    rec_2205(130, "CANCELLED", state_reason="BeginTime", exit_code=0,
             comment="gflow:ci:11@1", start_time=0, end_time=NOW + 9),
    rec_2205(131, "NODE_FAIL", state_reason="NodeDown", exit_code=0,
             comment="gflow:ci:12@1", start_time=NOW + 6, end_time=NOW + 40),
    # not submitted by gflow at all
    rec_2205(132, "PENDING", state_reason="Resources", name="someone else's",
             comment="nightly backup", start_time=NOW + 3600, end_time=6090471375),
]

DOC_2205 = {
    "meta": {"plugin": {"type": "openapi/v0.0.38", "name": "Slurm OpenAPI v0.0.38"},
             "Slurm": {"version": {"major": 22, "micro": 8, "minor": 5},
                       "release": "22.05.8"}},
    "errors": [],
    "jobs": ARRAY_2205 + PLAIN_2205,
}


@pytest.fixture(scope="module")
def jobs_2205():
    return parse.squeue_jobs(DOC_2205)


def test_squeue_2205_keys_plain_jobs_and_array_tasks(jobs_2205):
    assert sorted(jobs_2205) == sorted([
        "120_0", "120_1", "120_2", "120_3", "120_4", "120_5", "120_6",
        "123", "127", "128", "129", "130", "131", "132"])
    # no key for the array job id itself, nor for the tasks' own job ids
    for absent in ("120", "121", "122", "124", "125", "126"):
        assert absent not in jobs_2205


def test_squeue_2205_running_job_with_gpus(jobs_2205):
    assert jobs_2205["123"] == SlurmJob(
        key="123", job_id=123, state="RUNNING", reason="None", exit_code=0, signal=None,
        gpu_ids=[0, 1], comment="gflow:ci:7@1", start_time=1764000005.0,
        end_time=1795536005.0)


def test_squeue_2205_started_array_tasks_have_their_own_job_ids(jobs_2205):
    assert jobs_2205["120_0"] == SlurmJob(
        key="120_0", job_id=121, state="COMPLETED", reason="None", exit_code=0,
        signal=None, gpu_ids=[], comment="gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1",
        start_time=1764000001.0, end_time=1764000011.0)
    assert jobs_2205["120_1"].job_id == 122
    assert (jobs_2205["120_1"].state, jobs_2205["120_1"].exit_code) == ("FAILED", 3)
    assert jobs_2205["120_1"].reason == "NonZeroExitCode"
    assert (jobs_2205["120_2"].job_id, jobs_2205["120_2"].state) == (124, "CANCELLED")
    assert (jobs_2205["120_2"].exit_code, jobs_2205["120_2"].signal) == (None, 15)
    assert (jobs_2205["120_3"].job_id, jobs_2205["120_3"].state) == (125, "RUNNING")
    assert (jobs_2205["120_4"].job_id, jobs_2205["120_4"].state) == (126, "RUNNING")
    assert jobs_2205["120_4"].key == "120_4"


def test_squeue_2205_pending_remainder_gives_one_entry_per_task(jobs_2205):
    for task in (5, 6):
        job = jobs_2205[f"120_{task}"]
        assert job.key == f"120_{task}"
        assert job.job_id == 120
        assert job.state == "PENDING"
        assert job.reason == "JobArrayTaskLimit"
        assert job.comment == "gflow:ci:20@1,21@1,22@1,23@1,24@1,25@1,26@1"
        assert job.gpu_ids == []


def test_squeue_2205_exit_codes_and_signals(jobs_2205):
    got = {k: (jobs_2205[k].state, jobs_2205[k].exit_code, jobs_2205[k].signal)
           for k in ("127", "128", "129", "130", "131")}
    assert got == {
        "127": ("FAILED", 127, None),        # command not found: 32512
        "128": ("FAILED", None, 9),          # kill -9 $$
        "129": ("TIMEOUT", None, 15),
        "130": ("CANCELLED", 0, None),
        "131": ("NODE_FAIL", 0, None),
    }


def test_squeue_2205_zero_start_time_is_none_and_foreign_comment_kept(jobs_2205):
    assert jobs_2205["130"].start_time is None
    assert jobs_2205["130"].end_time == 1764000009.0
    assert jobs_2205["132"].comment == "nightly backup"
    assert jobs_2205["132"].reason == "Resources"


def test_squeue_2205_array_not_started_at_all():
    # right after sbatch --array=0-2%2: one record, job_id == array id, no task started
    doc = {"meta": {}, "errors": [], "jobs": [
        rec_2205(140, "PENDING", array_job_id=140, array_task_id=None,
                 array_task_string="0-2%2", array_max_tasks=2,
                 state_reason="None", comment="gflow:ci:1@1,2@1,3@1")]}
    jobs = parse.squeue_jobs(doc)
    assert sorted(jobs) == ["140_0", "140_1", "140_2"]
    assert {j.job_id for j in jobs.values()} == {140}


def test_squeue_2205_last_task_ends_up_with_the_array_id():
    # the last task to run keeps job_id == array id, with its task id set
    doc = {"jobs": [rec_2205(120, "RUNNING", array_job_id=120, array_task_id=6,
                             array_task_string="")]}
    jobs = parse.squeue_jobs(doc)
    assert list(jobs) == ["120_6"]
    assert jobs["120_6"].job_id == 120


def test_squeue_ignores_junk():
    assert parse.squeue_jobs({}) == {}
    assert parse.squeue_jobs({"jobs": []}) == {}
    assert parse.squeue_jobs(None) == {}
    assert parse.squeue_jobs([]) == {}
    assert parse.squeue_jobs({"jobs": ["x", 5, {"job_id": "abc"}, {"name": "no id"}]}) == {}


# --- Slurm 23.02+ shapes (pitfall 18) ---------------------------------------------------

def num(n):
    return {"set": True, "infinite": False, "number": n}


UNSET = {"set": False, "infinite": False, "number": 0}


def exit_2302(status, code=None, sig=None, name=""):
    return {"status": status,
            "return_code": num(code) if code is not None else UNSET,
            "signal": {"id": num(sig) if sig is not None else UNSET, "name": name}}


def rec_2302(job_id, state, **over):
    rec = {
        "account": "", "accrue_time": num(NOW), "array_job_id": num(0),
        "array_task_id": UNSET, "array_max_tasks": num(0), "array_task_string": "",
        "batch_host": "node1", "comment": "", "cpus": num(1),
        "current_working_directory": "/home/bob", "dependency": "",
        "derived_exit_code": exit_2302(["SUCCESS"], 0),
        "eligible_time": num(NOW), "end_time": num(0),
        "exit_code": exit_2302(["SUCCESS"], 0), "gres_detail": [],
        "job_id": job_id, "job_state": state, "name": "wrap", "nodes": "node1",
        "partition": "gpu", "priority": num(1), "start_time": num(0),
        "state_description": "", "state_reason": "None", "submit_time": num(NOW),
        "time_limit": {"set": False, "infinite": True, "number": 0},
        "user_name": "bob",
    }
    rec.update(over)
    return rec


DOC_2302 = {
    "meta": {"plugin": {"type": "openapi/slurmctld", "name": "Slurm OpenAPI slurmctld",
                        "data_parser": "data_parser/v0.0.39"},
             "slurm": {"version": {"major": 23, "micro": 4, "minor": 2},
                       "release": "23.02.4"}},
    "errors": [], "warnings": [],
    "jobs": [
        rec_2302(200, ["RUNNING"], gres_detail=["gpu:a100:1(IDX:3)"],
                 comment="gflow:lab:40@1", start_time=num(NOW + 2)),
        rec_2302(201, ["FAILED"], state_reason="NonZeroExitCode",
                 exit_code=exit_2302(["ERROR"], 3), comment="gflow:lab:41@1",
                 start_time=num(NOW + 2), end_time=num(NOW + 30)),
        rec_2302(202, ["FAILED"], state_reason="JobLaunchFailure",
                 exit_code=exit_2302(["SIGNALED"], sig=9, name="KILL"),
                 start_time=num(NOW + 2), end_time=num(NOW + 31)),
        rec_2302(203, ["PENDING", "REQUEUED"], state_reason="BeginTime"),
        rec_2302(211, ["RUNNING"], array_job_id=num(210), array_task_id=num(0),
                 array_max_tasks=num(2), start_time=num(NOW + 3)),
        rec_2302(212, ["COMPLETED"], array_job_id=num(210), array_task_id=num(1),
                 array_max_tasks=num(2), start_time=num(NOW + 3), end_time=num(NOW + 9)),
        rec_2302(213, ["RUNNING"], array_job_id=num(210), array_task_id=num(2),
                 array_max_tasks=num(2), start_time=num(NOW + 9)),
        rec_2302(num(210), ["PENDING"], array_job_id=num(210), array_task_id=UNSET,
                 array_task_string="3-6%2", array_max_tasks=num(2),
                 state_reason="JobArrayTaskLimit"),
    ],
}


@pytest.fixture(scope="module")
def jobs_2302():
    return parse.squeue_jobs(DOC_2302)


def test_squeue_2302_keys(jobs_2302):
    assert sorted(jobs_2302) == sorted([
        "200", "201", "202", "203",
        "210_0", "210_1", "210_2", "210_3", "210_4", "210_5", "210_6"])


def test_squeue_2302_state_lists_and_wrapped_numbers(jobs_2302):
    assert jobs_2302["200"] == SlurmJob(
        key="200", job_id=200, state="RUNNING", reason="None", exit_code=0, signal=None,
        gpu_ids=[3], comment="gflow:lab:40@1", start_time=1764000002.0, end_time=None)
    assert jobs_2302["203"].state == "PENDING"          # flags after the base state
    assert jobs_2302["203"].reason == "BeginTime"


def test_squeue_2302_exit_objects(jobs_2302):
    assert (jobs_2302["201"].exit_code, jobs_2302["201"].signal) == (3, None)
    assert jobs_2302["201"].end_time == 1764000030.0
    assert (jobs_2302["202"].exit_code, jobs_2302["202"].signal) == (None, 9)


def test_squeue_2302_array_with_pending_remainder(jobs_2302):
    assert [jobs_2302[f"210_{t}"].job_id for t in range(7)] == [
        211, 212, 213, 210, 210, 210, 210]
    assert [jobs_2302[f"210_{t}"].state for t in range(7)] == [
        "RUNNING", "COMPLETED", "RUNNING", "PENDING", "PENDING", "PENDING", "PENDING"]
    assert jobs_2302["210_5"].reason == "JobArrayTaskLimit"


# --- decode_exit, unwrap ----------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (0, (0, None)),
    (768, (3, None)),           # exit 3
    (32512, (127, None)),       # command not found
    (1792, (7, None)),          # the USR1 trap's exit 7
    (9, (None, 9)),             # SIGKILL
    (15, (None, 15)),           # SIGTERM
    (4021, (None, 53)),         # missing output dir: scontrol says 0:53
    (134, (None, 6)),           # SIGABRT with a core dump
    (None, (None, None)),
    ("768", (None, None)),
    (True, (None, None)),
])
def test_decode_exit_2205_raw_wait_status(raw, expected):
    assert parse.decode_exit(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    # as the brief's documented 23.02+ shape, with bare {"number": n}
    ({"status": ["ERROR"], "return_code": {"number": 3},
      "signal": {"id": {"number": 0}, "name": ""}}, (3, None)),
    ({"status": ["SUCCESS"], "return_code": {"set": True, "infinite": False, "number": 0},
      "signal": {"id": {"set": False, "infinite": False, "number": 0}, "name": ""}},
     (0, None)),
    ({"status": ["ERROR"], "return_code": {"set": True, "infinite": False, "number": 127},
      "signal": {"id": {"set": False, "infinite": False, "number": 0}, "name": ""}},
     (127, None)),
    ({"status": ["SIGNALED"], "return_code": {"set": False, "infinite": False, "number": 0},
      "signal": {"id": {"set": True, "infinite": False, "number": 9}, "name": "KILL"}},
     (None, 9)),
    ({"status": ["SIGNALED"], "return_code": {"set": False, "infinite": False, "number": 0},
      "signal": {"id": {"set": True, "infinite": False, "number": 15}, "name": "TERM"}},
     (None, 15)),
    # still pending: neither
    ({"status": ["PENDING"], "return_code": {"set": False, "infinite": False, "number": 0},
      "signal": {"id": {"set": False, "infinite": False, "number": 0}, "name": ""}},
     (None, None)),
    # a wrapped raw wait status
    ({"set": True, "infinite": False, "number": 768}, (3, None)),
])
def test_decode_exit_2302_objects(raw, expected):
    assert parse.decode_exit(raw) == expected


def test_unwrap():
    assert parse.unwrap({"set": True, "infinite": False, "number": 42}) == 42
    assert parse.unwrap({"number": 7}) == 7
    assert parse.unwrap({"set": False, "infinite": False, "number": 0}) is None
    assert parse.unwrap({"set": True, "infinite": True, "number": 0}) is None
    assert parse.unwrap(5) == 5
    assert parse.unwrap("RUNNING") == "RUNNING"
    assert parse.unwrap(None) is None
    assert parse.unwrap({"other": 1}) == {"other": 1}


# --- gpu_indices, expand_ranges ---------------------------------------------------------

@pytest.mark.parametrize("detail, expected", [
    (["gpu:2(IDX:0-1)"], [0, 1]),
    (["gpu:1(IDX:0)"], [0]),
    (["gpu:1(IDX:1)"], [1]),
    (["gpu:a100:1(IDX:3)"], [3]),
    (["gpu:4(IDX:0,2-3,6)"], [0, 2, 3, 6]),
    (["gpu:1(IDX:1)", "gpu:2(IDX:0,3)"], [0, 1, 3]),     # two nodes
    (["gpu:2(IDX:1-2)", "gpu:1(IDX:1)"], [1, 2]),        # duplicates merged
    ([], []),
    (None, []),
    (["gpu:1(IDX:N/A)"], []),
    (["gpu:2"], []),
])
def test_gpu_indices(detail, expected):
    assert parse.gpu_indices(detail) == expected


@pytest.mark.parametrize("text, expected", [
    ("0-2,5", [0, 1, 2, 5]),
    ("3-6%2", [3, 4, 5, 6]),
    ("5-6%2", [5, 6]),
    ("7", [7]),
    ("1,3,5", [1, 3, 5]),
    ("1-7:2", [1, 3, 5, 7]),
    ("0-8:4%1", [0, 4, 8]),
    ("", []),
    ("3-3", [3]),
])
def test_expand_ranges(text, expected):
    assert parse.expand_ranges(text) == expected


def test_expand_ranges_rejects_junk():
    with pytest.raises(ValueError):
        parse.expand_ranges("abc")


# --- scontrol show -o job ---------------------------------------------------------------

TIMEOUT_LINE = (
    "JobId=45 JobName=my job name UserId=alice(1000) GroupId=alice(1000) MCS_label=N/A "
    "Priority=4294901716 Nice=0 Account=(null) QOS=(null) JobState=TIMEOUT "
    "Reason=TimeLimit Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 "
    "ExitCode=0:15 RunTime=00:01:03 TimeLimit=00:01:00 TimeMin=N/A "
    "SubmitTime=2026-11-24T06:45:14 EligibleTime=2026-11-24T06:45:14 "
    "StartTime=2026-11-24T06:45:14 EndTime=2026-11-24T06:46:17 Deadline=N/A "
    "Partition=debug AllocNode:Sid=localhost:1234 NodeList=localhost BatchHost=localhost "
    "NumNodes=1 NumCPUs=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* "
    "MinMemoryNode=200M Features=(null) Command=(null) WorkDir=/srv/runs/exp 1 "
    "Comment=gflow:ci:9@2 StdErr=/var/log/gflow/9.log StdIn=/dev/null "
    "StdOut=/var/log/gflow/9.log Power= TresPerNode=gres:gpu:1")

ARRAY_LINES = (
    "JobId=125 ArrayJobId=120 ArrayTaskId=3 ArrayTaskThrottle=2 JobName=sweep "
    "UserId=alice(1000) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) "
    "ExitCode=3:0 Comment=gflow:ci:20@1,21@1,22@1,23@1 WorkDir=/home/alice\n"
    "\n"
    "JobId=120 ArrayJobId=120 ArrayTaskId=4 ArrayTaskThrottle=2 JobName=sweep "
    "UserId=alice(1000) JobState=COMPLETED Reason=None Dependency=(null) "
    "ExitCode=0:0 Comment=gflow:ci:20@1,21@1,22@1,23@1 WorkDir=/home/alice\n")


def test_scontrol_records_values_with_spaces():
    recs = parse.scontrol_records(TIMEOUT_LINE + "\n")
    assert len(recs) == 1
    rec = recs[0]
    assert list(rec) == [
        "JobId", "JobName", "UserId", "GroupId", "MCS_label", "Priority", "Nice",
        "Account", "QOS", "JobState", "Reason", "Dependency", "Requeue", "Restarts",
        "BatchFlag", "Reboot", "ExitCode", "RunTime", "TimeLimit", "TimeMin",
        "SubmitTime", "EligibleTime", "StartTime", "EndTime", "Deadline", "Partition",
        "AllocNode:Sid", "NodeList", "BatchHost", "NumNodes", "NumCPUs", "CPUs/Task",
        "ReqB:S:C:T", "TRES", "Socks/Node", "NtasksPerN:B:S:C", "MinMemoryNode",
        "Features", "Command", "WorkDir", "Comment", "StdErr", "StdIn", "StdOut",
        "Power", "TresPerNode"]
    assert rec["JobName"] == "my job name"
    assert rec["WorkDir"] == "/srv/runs/exp 1"
    assert rec["TRES"] == "cpu=1,mem=100M,node=1,billing=1"
    assert rec["AllocNode:Sid"] == "localhost:1234"
    assert rec["NtasksPerN:B:S:C"] == "0:0:*:*"
    assert rec["UserId"] == "alice(1000)"
    assert rec["Power"] == ""
    assert rec["TresPerNode"] == "gres:gpu:1"
    assert rec["ExitCode"] == "0:15"
    assert rec["Comment"] == "gflow:ci:9@2"
    assert rec["EndTime"] == "2026-11-24T06:46:17"


def test_scontrol_records_one_per_line_blank_lines_skipped():
    recs = parse.scontrol_records(ARRAY_LINES)
    assert [(r["JobId"], r["ArrayTaskId"], r["JobState"]) for r in recs] == [
        ("125", "3", "FAILED"), ("120", "4", "COMPLETED")]
    assert parse.scontrol_records("") == []
    assert parse.scontrol_records("no equals sign here\n") == []


def test_scontrol_job_timeout():
    job = parse.scontrol_job(parse.scontrol_records(TIMEOUT_LINE)[0])
    assert job == SlurmJob(key="45", job_id=45, state="TIMEOUT", reason="TimeLimit",
                           exit_code=None, signal=15, gpu_ids=[], comment="gflow:ci:9@2",
                           start_time=None, end_time=None)


def test_scontrol_job_array_tasks():
    a, b = (parse.scontrol_job(r) for r in parse.scontrol_records(ARRAY_LINES))
    assert (a.key, a.job_id, a.state, a.reason, a.exit_code, a.signal) == (
        "120_3", 125, "FAILED", "NonZeroExitCode", 3, None)
    assert a.comment == "gflow:ci:20@1,21@1,22@1,23@1"
    assert (b.key, b.job_id, b.state, b.reason, b.exit_code, b.signal) == (
        "120_4", 120, "COMPLETED", "None", 0, None)


@pytest.mark.parametrize("exit_text, expected", [
    ("0:0", (0, None)),
    ("3:0", (3, None)),
    ("127:0", (127, None)),
    ("0:9", (None, 9)),
    ("0:15", (None, 15)),
    ("0:53", (None, 53)),
    ("", (None, None)),
    ("junk", (None, None)),
])
def test_scontrol_job_exit_codes(exit_text, expected):
    job = parse.scontrol_job({"JobId": "77", "JobState": "failed", "ExitCode": exit_text})
    assert (job.exit_code, job.signal) == expected
    assert job.state == "FAILED"
    assert job.key == "77"


def test_scontrol_job_without_a_numeric_id():
    assert parse.scontrol_job({}) is None
    assert parse.scontrol_job({"JobId": "abc"}) is None
    assert parse.scontrol_job({"JobId": ""}) is None


# --- outcome ----------------------------------------------------------------------------

def test_outcome_completed(jobs_2205):
    assert parse.outcome(jobs_2205["120_0"]) == {"exit_code": 0,
                                                 "finished_at": 1764000011.0}


def test_outcome_failed_with_an_exit_code_is_an_ordinary_failure(jobs_2205):
    assert parse.outcome(jobs_2205["120_1"]) == {"exit_code": 3,
                                                 "finished_at": 1764000012.0}
    assert parse.outcome(jobs_2205["127"]) == {"exit_code": 127,
                                               "finished_at": 1764000007.0}


def test_outcome_failed_by_a_signal(jobs_2205):
    assert parse.outcome(jobs_2205["128"]) == {
        "exit_code": None, "finished_at": 1764000008.0, "signal": 9,
        "detail": "Slurm: failed (JobLaunchFailure)"}


def test_outcome_timeout(jobs_2205):
    assert parse.outcome(jobs_2205["129"]) == {
        "exit_code": None, "finished_at": 1764000069.0, "signal": 15,
        "state": "Timeout", "detail": "Slurm: time limit reached (TimeLimit)"}


def test_outcome_cancelled_while_running(jobs_2205):
    assert parse.outcome(jobs_2205["120_2"]) == {
        "exit_code": None, "finished_at": 1764000020.0, "signal": 15,
        "state": "Cancelled", "detail": "Slurm: cancelled"}


def test_outcome_cancelled_while_pending_keeps_the_pending_reason(jobs_2205):
    info = parse.outcome(jobs_2205["130"])
    assert info["state"] == "Cancelled"
    assert info["detail"] == "Slurm: cancelled (BeginTime)"
    assert info["finished_at"] == 1764000009.0
    assert "signal" not in info


def test_outcome_node_fail(jobs_2205):
    assert parse.outcome(jobs_2205["131"]) == {
        "exit_code": None, "finished_at": 1764000040.0,
        "detail": "Slurm: its node failed (NodeDown)"}


def test_outcome_2302_shapes(jobs_2302):
    assert parse.outcome(jobs_2302["201"]) == {"exit_code": 3,
                                               "finished_at": 1764000030.0}
    assert parse.outcome(jobs_2302["202"]) == {
        "exit_code": None, "finished_at": 1764000031.0, "signal": 9,
        "detail": "Slurm: failed (JobLaunchFailure)"}


@pytest.mark.parametrize("state, reason, expected_detail", [
    ("OUT_OF_MEMORY", "OutOfMemory", "Slurm: out of memory (OutOfMemory)"),
    ("BOOT_FAIL", "NodeDown", "Slurm: its node did not boot (NodeDown)"),
    ("PREEMPTED", "None", "Slurm: preempted"),
    ("DEADLINE", "DeadLine", "Slurm: missed its deadline (DeadLine)"),
    ("NODE_FAIL", "", "Slurm: its node failed"),
    ("FAILED", "JobLaunchFailure", "Slurm: failed (JobLaunchFailure)"),
    ("SPECIAL_EXIT", "None", "Slurm: special_exit"),
    ("LOST", "", "Slurm: lost"),
])
def test_outcome_states_ended_by_slurm(state, reason, expected_detail):
    job = SlurmJob(key="5", job_id=5, state=state, reason=reason, exit_code=0,
                   end_time=1764000100.0)
    assert parse.outcome(job) == {"exit_code": None, "finished_at": 1764000100.0,
                                  "detail": expected_detail}


def test_outcome_timeout_and_cancel_from_scontrol():
    job = parse.scontrol_job(parse.scontrol_records(TIMEOUT_LINE)[0])
    assert parse.outcome(job) == {
        "exit_code": None, "finished_at": None, "signal": 15, "state": "Timeout",
        "detail": "Slurm: time limit reached (TimeLimit)"}
    job = parse.scontrol_job({"JobId": "3", "JobState": "CANCELLED", "Reason": "None",
                              "ExitCode": "0:15"})
    assert parse.outcome(job) == {"exit_code": None, "finished_at": None, "signal": 15,
                                  "state": "Cancelled", "detail": "Slurm: cancelled"}


def test_final_and_active_states():
    for s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
              "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"):
        assert s in parse.FINAL
    for s in ("RUNNING", "COMPLETING", "SUSPENDED"):
        assert s in parse.ACTIVE
        assert s not in parse.FINAL
    assert "PENDING" not in parse.FINAL and "PENDING" not in parse.ACTIVE
