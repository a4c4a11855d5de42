"""Start, drive and stop one gflowd: ours (this checkout) or gflow 0.4.13 (PyPI runqd).

Each daemon lives in its own temp HOME on a free 127.0.0.1 port and never touches the
real HOME. `stop()` leaves no process behind: every process whose environment names that
HOME is killed at the end, and 0.4.13's private tmux server (TMUX_TMPDIR inside the
HOME) is killed with it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

FINAL_STATES = {"Finished", "Failed", "Cancelled", "Timeout"}
USER = "bench"


class BenchError(RuntimeError):
    """A scenario could not run (a daemon did not start, a job failed, a timeout)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_epoch(stamp) -> float | None:
    """0.4.13's SystemTime encoding {"secs_since_epoch", "nanos_since_epoch"} -> float."""
    if not stamp:
        return None
    return stamp["secs_since_epoch"] + stamp["nanos_since_epoch"] / 1e9


def job_body(command: str = "true", gpus: int = 0, **extra) -> dict:
    """A Job object the way 0.4.13's gbatch sends it (all 30 keys)."""
    body = {"id": 0, "script": None, "command": command, "gpus": gpus, "conda_env": None,
            "run_dir": "/tmp", "priority": 10, "depends_on": None, "depends_on_ids": [],
            "dependency_mode": None, "auto_cancel_on_dependency_failure": True,
            "task_id": None, "gpu_sharing_mode": "Exclusive", "gpu_memory_limit_mb": None,
            "time_limit": None, "memory_limit_mb": None, "submitted_by": USER,
            "redone_from": None, "auto_close_tmux": False, "parameters": {},
            "group_id": None, "max_concurrent": None, "run_name": None, "project": None,
            "state": "Queued", "gpu_ids": None, "submitted_at": None, "started_at": None,
            "finished_at": None, "reason": None}
    body.update(extra)
    return body


def processes_with_home(home: str) -> list[int]:
    """Pids of every process (but this one) whose environment has HOME=home."""
    needle = f"HOME={home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found.append(int(entry))
    return found


def descendants(roots) -> list[int]:
    """The roots that still exist and all their descendants (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    alive = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        alive.add(int(entry))
    found, todo = [], [r for r in roots if r in alive]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (kB), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def alive(pid: int) -> bool:
    """Whether pid runs: a zombie counts as gone (nobody may reap a daemonized master
    here, and it holds nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pids, timeout: float) -> list[int]:
    """Poll (1 ms) until none of pids is alive; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while True:
        left = [p for p in left if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.001)


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class Daemon:
    """Common parts; subclasses know how to start, stop and restart their gflowd."""

    side = "?"

    def __init__(self, bin_dir: Path, workdir: Path):
        self.bin_dir = Path(bin_dir)
        self.home = Path(tempfile.mkdtemp(prefix=f"gflow-bench-{self.side}-", dir=workdir))
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GFLOW_", "XDG_", "RUST_LOG", "CONDA_", "TMUX",
                                    "VIRTUAL_ENV", "PYTHON"))}
        env.update(HOME=str(self.home), USER=USER, LOGNAME=USER,
                   GFLOW_DAEMON_HOST="127.0.0.1", GFLOW_DAEMON_PORT=str(self.port))
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        self.env = env
        self.data_dir = self.home / ".local" / "share" / "gflow"
        self._conn: http.client.HTTPConnection | None = None

    # -- processes -------------------------------------------------------------------
    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def cli(self, name: str, *args, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess:
        res = subprocess.run([self.tool(name), *map(str, args)], env=self.env, cwd=self.home,
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise BenchError(f"{self.side}: {name} {' '.join(map(str, args))} -> rc "
                             f"{res.returncode}: {(res.stderr or res.stdout).strip()[-300:]}")
        return res

    def root_pids(self) -> list[int]:
        return []

    def pids(self) -> list[int]:
        """The daemon's process tree plus every process with our HOME in its environment
        (our workers rename themselves with setproctitle, which blanks their environ)."""
        found = descendants(self.root_pids())
        return found + [p for p in processes_with_home(str(self.home)) if p not in found]

    def pss_mb(self) -> tuple[float, list[str]]:
        """Sum of PSS over every process of this daemon, and what was counted."""
        total = 0
        counted = []
        for pid in self.pids():
            kb = pss_kb(pid)
            total += kb
            counted.append(f"{pid} {process_name(pid)[:40]} {kb / 1024:.1f} MB")
        return total / 1024, counted

    def state_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.state_files() if p.exists())

    def state_files(self) -> list[Path]:
        return [self.data_dir / "state.msgpack"]

    # -- HTTP ------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        return self._conn

    def request(self, method: str, path: str, body=None, raw: bytes | None = None
                ) -> tuple[int, bytes]:
        """One request on a keep-alive connection (reconnects once if it was dropped)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"content-type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.close_http()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get_json(self, path: str):
        status, payload = self.request("GET", path)
        if status != 200:
            raise BenchError(f"{self.side}: GET {path} -> {status} {payload[:200]!r}")
        return json.loads(payload)

    def submit(self, body: dict) -> int:
        status, payload = self.request("POST", "/jobs", body=body)
        if status != 201:
            raise BenchError(f"{self.side}: POST /jobs -> {status} {payload[:200]!r}")
        return json.loads(payload)["id"]

    def describe_jobs(self, ids) -> str:
        """The jobs that did not finish, grouped: "12 Failed (reason), 13-20 Queued"."""
        try:
            jobs = [j for j in self.get_json("/jobs") if j["id"] in set(ids)]
        except (BenchError, OSError, ValueError, http.client.HTTPException) as exc:
            return f"cannot list jobs: {exc}"
        groups: list[list] = []
        for j in jobs:
            if j["state"] == "Finished":
                continue
            key = (j["state"], json.dumps(j.get("reason")))
            if groups and groups[-1][0] == key and groups[-1][2] == j["id"] - 1:
                groups[-1][2] = j["id"]
            else:
                groups.append([key, j["id"], j["id"]])
        parts = []
        for (state, reason), first, last in groups:
            span = str(first) if first == last else f"{first}-{last}"
            parts.append(f"{span} {state}" + (f" ({reason})" if reason != "null" else ""))
        return ", ".join(parts) or "all finished"

    def close_http(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return s.recv(64).split(b" ", 2)[1] == b"200"
        except (OSError, IndexError):
            return False

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            time.sleep(0.005)
        raise BenchError(f"{self.side}: gflowd not healthy on port {self.port} after {timeout}s "
                         f"(home {self.home})")

    def wait_jobs_final(self, ids, timeout: float, interval: float = 0.05) -> list[dict]:
        """Poll until every job in ids is final; returns their records."""
        ids = list(ids)
        deadline = time.monotonic() + timeout
        last = ids[-1]
        while True:
            job = self.get_json(f"/jobs/{last}")
            if job["state"] in FINAL_STATES:
                jobs = [self.get_json(f"/jobs/{i}") for i in ids] if len(ids) < 50 else \
                    [j for j in self.get_json("/jobs") if j["id"] in set(ids)]
                pending = [j["id"] for j in jobs if j["state"] not in FINAL_STATES]
                if not pending:
                    return jobs
                last = pending[-1]
            if time.monotonic() > deadline:
                raise BenchError(f"{self.side}: jobs not final after {timeout}s: "
                                 f"{self.describe_jobs(ids)}")
            time.sleep(interval)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def kill_all(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def cleanup(self, keep: bool = False) -> None:
        self.close_http()
        try:
            self.stop()
        finally:
            self.kill_all()
            if not keep:
                shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup(keep=getattr(self, "keep", False))


class Ours(Daemon):
    """This checkout's gflowd: `gflowd up` / `gflowd down`, 4 simulated GPUs."""

    side = "ours"

    def __init__(self, bin_dir: Path, workdir: Path):
        super().__init__(bin_dir, workdir)
        self.env["GFLOW_FAKE_GPUS"] = "4"
        # 0.4.13's model: every job runs as the daemon's account and `submitted_by` is a
        # label. Without it a daemon run by root refuses jobs of USER=bench, which has no
        # account on the machine.
        self.env["GFLOW_RUN_AS"] = "daemon"

    def state_files(self) -> list[Path]:
        # state.msgpack.jobs: the load cache beside the snapshot (gflow/store/fastload.py)
        return [self.data_dir / "state.msgpack", self.data_dir / "state.msgpack.jobs",
                self.data_dir / "state.wal"]

    def root_pids(self) -> list[int]:
        try:
            with open(self.data_dir / "gflowd.lock") as f:
                pid = json.loads(f.read() or "{}").get("pid")
        except (OSError, ValueError):
            return []
        return [pid] if pid else []

    # `gflowd up` stops waiting after its own 30 s (gflow/cli/gflowd.py START_TIMEOUT_SECS)
    # while the daemon it started goes on loading; with ~1M jobs that takes longer.
    UP_GAVE_UP = "did not become healthy within"
    up_timeout = 600.0                  # how long the harness itself waits for /health

    def up(self) -> None:
        """gflowd up, then GET /health until 200. When `gflowd up` gives up waiting,
        keep waiting (counted in up_gave_up); any other failure of it is an error."""
        res = self.cli("gflowd", "up", check=False, timeout=self.up_timeout)
        if res.returncode != 0:
            if self.UP_GAVE_UP not in (res.stderr + res.stdout):
                raise BenchError(f"ours: gflowd up -> rc {res.returncode}: "
                                 f"{(res.stderr or res.stdout).strip()[-300:]}")
            self.up_gave_up = getattr(self, "up_gave_up", 0) + 1
        self.wait_healthy(self.up_timeout)

    def start(self) -> None:
        self.up()

    def stop(self) -> None:
        self.close_http()
        try:
            self.cli("gflowd", "down", check=False, timeout=300)
        except subprocess.TimeoutExpired:
            pass

    def restart(self) -> None:
        self.stop()
        self.up()


class Theirs(Daemon):
    """gflow 0.4.13: its gflowd runs in the foreground as a child (it is the server itself;
    `gflowd up` would only type that command into a tmux session). Jobs still run the
    0.4.13 way, in tmux sessions, on a private tmux server (TMUX_TMPDIR in the temp HOME);
    each job reports its end by running `gcancel --finish <id>` from a login shell, so
    ~/.profile puts the 0.4.13 bin dir first on PATH (/etc/profile resets PATH)."""

    side = "theirs"

    def __init__(self, bin_dir: Path, workdir: Path):
        super().__init__(bin_dir, workdir)
        tmux_dir = self.home / "tmux"
        tmux_dir.mkdir()
        self.env["TMUX_TMPDIR"] = str(tmux_dir)
        self.tmux_socket = tmux_dir / f"tmux-{os.getuid()}" / "default"
        (self.home / ".profile").write_text(f'export PATH="{self.bin_dir}:$PATH"\n')
        self.proc: subprocess.Popen | None = None
        # No -v: errors only (`gflowd up` would pass -vvv, debug logging to a file)
        self.daemon_args: list[str] = []

    def root_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def start(self) -> None:
        log = open(self.home / "gflowd.out", "ab")
        argv = [self.tool("gflowd"), *self.daemon_args]
        self.proc = subprocess.Popen(argv, env=self.env, cwd=self.home,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        try:
            self.wait_healthy()
            # 0.4.13 binds with SO_REUSEPORT: make sure it is ours that answers.
            pid = self.get_json("/health").get("pid")
            if pid != self.proc.pid:
                raise BenchError(f"theirs: port {self.port} is answered by pid {pid}, "
                                 f"not by the gflowd started here ({self.proc.pid})")
        except BenchError:
            if self.proc.poll() is not None:
                tail = (self.home / "gflowd.out").read_text(errors="replace")[-300:]
                raise BenchError(f"theirs: gflowd exited with {self.proc.returncode}: {tail}")
            raise

    def stop_daemon(self) -> None:
        """SIGTERM: 0.4.13 saves its state on SIGTERM, then exits."""
        self.close_http()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self.stop_daemon()
        if self.tmux_socket.exists():
            subprocess.run(["tmux", "-S", str(self.tmux_socket), "kill-server"],
                           capture_output=True, timeout=30)

    def restart(self) -> None:
        self.stop_daemon()
        self.start()
