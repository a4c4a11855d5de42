"""A root gflowd in Slurm mode submits each job as its owner (issue 20, identity).

A throwaway account submits through the daemon's socket; Slurm's record names that
account, the job runs with its uid and groups, the log is the owner's (slurmstepd
writes it as them) and nobody else's to read, and the daemon's directories can be
traversed but not listed. Root only (CI is root): accounts are created and removed.
"""

from __future__ import annotations

import re
import shutil
import stat

import pytest

from conftest import Daemon
from multiuser import Accounts, gflow_venv, need_root, run_as, shared_dir
from slurm_cluster import slurm_cluster, slurm_records  # noqa: F401

pytestmark = pytest.mark.usefixtures("slurm_cluster")


@pytest.fixture(scope="module")
def box():
    need_root()
    accounts = Accounts()
    base = shared_dir("gflow-slurm-mu-")
    daemon = None
    try:
        box = type("Box", (), {})()
        box.a = accounts.user("a")
        box.b = accounts.user("b")
        box.bin = gflow_venv(base)
        run_dir = base / "run"
        run_dir.mkdir(mode=0o755)
        box.socket = str(run_dir / "gflowd.sock")
        home = base / "daemon-home"
        config = home / ".config" / "gflow"
        config.mkdir(parents=True)
        (config / "gflow.toml").write_text('[executor]\nkind = "slurm"\n')
        daemon = Daemon(home, extra_env={"GFLOW_RUN_AS": "submitter",
                                         "GFLOW_DAEMON_SOCKET": box.socket})
        daemon.start()
        box.daemon = daemon
        yield box
    finally:
        if daemon is not None:
            daemon.stop()
        accounts.remove()
        shutil.rmtree(base, ignore_errors=True)


def as_user(box, account, tool, *args):
    env = {"GFLOW_DAEMON_HOST": "127.0.0.1", "GFLOW_DAEMON_PORT": str(box.daemon.port),
           "GFLOW_DAEMON_SOCKET": box.socket}
    return run_as(account, [box.bin / tool, *args], env=env)


def test_slurm_runs_the_job_as_its_owner(box):
    a = box.a
    res = as_user(box, a, "gbatch", "bash", "-c", "id -u; id -G; echo home=$HOME; sleep 1")
    assert res.returncode == 0, (res.stdout, res.stderr)
    job_id = int(re.search(r"Submitted batch job (\d+)", res.stdout).group(1))
    job = box.daemon.wait_state(job_id, ("Finished", "Failed", "Cancelled"), timeout=40)
    log_path = box.daemon.logs / f"{job_id}.log"
    log = log_path.read_text()
    assert job["state"] == "Finished", (job, log)
    lines = log.split()
    assert lines[0] == str(a.uid), log
    assert sorted(map(int, lines[1:1 + len(a.groups)])) == sorted(a.groups), log
    assert f"home={a.home}" in log
    # Slurm's accounting sees the real person.
    rec = slurm_records(job["executor_id"])[0]
    assert rec["UserId"].startswith(f"{a.name}("), rec["UserId"]
    # The log is the owner's, readable by nobody else; the directories are not listable.
    st = log_path.stat()
    assert st.st_uid == a.uid and stat.S_IMODE(st.st_mode) == 0o600
    for directory in (box.daemon.data_dir, box.daemon.logs):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o711, directory
    peek = run_as(box.b, ["cat", str(log_path)], env={})
    assert peek.returncode != 0 and "Permission denied" in peek.stderr
    listing = run_as(box.b, ["ls", str(box.daemon.logs)], env={})
    assert listing.returncode != 0


def test_another_account_cannot_cancel_a_slurm_job(box):
    res = as_user(box, box.a, "gbatch", "sleep 30")
    job_id = int(re.search(r"Submitted batch job (\d+)", res.stdout).group(1))
    box.daemon.wait_state(job_id, ("Running",), timeout=30)
    refused = as_user(box, box.b, "gcancel", str(job_id))
    assert refused.returncode != 0 and f"job {job_id} belongs to {box.a.name}" in \
        (refused.stderr + refused.stdout)
    assert box.daemon.job(job_id)["state"] == "Running"
    assert as_user(box, box.a, "gcancel", str(job_id)).returncode == 0
    assert box.daemon.wait_state(job_id, ("Cancelled",), timeout=30)["state"] == "Cancelled"
