"""gflow 0.4.13's clients and daemon with issue 17's additions in the jobs and the state."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import Daemon, free_port, wait_for
from test_runqd_clients import ANSI, runqd_bin

pytestmark = pytest.mark.compat


def test_0413_reads_jobs_and_state_with_our_new_fields(tmp_path):
    bin_dir = runqd_bin()
    d = Daemon(tmp_path / "home", fake_gpus="1")
    d.home.mkdir()
    d.start()
    try:
        d.ok("gbatch", "--max-retries", "1", "bash", "-c", "exit 4")            # 1: 2 attempts
        d.ok("gbatch", "--depends-on", "afterany:1", "echo", "after")            # 2
        d.ok("gbatch", "--begin", "now+2h", "echo", "later")                     # 3
        d.ok("gctl", "quota", "set", "--default-user", "--max-queued-jobs", "50")
        d.wait_state(2, "Finished", timeout=30)
        assert len(d.job(1)["attempts"]) == 1

        def rust(tool, *args, env=None):
            res = subprocess.run([str(bin_dir / tool), *map(str, args)], env=env or d.env,
                                 cwd=d.home, capture_output=True, text=True, timeout=30)
            assert res.returncode == 0, (tool, args, res.stdout, res.stderr)
            return ANSI.sub("", res.stdout)
        table = rust("gqueue", "-a").splitlines()
        assert [line.split()[0] for line in table[1:]] == ["1", "2", "3"]
        assert "(Resources)" in table[3]          # 0.4.13's reason for a delayed job
        assert "DependsOn=1" in rust("gjob", "show", "2")
        d.ok("gflowd", "down")
        home = tmp_path / "rust-home"
        data = home / ".local" / "share" / "gflow"
        data.mkdir(parents=True)
        (data / "state.msgpack").write_bytes((d.data_dir / "state.msgpack").read_bytes())
        env = {**d.env, "HOME": str(home), "GFLOW_DAEMON_PORT": str(free_port())}
        with open(tmp_path / "gflowd.log", "w") as log_file:
            proc = subprocess.Popen([str(bin_dir / "gflowd")], env=env, stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def listed():
                res = subprocess.run([str(bin_dir / "gqueue"), "-a", "-u", "all"], env=env,
                                     capture_output=True, text=True, timeout=10)
                return res.stdout if res.returncode == 0 and "JOBID" in res.stdout else None
            out = ANSI.sub("", wait_for(listed, timeout=40, what="0.4.13 gflowd to answer"))
            assert [line.split()[0] for line in out.splitlines()[1:]] == ["1", "2", "3"]
        finally:
            os.killpg(proc.pid, 9)
            proc.wait()
    finally:
        d.stop()
