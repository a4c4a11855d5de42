"""gflow 0.4.13's own Rust clients (PyPI `runqd`) driving our daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Daemon, free_port, wait_for

pytestmark = pytest.mark.compat

RUNQD = "runqd==0.4.13"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def runqd_bin() -> Path:
    """A venv with runqd 0.4.13 in a user cache dir, made once; skip (or fail in CI) without."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "gflow-compat" / "runqd-0.4.13"
    gbatch = venv / "bin" / "gbatch"
    if gbatch.exists():
        return venv / "bin"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", RUNQD], check=True,
                       capture_output=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        message = f"cannot install {RUNQD}: {exc} {detail.decode(errors='replace')[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return venv / "bin"


@pytest.fixture(scope="module")
def rust(tmp_path_factory):
    bin_dir = runqd_bin()
    home = tmp_path_factory.mktemp("compat-home")
    d = Daemon(home, fake_gpus="4", extra_env={"USER": "alice"})
    d.start()

    def run(tool, *args, ok=True):
        res = subprocess.run([str(bin_dir / tool), *map(str, args)], env=d.env, cwd=home,
                             capture_output=True, text=True, timeout=60)
        if ok:
            assert res.returncode == 0, (tool, args, res.stdout, res.stderr)
        res.plain = ANSI.sub("", res.stdout)
        return res

    d.rust = run
    yield d
    d.stop()


def test_submit_forms(rust):
    assert rust.rust("gbatch", "echo", "hello", "world").stdout == \
        "Submitted batch job 1 (gflow-job-1)\n"
    assert rust.rust("gbatch", "-d", "@", "--gpus", "1", "echo", "child").stdout == \
        "Submitted batch job 2 (gflow-job-2)\n"
    out = rust.rust("gbatch", "--param", "lr=0.1,0.01", "--param", "bs=32",
                    "--name-template", "run_{lr}_{bs}", "echo", "lr={lr}", "bs={bs}").stdout
    assert out.splitlines() == ["Submitted batch job 3 (run_0.1_32)",
                                "Submitted batch job 4 (run_0.01_32)"]
    out = rust.rust("gbatch", "--array", "1-3", "--max-concurrent", "2", "bash", "-c",
                    "echo task $GFLOW_ARRAY_TASK_ID").stdout
    assert "Submitted 3 batch jobs with group_id:" in out
    for i in range(1, 8):
        rust.wait_state(i, "Finished", timeout=30)
    child = rust.job(2)
    assert child["depends_on_ids"] == [1] and child["gpu_ids"] == [0]
    assert (rust.logs / "3.log").read_text() == "lr=0.1 bs=32\n"
    assert (rust.logs / "7.log").read_text() == "task 3\n"


def test_listing_and_show(rust):
    rust.wait_state(7, "Finished", timeout=30)
    table = rust.rust("gqueue", "-a").plain.splitlines()
    assert table[0].split() == ["JOBID", "NAME", "ST", "TIME", "NODES", "NODELIST(REASON)"]
    assert [line.split()[0] for line in table[1:]] == [str(i) for i in range(1, 8)]
    tree = rust.rust("gqueue", "-a", "-t").plain
    assert "╰─2" in tree
    show = rust.rust("gjob", "show", "2").stdout
    assert "  ID=2" in show and "State=Finished (CD)" in show and "DependsOn=1" in show
    assert rust.rust("gjob", "log", "1").stdout == "hello world\n"
    info = rust.rust("ginfo").plain
    assert "gpu        4     0,1,2,3  idle" in info


def test_hold_release_update_cancel(rust):
    rust.rust("gbatch", "--gpus", "9", "sleep", "100")          # never fits: stays queued
    job_id = max(j["id"] for j in rust.http("GET", "/jobs")[1])
    assert rust.rust("gjob", "hold", job_id).stdout == f"Job {job_id} put on hold.\n"
    assert rust.job(job_id)["state"] == "Hold"
    assert "released back to queue" in rust.rust("gjob", "release", job_id).stdout
    out = rust.rust("gjob", "update", job_id, "--priority", "50", "-t", "10").stdout
    assert "updated successfully" in out and "priority" in out
    job = rust.job(job_id)
    assert job["priority"] == 50 and job["time_limit"] == {"secs": 600, "nanos": 0}
    rust.rust("gjob", "update", job_id, "--clear-time-limit")
    assert rust.job(job_id)["time_limit"] is None          # 0.4.13's daemon ignores this
    assert rust.rust("gcancel", job_id).stdout == f"Job {job_id} cancelled.\n"
    assert rust.job(job_id)["state"] == "Cancelled"


def test_gctl_and_reservations(rust):
    assert "only GPUs [0, 1]" in rust.rust("gctl", "set-gpus", "0,1").stdout
    lines = rust.rust("gctl", "show-gpus").stdout.splitlines()
    assert lines[2].split() == ["2", "available", "restricted"]
    rust.rust("gctl", "set-gpus", "all")
    assert rust.http("GET", "/info")[1]["allowed_gpu_indices"] is None
    out = rust.rust("gctl", "set-limit", "5", "3").stdout
    assert "(3 jobs affected)" in out
    start = time.strftime("%Y-%m-%d %H:00", time.gmtime(time.time() + 7200))
    out = rust.rust("gctl", "reserve", "create", "--user", "bob", "--gpus", "1", "--start",
                    start, "--duration", "1h", "--timezone", "UTC").stdout
    assert "ReservationID=1" in out
    listing = rust.rust("gctl", "reserve", "list").plain
    assert "bob" in listing and "Pending" in listing
    assert "User=bob" in rust.rust("gctl", "reserve", "get", "1").stdout
    assert "cancelled successfully" in rust.rust("gctl", "reserve", "cancel", "1").stdout
    assert "Cancelled" in rust.rust("gctl", "reserve", "list").plain


def test_redo_and_stats(rust):
    out = rust.rust("gjob", "redo", "1").stdout
    new_id = int(re.search(r"Submitted batch job (\d+)", out).group(1))
    assert rust.job(new_id)["redone_from"] == 1
    stats = json.loads(rust.rust("gstats", "-o", "json").stdout)
    assert stats["total_jobs"] >= 8 and "success_rate" in stats
    assert "Usage Statistics" in rust.rust("gstats").plain


def test_state_dir_loads_in_0413_daemon(rust, tmp_path):
    """A state directory we wrote is readable by gflow 0.4.13's own daemon."""
    bin_dir = runqd_bin()
    rust.ok("gbatch", "--gpus", "9", "echo", "for 0.4.13")   # at least one job
    ours = [str(j["id"]) for j in rust.http("GET", "/jobs")[1]]
    rust.ok("gflowd", "down")
    home = tmp_path / "rust-home"
    data = home / ".local" / "share" / "gflow"
    data.mkdir(parents=True)
    (data / "state.msgpack").write_bytes((rust.data_dir / "state.msgpack").read_bytes())
    port = free_port()
    env = {**rust.env, "HOME": str(home), "GFLOW_DAEMON_PORT": str(port)}
    log = tmp_path / "gflowd-0.4.13.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen([str(bin_dir / "gflowd")], env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def listed():
            res = subprocess.run([str(bin_dir / "gqueue"), "-a", "-u", "all"], env=env,
                                 capture_output=True, text=True, timeout=10)
            return res.stdout if res.returncode == 0 and "JOBID" in res.stdout else None
        try:
            out = ANSI.sub("", wait_for(listed, timeout=40, what="0.4.13 gflowd to answer"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n0.4.13 daemon output:\n{log.read_text()[-2000:]}")
        ids = [line.split()[0] for line in out.splitlines()[1:]]
        assert ids == ours
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    rust.start()
