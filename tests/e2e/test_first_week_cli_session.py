"""Issue 23 through the installed commands against real daemons: gcancel over a dependency
chain, `gflowd status` and `up` telling the truth (exit codes, the real port, the winner
of a race, 0 GPUs), close-sessions and attach pointing to `gjob log`, and the README's
quick start run as written."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest

from conftest import REPO, Daemon, free_port


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    home = tmp_path_factory.mktemp("week")
    (home / "work").mkdir()
    daemon = Daemon(home, fake_gpus="2")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


def submit(d: Daemon, *args) -> int:
    out = d.ok("gbatch", *args, cwd=d.home / "work")
    m = re.fullmatch(r"Submitted batch job (\d+) \((.*)\)\n", out)
    assert m, out
    return int(m.group(1))


def chain(d: Daemon) -> tuple[int, int, int]:
    p = submit(d, "sleep", "60")
    c = submit(d, "-d", str(p), "true")
    g = submit(d, "-d", str(c), "true")
    d.wait_state(p, "Running")
    return p, c, g


def test_gcancel_over_a_dependency_chain(d):
    p, c, g = chain(d)
    res = d.run("gcancel", f"{p}-{g}")
    assert (res.returncode, res.stderr) == (0, ""), res
    assert res.stdout.splitlines() == [
        f"Job {p} cancelled.",
        f"Job {c} cancelled (its dependency, job {p}, was cancelled).",
        f"Job {g} cancelled (its dependency, job {c}, was cancelled)."]
    p, c, g = chain(d)
    res = d.run("gcancel", f"{c},{p}")
    assert (res.returncode, res.stderr) == (0, ""), res
    assert res.stdout.splitlines() == [
        f"Job {p} cancelled.", f"Job {c} cancelled (its dependency, job {p}, was cancelled)."]
    assert d.job(g)["state"] == "Cancelled"
    # a job that ended before this command is still an error (0.4.13: "cancelled", rc 0)
    res = d.run("gcancel", str(g))
    assert res.returncode == 1
    assert res.stderr.startswith(f"Error: Job {g} is Cancelled: cannot cancel it")


def test_gcancel_dry_run_shows_the_whole_cascade(d):
    p, c, g = chain(d)
    assert d.ok("gcancel", "--dry-run", str(p)) == (
        f"{p}\tRunning\tok\n{c}\tQueued\tblocked\t{p}\n{g}\tQueued\tblocked\t{c}\n")
    d.ok("gcancel", str(p))


def test_status_finds_the_daemon_where_it_listens(d, tmp_path):
    env = dict(d.env, GFLOW_DAEMON_PORT=str(free_port()))
    res = d.run("gflowd", "status", env=env)
    assert res.returncode == 0, res
    assert res.stdout.splitlines()[0] == "Status: Running"
    assert f"Listening: http://127.0.0.1:{d.port}" in res.stdout
    assert env["GFLOW_DAEMON_PORT"] in res.stderr and str(d.port) in res.stderr
    stopped = Daemon(tmp_path)
    res = stopped.run("gflowd", "status")
    assert res.returncode == 3 and res.stdout.startswith("Status: Not running\n")


def test_close_sessions_and_attach_point_to_the_log(d):
    done = submit(d, "true")
    d.wait_state(done, "Finished")
    res = d.run("gjob", "attach", str(done))
    assert res.returncode == 1 and f"gjob log {done}" in res.stderr
    res = d.run("gjob", "close-sessions", "-j", str(done))
    assert res.returncode == 1 and "gjob log" in res.stderr
    res = d.run("gjob", "close-sessions")
    assert res.returncode == 2 and "no filters" in res.stderr
    res = d.run("gjob", "show", "@")
    assert res.returncode == 0 and res.stdout.startswith(f"Job Details:\n  ID={done}\n")


def test_two_ups_at_once_name_one_pid_and_0_gpus_are_told(tmp_path):
    d = Daemon(tmp_path)           # no GFLOW_FAKE_GPUS: whatever this machine has
    results: list = [None, None]

    def up(n):
        results[n] = d.run("gflowd", "up", timeout=90)

    try:
        threads = [threading.Thread(target=up, args=(n,)) for n in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pid = d.master_pid()
        for res in results:
            assert res.returncode == 0, (res.stdout, res.stderr)
            assert "pid ?" not in res.stdout + res.stderr
            assert f"pid {pid}" in res.stdout, res.stdout
        gpus = d.http("GET", "/health")[1]["gpus"]
        started = [r.stdout for r in results if r.stdout.startswith("gflowd started")]
        assert len(started) == 1
        assert ("runs with 0 GPUs" in started[0]) == (gpus == 0)
    finally:
        d.stop()


def quick_start() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_readme_quick_start_runs_as_written(tmp_path):
    d = Daemon(tmp_path)           # a fresh machine: no daemon, no config, no scripts
    (tmp_path / "work").mkdir()
    script = quick_start()
    assert "train.sh" in script and "GFLOW_FAKE_GPUS=2" in script
    try:
        res = subprocess.run(["bash", "-e", "-c", script], env=d.env, cwd=tmp_path / "work",
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (res.stdout, res.stderr)
        out = res.stdout
        assert "Submitted batch job 1 (hello)\nhi\n" in out
        assert "Submitted batch job 2 (" in out and "Submitted batch job 3 (" in out
        assert "Job 3 cancelled.\n" in out and "Status: Running\n" in out
        assert out.endswith("gflowd stopped.\n")
        assert "0 GPUs" not in out
    finally:
        d.kill_all()
