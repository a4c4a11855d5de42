"""gflow-shell driven through a pseudo-terminal (pexpect): start-up time, tab completion,
Ctrl-C out of `watch`, a daemon that goes away and comes back, persistent history."""

from __future__ import annotations

import time

import pytest

from conftest import tool_path, wait_for

import pexpect  # noqa: E402  (a test extra: an import error must fail, not skip)

PROMPT = "gflow>"          # prompt-toolkit draws the trailing space as a cursor move


def spawn(d, *args, timeout: float = 20):
    env = dict(d.env, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", COLUMNS="160", LINES="40")
    child = pexpect.spawn(tool_path("gflow-shell"), list(args), env=env, cwd=str(d.home),
                          encoding="utf-8", timeout=timeout, dimensions=(40, 160))
    return child


@pytest.fixture
def shells():
    """Spawned shells, closed (killed if need be) at the end of the test."""
    started = []
    yield started
    for child in started:
        if child.isalive():
            child.close(force=True)


def start(shells, d, *args):
    child = spawn(d, *args)
    shells.append(child)
    child.expect(PROMPT)
    return child


def run(child, line: str, *expect: str) -> None:
    child.sendline(line)
    for pattern in expect:
        child.expect(pattern)
    child.expect(PROMPT)


def drawn(text: str) -> str:
    """A regex for `text` drawn on the terminal, not inside an escape sequence (the
    terminal stream is full of ones like ESC[?12l and ESC[?2004h)."""
    import re
    return r"(?<![\[?;\d])" + re.escape(text) + r"(?![\d;lhmABCDGHJK])"


def submit(d, *args) -> int:
    out = d.ok("gbatch", *args)
    return int(out.split("Submitted batch job ")[1].split()[0])


def test_startup_reaches_the_prompt_within_a_second(daemon_factory, shells):
    d = daemon_factory()                      # no daemon needed to reach the prompt
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        child = spawn(d)
        shells.append(child)
        child.expect(PROMPT)
        times.append(time.monotonic() - t0)
        child.sendline("quit")
        child.expect(pexpect.EOF)
    print(f"gflow-shell: time to the first prompt {min(times):.3f}s "
          f"(runs: {', '.join(f'{t:.3f}' for t in times)})")
    assert min(times) < 1.0, times


def test_tab_completes_the_id_of_a_live_job(daemon, shells):
    done = submit(daemon, "--name", "done", "true")
    daemon.wait_state(done, "Finished")
    live = submit(daemon, "--name", "waiting", "--gpus", "3", "sleep", "100")
    daemon.wait_state(live, "Queued")
    child = start(shells, daemon)
    # hold completes queued jobs only (show also offers finished ones, since issue 23):
    # the only live job is completed in place
    child.send("hold \t")
    child.expect(drawn(str(live)))
    child.send("\r")
    child.expect("put on hold")
    child.expect(PROMPT)
    run(child, f"show {live}", f"ID={live}", "Name=waiting|Command=sleep 100")
    # the held job is then what release completes
    child.send("release \t")
    child.expect(drawn(str(live)))
    child.send("\r")
    child.expect(f"Job {live} released")
    child.expect(PROMPT)
    child.sendline("quit")
    child.expect(pexpect.EOF)


def test_ctrl_c_leaves_watch_and_the_shell_goes_on(daemon, shells):
    child = start(shells, daemon)
    child.sendline("watch -n 0.2 q -a")
    child.expect("Every 0.2s: q -a")
    child.expect("Every 0.2s: q -a")          # it refreshes
    child.sendcontrol("c")
    child.expect(PROMPT)
    run(child, "status", "ok", "GPUs: 2")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_lost_connection_is_one_line_and_the_shell_recovers(daemon, shells):
    child = start(shells, daemon)
    run(child, "q", "No jobs found")
    daemon.ok("gflowd", "down")
    child.sendline("q")
    child.expect(r"Lost connection to gflowd at 127\.0\.0\.1:\d+; the next command tries "
                 r"again\.")
    child.expect(PROMPT)
    assert "Hint" not in child.before and "Traceback" not in child.before
    run(child, "status", "Cannot reach gflowd")
    daemon.start()
    run(child, "q", "No jobs found")
    run(child, "status", ": ok")
    child.sendline("quit")
    child.expect(pexpect.EOF)


def test_history_is_kept_in_the_xdg_state_dir(daemon_factory, shells):
    d = daemon_factory()
    history = d.home / ".local" / "state" / "gflow" / "shell_history"
    child = start(shells, d)
    run(child, "help q", "short for: gqueue")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    wait_for(history.exists, timeout=5, what="the history file")
    assert oct(history.parent.stat().st_mode & 0o777) == oct(0o700)
    child = start(shells, d)
    run(child, "history -a", r"help q")       # -a: earlier sessions too
    child.sendline("quit")
    child.expect(pexpect.EOF)
