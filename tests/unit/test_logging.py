"""Logging: level names and GFLOW_LOG/RUST_LOG specs, -v/-q steps, size rotation, the
reopening file handler (stderr follows it), and client logging on stderr."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from gflow import logutil
from gflow.logutil import TRACE


@pytest.mark.parametrize("spec,level", [
    ("debug", logging.DEBUG), ("INFO", logging.INFO), ("warn", logging.WARNING),
    ("warning", logging.WARNING), ("error", logging.ERROR), ("trace", TRACE),
    ("off", logging.CRITICAL + 10),
    ("gflow=debug", logging.DEBUG), ("warn,gflow=trace", TRACE), ("gflow=trace,warn", TRACE),
    ("hyper=debug", None), ("hyper=debug,info", logging.INFO), ("gflow::client=debug", logging.DEBUG),
    ("debug/foo", logging.DEBUG), ("", None), ("  ", None), ("loud", None), (None, None),
])
def test_parse_level_spec(spec, level):
    assert logutil.parse_level_spec(spec) == level


def test_env_level_prefers_gflow_log():
    assert logutil.env_level({"GFLOW_LOG": "debug", "RUST_LOG": "error"}) == logging.DEBUG
    assert logutil.env_level({"RUST_LOG": "error"}) == logging.ERROR
    assert logutil.env_level({"RUST_LOG": "error"}, rust_fallback=False) is None
    assert logutil.env_level({"GFLOW_LOG": "nonsense", "RUST_LOG": "warn"}) == logging.WARNING
    assert logutil.env_level({}) is None


def test_verbosity_steps():
    assert logutil.shift(logging.INFO, 1, 0) == logging.DEBUG
    assert logutil.shift(logging.INFO, 2, 0) == TRACE
    assert logutil.shift(logging.INFO, 9, 0) == TRACE
    assert logutil.shift(logging.INFO, 0, 1) == logging.WARNING
    assert logutil.shift(logging.INFO, 0, 2) == logging.ERROR
    assert logutil.shift(logging.INFO, 0, 9) == logging.CRITICAL
    assert logutil.shift(logging.INFO, 2, 2) == logging.INFO


def test_daemon_level_precedence():
    assert logutil.daemon_level(None, env={}) == logging.INFO
    assert logutil.daemon_level("warn", env={}) == logging.WARNING
    assert logutil.daemon_level("warn", 1, 0, env={}) == logging.INFO
    assert logutil.daemon_level("warn", env={"GFLOW_LOG": "debug"}) == logging.DEBUG
    assert logutil.daemon_level("warn", 0, 1, env={"GFLOW_LOG": "debug"}) == logging.INFO
    # RUST_LOG is often set for other programs: the daemon ignores it.
    assert logutil.daemon_level("info", env={"RUST_LOG": "trace"}) == logging.INFO


def test_rotate(tmp_path):
    log = tmp_path / "gflowd.log"
    assert logutil.rotate(log, 10, 2) is False                  # no file
    log.write_text("x" * 5)
    assert logutil.rotate(log, 10, 2) is False                  # small enough
    assert logutil.rotate(log, 0, 2) is False                   # 0: never
    for n in range(4):
        log.write_text(f"gen{n}" * 5)
        assert logutil.rotate(log, 10, 2) is True
        assert not log.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gflowd.log.1", "gflowd.log.2"]
    assert (tmp_path / "gflowd.log.1").read_text().startswith("gen3")
    assert (tmp_path / "gflowd.log.2").read_text().startswith("gen2")
    log.write_text("y" * 20)
    assert logutil.rotate(log, 10, 0) is True                   # no backups: dropped
    assert not log.exists() and (tmp_path / "gflowd.log.1").read_text().startswith("gen3")


def test_log_file_reopens_after_rotation(tmp_path):
    path = tmp_path / "gflowd.log"
    handler = logutil.LogFile(path)
    logger = logging.getLogger("test.rotation")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("one")
        os.rename(path, f"{path}.1")                 # what the master does
        logger.info("two")
        assert (tmp_path / "gflowd.log.1").read_text() == "one\n"
        assert path.read_text() == "two\n"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    finally:
        logger.removeHandler(handler)
        handler.close()


FOLLOW = r"""
import logging, os, sys
from gflow import logutil
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
os.dup2(fd, 1); os.dup2(fd, 2)
logutil.configure_daemon_logging(logging.INFO, path, process_name="worker")
logging.getLogger("t").info("before")
print("stray before", file=sys.stderr, flush=True)
os.rename(path, path + ".1")
logging.getLogger("t").info("after")
print("stray after", file=sys.stderr, flush=True)
os.write(2, b"raw fd 2\n")
"""


def test_stderr_follows_the_log_file(tmp_path):
    """A daemon started by `gflowd up` has the log as stderr: after a rotation the stray
    output (tracebacks, faulthandler dumps) goes to the new file, not the renamed one."""
    path = tmp_path / "gflowd.log"
    subprocess.run([sys.executable, "-c", FOLLOW, str(path)], check=True, timeout=60,
                   cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": os.getcwd()})
    old = (tmp_path / "gflowd.log.1").read_text()
    new = path.read_text()
    assert "INFO worker t: before" in old and "stray before" in old
    assert "INFO worker t: after" in new and "stray after" in new and "raw fd 2" in new
    assert "after" not in old and "raw" not in old


def test_separate_stderr_gets_records_too(tmp_path):
    """--foreground --log-file PATH on a terminal: records go to both."""
    path = tmp_path / "gflowd.log"
    code = ("import logging, sys; from gflow import logutil; "
            "logutil.configure_daemon_logging(logging.WARNING, sys.argv[1]); "
            "logging.getLogger('t').warning('hello'); logging.getLogger('t').info('quiet')")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert "WARNING MainProcess t: hello" in res.stderr and "quiet" not in res.stderr
    assert "hello" in path.read_text() and "quiet" not in path.read_text()


# --- clients ------------------------------------------------------------------------------------

def run_client(tool: str, env_extra: dict, *args) -> subprocess.CompletedProcess:
    import socket
    with socket.socket() as s:                    # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GFLOW_", "XDG_")) and k != "RUST_LOG"}
    env.update(GFLOW_DAEMON_HOST="127.0.0.1", GFLOW_DAEMON_PORT=str(port),
               PYTHONPATH=os.getcwd(), **env_extra)
    return subprocess.run([sys.executable, "-m", f"gflow.cli.{tool}", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_client_quiet_by_default():
    res = run_client("gqueue", {})
    assert res.returncode == 1
    assert res.stderr.startswith("Could not connect to gflowd server.")


@pytest.mark.parametrize("env", [{"GFLOW_LOG": "debug"}, {"RUST_LOG": "debug"},
                                 {"RUST_LOG": "error", "GFLOW_LOG": "debug"},
                                 {"RUST_LOG": "gflow=debug,hyper=warn"}])
def test_client_debug_logs_requests(env):
    res = run_client("gqueue", env)
    assert res.returncode == 1
    first = res.stderr.splitlines()[0]
    assert " DEBUG gflow.client: GET http://127.0.0.1:" in first
    assert "/jobs?state=Queued%2CHold%2CRunning" in first and "failed after" in first


@pytest.mark.parametrize("env", [{"GFLOW_LOG": "info"}, {"GFLOW_LOG": "info", "RUST_LOG": "debug"},
                                 {"GFLOW_LOG": "gibberish"}])
def test_client_info_and_bad_specs_stay_quiet(env):
    res = run_client("ginfo", env)
    assert "DEBUG" not in res.stderr
