"""gflow-shell without a terminal: commands as arguments, commands piped on stdin, exit
statuses, the start-up script, the [shell] config section, --daemon and --config."""

from __future__ import annotations

import sys

from conftest import free_port


def test_commands_as_arguments_then_quit(daemon):
    out = daemon.ok("gflow-shell", "gbatch --name one true", "wait 1", "gqueue -a", "quit")
    assert "Submitted batch job 1 (one)" in out
    assert "Job 1 is Finished (exit code 0)." in out
    assert " 1       one " in out


def test_commands_piped_on_stdin(daemon):
    res = daemon.run("gflow-shell", input="gbatch --name piped true\nwait @\nq -a\n")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "Submitted batch job 1 (piped)"
    assert lines[1] == "Job 1 is Finished (exit code 0)."
    assert "piped" in lines[3] and "CD" in lines[3]
    assert res.stderr == ""


def test_exit_status_is_the_last_failure_and_errors_do_not_stop(daemon):
    res = daemon.run("gflow-shell", input="gcancel 99\nbogus\nq\n")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "Error: Job 99 not found",
        "Unknown command 'bogus'. Type 'help' for the list of commands."]
    assert "No jobs found." in res.stdout            # it went on after the errors
    res = daemon.run("gflow-shell", "gqueue --nope", "status", "quit")
    assert res.returncode == 2                       # a usage error
    assert ": ok" in res.stdout


def test_exit_on_error_stops_at_the_first_failure(daemon):
    res = daemon.run("gflow-shell", "-e", input="gcancel 99\nstatus\n")
    assert res.returncode == 1
    assert "Stopping: the last command failed (exit status 1)." in res.stderr
    assert "ok" not in res.stdout


def test_shellrc_and_the_shell_config_section(daemon):
    config_dir = daemon.home / ".config" / "gflow"
    config_dir.mkdir(parents=True)
    (config_dir / "gflow.toml").write_text(
        '[shell]\nprompt = "lab {host}> "\nrefresh_secs = 0.1\n'
        '[shell.aliases]\nqa = "gqueue -a -f JOBID,NAME"\n'
        '[daemon]\nhost = "127.0.0.1"\n')
    (config_dir / "shellrc").write_text("# start-up commands\ngbatch --name fromrc true\n"
                                        "alias create w1 wait 1\n")
    res = daemon.run("gflow-shell", "w1", "qa", "help watch", "quit")
    assert res.returncode == 0, res.stderr
    assert "Submitted batch job 1 (fromrc)" in res.stdout
    assert "Job 1 is Finished" in res.stdout
    assert " 1       fromrc" in res.stdout
    assert "default 0.1" in res.stdout               # refresh_secs -> watch's default
    res = daemon.run("gflow-shell", "--no-rc", input="qa\nhelp\n")
    assert "fromrc" in res.stdout and "Submitted" not in res.stdout
    assert "Aliases:" in res.stdout and "qa" in res.stdout
    # the prompt shows in an interactive-like pipe only with echo; check it via `set`
    res = daemon.run("gflow-shell", "--no-rc", input="set echo true\nstatus\n")
    assert "lab 127.0.0.1> status" in res.stdout


def test_daemon_option_and_config_option(daemon, tmp_path):
    port = daemon.port
    env = dict(daemon.env, GFLOW_DAEMON_PORT=str(free_port()))   # the wrong daemon
    res = daemon.run("gflow-shell", "status", "quit", env=env)
    assert res.returncode == 1 and "Cannot reach gflowd" in res.stderr
    res = daemon.run("gflow-shell", "--daemon", f"127.0.0.1:{port}", "status", "q", "quit",
                     env=env)
    assert res.returncode == 0, res.stderr
    assert f"gflowd at 127.0.0.1:{port}: ok" in res.stdout
    assert "No jobs found." in res.stdout            # the tools followed --daemon
    config = tmp_path / "other.toml"
    config.write_text(f'[daemon]\nhost = "127.0.0.1"\nport = {port}\n')
    res = daemon.run("gflow-shell", "--config", config, "use", "status", "quit", env=env)
    assert res.returncode == 0, res.stderr
    assert f"127.0.0.1:{port}" in res.stdout
    res = daemon.run("gflow-shell", "--daemon", "nowhere:port", "quit")
    assert res.returncode == 2 and "invalid port" in res.stderr


def test_use_switches_the_tools_and_back(daemon_factory):
    first, second = daemon_factory(fake_gpus="1"), daemon_factory(fake_gpus="2")
    first.start()
    second.start()
    second.ok("gbatch", "--name", "on-second", "true")
    res = first.run("gflow-shell", input=(
        f"use 127.0.0.1:{second.port}\nq -a -f NAME\nstatus\n"
        f"use default\nq -a -f NAME\nstatus\n"))
    assert res.returncode == 0, res.stderr
    blocks = res.stdout.split("Using gflowd at ")
    assert "on-second" in blocks[1] and "GPUs: 2" in blocks[1]
    assert "on-second" not in blocks[2] and "GPUs: 1" in blocks[2]


def test_version_and_help():
    import subprocess
    from conftest import tool_path
    out = subprocess.run([tool_path("gflow-shell"), "--version"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("gflow-shell ")
    out = subprocess.run([tool_path("gflow-shell"), "--help"], capture_output=True,
                         text=True, timeout=30)
    assert "--transcript" in out.stdout and "shellrc" in out.stdout


def test_the_shell_stays_in_the_client_layer():
    """DESIGN.md §3: importing and running the shell pulls in no server-side module."""
    import subprocess
    code = ("import sys, gflow.shell, gflow.shell.app, gflow.shell.commands, "
            "gflow.shell.complete, gflow.shell.streams, gflow.shell.transcript\n"
            "from gflow.shell.app import GflowShell\n"
            "from gflow.shell.commands import TOOLS\n"
            "import io\n"
            "sh = GflowShell(stdin=io.StringIO(), stdout=io.StringIO())\n"
            "for t in TOOLS: sh.tool_parser(t)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'waitress', 'psutil', 'apscheduler', 'werkzeug') or m in "
            "('gflow.store', 'gflow.gpu', 'gflow.notify', 'gflow.reservations') or "
            "m.startswith(('gflow.scheduler', 'gflow.launcher', 'gflow.api', 'gflow.daemon'))]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_completion_values_come_from_the_daemon(daemon):
    """The live values behind tab completion, read from a real daemon's API."""
    import io
    from dataclasses import replace

    from gflow.config import Config
    from gflow.shell.app import GflowShell
    from gflow.shell.complete import GPU, HELD_JOB, JOB, QUEUED_JOB, RESERVATION, USER

    daemon.ok("gbatch", "--name", "done", "true")
    daemon.wait_state(1, "Finished")
    daemon.ok("gbatch", "--name", "big", "--gpus", "3", "sleep", "100")
    daemon.ok("gbatch", "--name", "held", "--gpus", "3", "sleep", "100")
    daemon.ok("gjob", "hold", "3")
    status, _ = daemon.http("POST", "/reservations", {
        "user": "alice", "start_time": {"secs_since_epoch": 4102480800, "nanos_since_epoch": 0},
        "duration_secs": 3600, "gpu_indices": [1]})
    assert status in (200, 201)
    config = Config()
    config = replace(config, daemon=replace(config.daemon, host="127.0.0.1", port=daemon.port))
    shell = GflowShell(config=config, stdin=io.StringIO(), stdout=io.StringIO(),
                       interactive=False)

    def values(kind):
        return {c.text: c.meta for c in shell._lookup(kind)}

    assert values(JOB) == {"2": "Queued big", "3": "Hold held"}
    assert list(values(QUEUED_JOB)) == ["2"] and list(values(HELD_JOB)) == ["3"]
    assert values(GPU) == {"0": "available", "1": "available"}
    assert values(RESERVATION) == {"1": "alice Pending GPU 1"}
    assert set(values(USER)) == {"tester", "alice"}
    daemon.ok("gctl", "set-gpus", "0")
    shell._cache.clear()
    assert values(GPU) == {"0": "available", "1": "available, restricted"}
