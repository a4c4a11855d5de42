"""gflow 0.4.13's own gcancel, run by another account, cannot cancel someone's job."""

from __future__ import annotations

import shutil

import pytest

from conftest import Daemon, wait_for
from multiuser import Accounts, gflow_venv, need_root, run_as, shared_dir
from test_runqd_clients import runqd_bin

pytestmark = pytest.mark.compat


def test_0413_gcancel_of_another_account_is_refused(tmp_path):
    need_root()
    rust_bin = runqd_bin()
    accounts = Accounts()
    base = shared_dir("gflow-compat-mu-")
    d = None
    try:
        a, b = accounts.user("ra"), accounts.user("rb")
        ours = gflow_venv(base)
        # Root's home is private: copy 0.4.13's gcancel (and the `gflow` binary it
        # execs) where the other account can run them.
        rust_dir = base / "runqd-0.4.13"
        rust_dir.mkdir(mode=0o755)
        for name in ("gcancel", "gflow"):
            shutil.copy2(rust_bin / name, rust_dir / name)
            (rust_dir / name).chmod(0o755)
        rust_gcancel = rust_dir / "gcancel"
        home = tmp_path / "home"
        home.mkdir()
        d = Daemon(home, fake_gpus="1", extra_env={"GFLOW_RUN_AS": "submitter",
                                                   "GFLOW_DAEMON_SOCKET": ""})
        d.start()
        env = {"GFLOW_DAEMON_HOST": "127.0.0.1", "GFLOW_DAEMON_PORT": str(d.port)}
        res = run_as(a, [ours / "gbatch", "sleep", "300"], env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        job_id = int(res.stdout.split("job")[1].split()[0])
        d.wait_state(job_id, "Running")
        res = run_as(b, [rust_gcancel, str(job_id)], env=env)
        # The daemon refuses (403); 0.4.13's gcancel does not read the answer and prints
        # "Job N cancelled." whatever it was (its weak spot), so the job's state is the
        # proof, checked after the refusal was logged.
        wait_for(lambda: f"job {job_id} belongs to" in (d.logs / "gflowd.log").read_text()
                 or d.job(job_id)["state"] != "Running", what="the refusal")
        assert d.job(job_id)["state"] == "Running"
        res = run_as(a, [rust_gcancel, str(job_id)], env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        d.wait_state(job_id, "Cancelled")
    finally:
        if d is not None:
            d.stop()
        accounts.remove()
        shutil.rmtree(base, ignore_errors=True)
