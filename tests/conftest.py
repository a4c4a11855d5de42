"""Shared fixtures: a real gflowd in a temp HOME on a free port, and helpers to drive it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def pytest_configure(config):
    # In CI every skip must be on tests/skips.py's allow-list (issue 24).
    from skips import SkipGate, strict_skips
    config.pluginmanager.register(SkipGate(strict_skips()), "gflow-skip-gate")


def tool_path(name: str) -> str:
    """The installed console script if there is one, else the checkout's shim."""
    installed = VENV_BIN / name
    return str(installed) if installed.exists() else str(REPO / "bin" / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def processes_with_home(home: str) -> list:
    import psutil
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid == os.getpid():
                continue
            if proc.environ().get("HOME") == home:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


class Daemon:
    """One gflowd and its clients, isolated in `home`; `stop()` leaves no process behind."""

    def __init__(self, home: Path, *, fake_gpus: str | None = None, extra_env=None):
        self.home = home
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GFLOW_", "XDG_", "RUST_LOG", "CONDA_DEFAULT_ENV"))}
        env.update(HOME=str(home), USER="tester", GFLOW_DAEMON_HOST="127.0.0.1",
                   GFLOW_DAEMON_PORT=str(self.port), PYTHONUNBUFFERED="1",
                   # Tests name made-up owners ("tester", "alice"), which only the
                   # lab-account mode allows; tests/integration/test_shared_box.py runs
                   # the default mode with real throwaway accounts.
                   GFLOW_RUN_AS="daemon")
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        if fake_gpus is not None:
            env["GFLOW_FAKE_GPUS"] = fake_gpus
        env.update(extra_env or {})
        self.env = env
        self.data_dir = home / ".local" / "share" / "gflow"
        self.logs = self.data_dir / "logs"

    def run(self, tool: str, *args, input: str | None = None, timeout: float = 60,
            cwd=None, env=None) -> subprocess.CompletedProcess:
        return subprocess.run([tool_path(tool), *map(str, args)], env=env or self.env,
                              input=input, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.home)

    def ok(self, tool: str, *args, **kw) -> str:
        res = self.run(tool, *args, **kw)
        assert res.returncode == 0, (f"{tool} {' '.join(map(str, args))} -> {res.returncode}\n"
                                     f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res.stdout

    def start(self, *args) -> None:
        self.ok("gflowd", "up", *args)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def http(self, method: str, path: str, body=None, raw: bytes | None = None,
             headers=None, timeout: float = 30):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url(path), data=data, method=method)
        if body is not None:
            req.add_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
                status = resp.status
                ctype = resp.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            payload, status = exc.read(), exc.code
            ctype = exc.headers.get("content-type", "")
        if "json" in ctype and payload:
            return status, json.loads(payload)
        return status, payload.decode()

    def job(self, job_id: int) -> dict:
        status, body = self.http("GET", f"/jobs/{job_id}")
        assert status == 200, (status, body)
        return body

    def wait_state(self, job_id: int, states, timeout: float = 20.0) -> dict:
        if isinstance(states, str):
            states = (states,)
        return wait_for(lambda: (lambda j: j if j["state"] in states else None)(self.job(job_id)),
                        timeout=timeout, what=f"job {job_id} in {states}")

    def master_pid(self) -> int | None:
        try:
            with open(self.data_dir / "gflowd.lock") as f:
                return json.loads(f.read() or "{}").get("pid")
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        try:
            self.run("gflowd", "down", timeout=90)
        except subprocess.TimeoutExpired:
            pass
        self.kill_all()

    def daemon_and_job_pids(self) -> set[int]:
        """Every process this daemon may have left: the master's tree (setproctitle
        blanks our processes' environ, so HOME cannot find them), every monitor and job
        named in a pid file, and anything else whose HOME is ours."""
        import psutil
        pids: set[int] = set()
        master = self.master_pid()
        if master:
            try:
                root = psutil.Process(master)
                pids.add(root.pid)
                pids.update(c.pid for c in root.children(recursive=True))
            except psutil.Error:
                pass
        for pidfile in self.logs.glob("*.pid"):
            try:
                info = json.loads(pidfile.read_text())
            except (OSError, ValueError):
                continue
            for key, started in (("monitor_pid", "monitor_start"), ("job_pid", "job_start")):
                if not info.get(key):
                    continue
                try:
                    proc = psutil.Process(info[key])
                    # A pid from an old file may belong to someone else by now.
                    if info.get(started) is None or abs(proc.create_time() - info[started]) > 1:
                        continue
                    pids.add(proc.pid)
                    pids.update(c.pid for c in proc.children(recursive=True))
                except psutil.Error:
                    pass
        pids.update(p.pid for p in processes_with_home(str(self.home)))
        pids.discard(os.getpid())
        return pids

    def kill_all(self) -> None:
        import psutil
        for pid in self.daemon_and_job_pids():
            try:
                proc = psutil.Process(pid)
                if proc.pid == os.getpid() or proc.pid in [p.pid for p in
                                                          psutil.Process().parents()]:
                    continue
            except psutil.Error:
                continue
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                proc.kill()
            except psutil.Error:
                pass


@pytest.fixture
def daemon_factory(tmp_path):
    made: list[Daemon] = []

    def make(**kw) -> Daemon:
        home = tmp_path / f"home{len(made)}"
        home.mkdir()
        d = Daemon(home, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    d = daemon_factory(fake_gpus="2")
    d.start()
    return d
