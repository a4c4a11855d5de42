"""How gflow jobs become one `sbatch` call (gflow/launcher/slurm/submit.py): its
arguments, its environment and the batch script, which is run here with a real bash.

Expected values are written out by hand; nothing is computed with the code under test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gflow.config_executor import SlurmConfig
from gflow.launcher.slurm import submit

LOGS = Path("/home/alice/.local/share/gflow/logs")


def log_path(job_id):
    return LOGS / f"{job_id}.log"


# --- sbatch_argv: one job ---------------------------------------------------------------

def test_sbatch_argv_single_job_everything():
    spec = {"id": 9, "attempt": 1, "run_name": "train", "run_dir": "/home/alice/proj",
            "gpus": 2, "memory_limit_mb": 4096, "time_limit": 30,
            "slurm_deps": {"conds": [["afterok", "5"], ["afterany", "7"]], "any": False}}
    cfg = SlurmConfig(partition="gpu", account="lab", extra_args=("--qos=high", "--nice=10"))
    assert submit.sbatch_argv([spec], cfg, instance="ci", log_path=log_path) == [
        "sbatch", "--parsable", "--kill-on-invalid-dep=yes", "--export=ALL",
        "--job-name=train", "--comment=gflow:ci:9@1", "--chdir=/home/alice/proj",
        "--output=/home/alice/.local/share/gflow/logs/9.log",
        "--error=/home/alice/.local/share/gflow/logs/9.log", "--open-mode=append",
        "--gres=gpu:2", "--mem=4096M", "--time=1",
        "--dependency=afterok:5,afterany:7",
        "--partition=gpu", "--account=lab", "--qos=high", "--nice=10"]


def test_sbatch_argv_single_job_minimal():
    assert submit.sbatch_argv([{"id": 3}], SlurmConfig(), instance="ci",
                              log_path=log_path) == [
        "sbatch", "--parsable", "--kill-on-invalid-dep=yes", "--export=ALL",
        "--job-name=gflow-3", "--comment=gflow:ci:3@1", "--chdir=/",
        "--output=/home/alice/.local/share/gflow/logs/3.log",
        "--error=/home/alice/.local/share/gflow/logs/3.log", "--open-mode=append"]


def test_sbatch_argv_zero_gpus_no_memory_no_limit_no_deps():
    spec = {"id": 4, "attempt": 3, "gpus": 0, "memory_limit_mb": None, "time_limit": None,
            "slurm_deps": {"conds": [], "any": False}, "run_name": None, "run_dir": None}
    argv = submit.sbatch_argv([spec], SlurmConfig(), instance="lab", log_path=log_path)
    assert argv == [
        "sbatch", "--parsable", "--kill-on-invalid-dep=yes", "--export=ALL",
        "--job-name=gflow-4", "--comment=gflow:lab:4@3", "--chdir=/",
        "--output=/home/alice/.local/share/gflow/logs/4.log",
        "--error=/home/alice/.local/share/gflow/logs/4.log", "--open-mode=append"]


def test_sbatch_argv_commands_from_config():
    cfg = SlurmConfig(sbatch="/opt/slurm/bin/sbatch")
    argv = submit.sbatch_argv([{"id": 1}], cfg, instance="ci", log_path=log_path)
    assert argv[0] == "/opt/slurm/bin/sbatch"


@pytest.mark.parametrize("seconds, expected", [
    (30, "--time=1"),        # Slurm counts whole minutes, rounded up
    (0.5, "--time=1"),
    (60, "--time=1"),
    (61, "--time=2"),
    (119.9, "--time=2"),
    (120, "--time=2"),
    (3600, "--time=60"),
    (3601, "--time=61"),
    (86400, "--time=1440"),
])
def test_sbatch_argv_time_rounds_up_to_whole_minutes(seconds, expected):
    argv = submit.sbatch_argv([{"id": 2, "time_limit": seconds}], SlurmConfig(),
                              instance="ci", log_path=log_path)
    assert [a for a in argv if a.startswith("--time")] == [expected]


def test_time_arg():
    assert submit.time_arg(None) is None
    assert submit.time_arg(30) == "1"
    assert submit.time_arg(61) == "2"
    assert submit.time_arg(0) == "1"


def test_sbatch_argv_memory_and_gpus():
    argv = submit.sbatch_argv([{"id": 2, "gpus": 1, "memory_limit_mb": 512.0}],
                              SlurmConfig(), instance="ci", log_path=log_path)
    assert argv[-2:] == ["--gres=gpu:1", "--mem=512M"]


@pytest.mark.parametrize("deps, expected", [
    ({"conds": [["afterok", "5"], ["afterany", "7"]], "any": False},
     ["--dependency=afterok:5,afterany:7"]),
    ({"conds": [["afterok", "5"], ["afterok", "7"]], "any": True},
     ["--dependency=afterok:5?afterok:7"]),
    ({"conds": [["afternotok", "120_4"]], "any": False},
     ["--dependency=afternotok:120_4"]),
    ({"conds": [["afterok", "5"]], "any": True}, ["--dependency=afterok:5"]),
    ({"conds": [], "any": True}, []),
    ({}, []),
    (None, []),
])
def test_sbatch_argv_dependency(deps, expected):
    argv = submit.sbatch_argv([{"id": 8, "slurm_deps": deps}], SlurmConfig(),
                              instance="ci", log_path=log_path)
    assert [a for a in argv if a.startswith("--dependency")] == expected


def test_dependency_arg():
    assert submit.dependency_arg({"conds": [["afterok", "5"], ["afterany", "7"]]}) == \
        "afterok:5,afterany:7"
    assert submit.dependency_arg({"conds": [["afterok", "5"], ["afterok", "7"]],
                                  "any": True}) == "afterok:5?afterok:7"
    assert submit.dependency_arg({"conds": []}) is None
    assert submit.dependency_arg({}) is None


def test_sbatch_argv_partition_account_extra_args_from_parsed_config():
    from gflow.config_executor import parse_executor
    cfg = parse_executor({"kind": "slurm", "slurm": {
        "partition": "a100", "account": "proj-42",
        "extra_args": ["--qos=high", "--constraint=ib"]}}, "test").slurm
    argv = submit.sbatch_argv([{"id": 1}], cfg, instance="ci", log_path=log_path)
    assert argv[-4:] == ["--partition=a100", "--account=proj-42", "--qos=high",
                         "--constraint=ib"]


# --- sbatch_argv: an array group --------------------------------------------------------

def sweep_specs():
    common = {"run_name": "sweep", "run_dir": "/home/alice/proj", "gpus": 1,
              "memory_limit_mb": 2048, "time_limit": 600, "group_id": "g1",
              "max_concurrent": 2,
              "slurm_deps": {"conds": [["afterok", "5"]], "any": False}}
    return [dict(common, id=20, attempt=1, task_id=0),
            dict(common, id=21, attempt=1, task_id=1),
            dict(common, id=22, attempt=2, task_id=2)]


def test_sbatch_argv_array_group():
    argv = submit.sbatch_argv(sweep_specs(), SlurmConfig(partition="gpu"), instance="ci",
                              log_path=log_path)
    assert argv == [
        "sbatch", "--parsable", "--kill-on-invalid-dep=yes", "--export=ALL",
        "--job-name=sweep", "--comment=gflow:ci:20@1,21@1,22@2",
        "--chdir=/home/alice/proj", "--array=0-2%2", "--output=/dev/null",
        "--gres=gpu:1", "--mem=2048M", "--time=10", "--dependency=afterok:5",
        "--partition=gpu"]


def test_sbatch_argv_array_without_a_limit():
    specs = [{"id": 30, "max_concurrent": None}, {"id": 31, "max_concurrent": None}]
    argv = submit.sbatch_argv(specs, SlurmConfig(), instance="ci", log_path=log_path)
    assert "--array=0-1" in argv
    assert "--output=/dev/null" in argv
    assert not any(a.startswith("--error") or a.startswith("--open-mode") for a in argv)


# --- comment / parse_comment ------------------------------------------------------------

def test_comment_round_trip():
    text = submit.comment("ci", sweep_specs())
    assert text == "gflow:ci:20@1,21@1,22@2"
    assert submit.parse_comment(text, "ci") == [(20, 1), (21, 1), (22, 2)]
    assert submit.comment("ci", [{"id": 7}]) == "gflow:ci:7@1"
    assert submit.parse_comment("gflow:ci:7@1", "ci") == [(7, 1)]


@pytest.mark.parametrize("text", [
    "gflow:other:20@1,21@1",       # another gflowd's
    "gflow:cia:5@1",               # an instance whose name starts with ours
    "gflow:c:5@1",
    "gflow:5@1",
    "",
    "nightly backup",
    "gflow:ci:x@1",                # garbled
    "gflow:ci:5@1,junk",
    "gflow:ci:",
])
def test_parse_comment_of_anything_else_is_empty(text):
    assert submit.parse_comment(text, "ci") == []


def test_parse_comment_attempt_defaults_to_one():
    assert submit.parse_comment("gflow:ci:5,6@3", "ci") == [(5, 1), (6, 3)]


# --- environment ------------------------------------------------------------------------

def test_environment_drops_what_slurm_sets_per_job():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/home/alice", "LANG": "C.UTF-8",
           "CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
           "GPU_DEVICE_ORDINAL": "0", "ROCR_VISIBLE_DEVICES": "0",
           "SLURM_JOB_ID": "55", "SLURM_JOBID": "55", "SLURM_ARRAY_JOB_ID": "50",
           "SLURM_ARRAY_TASK_ID": "1", "GFLOW_RUN_NAME": "train",
           "SLURM_CONF": "/etc/slurm/slurm.conf"}
    before = dict(env)
    assert submit.environment(env) == {
        "PATH": "/usr/bin:/bin", "HOME": "/home/alice", "LANG": "C.UTF-8",
        "GFLOW_RUN_NAME": "train", "SLURM_CONF": "/etc/slurm/slurm.conf"}
    assert env == before                    # the caller's map is not changed


# --- batch_script -----------------------------------------------------------------------

def test_batch_script_one_job_text():
    spec = {"id": 9, "run_dir": "/home/alice/my proj", "umask": 0o027, "task_id": None}
    argv = ["python", "train.py", "--lr", "0.1", "it's"]
    assert submit.batch_script([spec], [argv], log_path) == (
        "#!/bin/bash\n"
        "# written by gflowd: gflow job 9\n"
        "export GFLOW_JOB_ID=9 GFLOW_ARRAY_TASK_ID=0\n"
        "umask 0027\n"
        "cd -- '/home/alice/my proj' || exit 1\n"
        "exec python train.py --lr 0.1 'it'\"'\"'s'\n")


def test_batch_script_array_text():
    specs = [{"id": 20, "task_id": 0, "run_dir": "/w"},
             {"id": 21, "task_id": 1, "run_dir": "/w"}]
    argvs = [["echo", "a"], ["echo", "b c"]]
    assert submit.batch_script(specs, argvs, log_path) == (
        "#!/bin/bash\n"
        "# written by gflowd: gflow job 20, gflow job 21\n"
        'case "${SLURM_ARRAY_TASK_ID:-}" in\n'
        "0)\n"
        "    exec >>/home/alice/.local/share/gflow/logs/20.log 2>&1\n"
        "    export GFLOW_JOB_ID=20 GFLOW_ARRAY_TASK_ID=0\n"
        "    cd -- /w || exit 1\n"
        "    exec echo a\n"
        "    ;;\n"
        "1)\n"
        "    exec >>/home/alice/.local/share/gflow/logs/21.log 2>&1\n"
        "    export GFLOW_JOB_ID=21 GFLOW_ARRAY_TASK_ID=1\n"
        "    cd -- /w || exit 1\n"
        "    exec echo 'b c'\n"
        "    ;;\n"
        '*) echo "gflow: unknown array task ${SLURM_ARRAY_TASK_ID:-}" >&2; exit 1;;\n'
        "esac\n")


BASH = shutil.which("bash")
REPORT = ('echo "job=$GFLOW_JOB_ID task=$GFLOW_ARRAY_TASK_ID dir=$(pwd) '
          'umask=$(umask) arg=$1"; echo "to stderr" >&2')


def run_script(script: str, tmp_path: Path, env_extra: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "batch.sh"
    path.write_text(script)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    env.update(env_extra)
    return subprocess.run([BASH, str(path)], env=env, capture_output=True, text=True,
                          timeout=20)


@pytest.fixture
def dirs(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    run = tmp_path / "run dir"
    run.mkdir()
    return logs, run


def test_batch_script_one_job_runs(tmp_path, dirs):
    logs, run = dirs
    spec = {"id": 9, "run_dir": str(run), "umask": 0o027}
    script = submit.batch_script([spec], [["sh", "-c", REPORT, "sh", "x y"]],
                                 lambda j: logs / f"{j}.log")
    res = run_script(script, tmp_path, {})
    assert res.returncode == 0, res.stderr
    # one job: no redirect in the script, sbatch's --output/--error write the log
    assert res.stdout == f"job=9 task=0 dir={run} umask=0027 arg=x y\n"
    assert res.stderr == "to stderr\n"
    assert list(logs.iterdir()) == []


def test_batch_script_array_each_task_its_own_log_and_job_id(tmp_path, dirs):
    logs, run = dirs
    specs = [{"id": 20, "task_id": 0, "run_dir": str(run)},
             {"id": 21, "task_id": 1, "run_dir": str(run)},
             {"id": 22, "task_id": 2, "run_dir": str(tmp_path), "umask": 0o077}]
    argvs = [["sh", "-c", REPORT, "sh", f"arg{i}"] for i in range(3)]
    script = submit.batch_script(specs, argvs, lambda j: logs / f"{j}.log")
    (logs / "21.log").write_text("earlier attempt\n")          # appended to, not replaced
    for task in ("2", "0", "1"):
        res = run_script(script, tmp_path, {"SLURM_ARRAY_TASK_ID": task,
                                            "SLURM_ARRAY_JOB_ID": "120"})
        assert res.returncode == 0, res.stderr
        assert res.stdout == "" and res.stderr == ""
    assert sorted(p.name for p in logs.iterdir()) == ["20.log", "21.log", "22.log"]
    umask = subprocess.run([BASH, "-c", "umask"], capture_output=True, text=True,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                           ).stdout.strip()
    assert (logs / "20.log").read_text() == (
        f"job=20 task=0 dir={run} umask={umask} arg=arg0\nto stderr\n")
    assert (logs / "21.log").read_text() == (
        f"earlier attempt\njob=21 task=1 dir={run} umask={umask} arg=arg1\nto stderr\n")
    assert (logs / "22.log").read_text() == (
        f"job=22 task=2 dir={tmp_path} umask=0077 arg=arg2\nto stderr\n")


def test_batch_script_array_exit_status_and_unknown_task(tmp_path, dirs):
    logs, run = dirs
    specs = [{"id": 20, "task_id": 0, "run_dir": str(run)},
             {"id": 21, "task_id": 1, "run_dir": str(run)}]
    argvs = [["sh", "-c", "exit 3"], ["true"]]
    script = submit.batch_script(specs, argvs, lambda j: logs / f"{j}.log")
    assert run_script(script, tmp_path, {"SLURM_ARRAY_TASK_ID": "0"}).returncode == 3
    assert run_script(script, tmp_path, {"SLURM_ARRAY_TASK_ID": "1"}).returncode == 0
    res = run_script(script, tmp_path, {"SLURM_ARRAY_TASK_ID": "7"})
    assert res.returncode == 1
    assert res.stderr == "gflow: unknown array task 7\n"
    res = run_script(script, tmp_path, {})
    assert res.returncode == 1
    assert res.stderr == "gflow: unknown array task \n"


def test_batch_script_missing_run_dir_fails(tmp_path, dirs):
    logs, _ = dirs
    spec = {"id": 9, "run_dir": str(tmp_path / "gone")}
    script = submit.batch_script([spec], [["echo", "never"]], lambda j: logs / f"{j}.log")
    res = run_script(script, tmp_path, {})
    assert res.returncode == 1
    assert res.stdout == ""
