"""Throwaway accounts for multi-user tests, and a client install they can run.

Only root can create accounts (CI runs as root); elsewhere these tests skip with the
reason. Root's home is private, so the clients run as another account come from a venv
built on the system python in a world-readable temporary directory.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT_TOOLS = ("gbatch", "gqueue", "gjob", "gcancel", "gctl", "ginfo", "gstats")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create throwaway accounts (CI runs as root)")
    for tool in ("useradd", "userdel", "groupadd", "groupdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} is missing: other accounts cannot run root's python")


@dataclass
class Account:
    name: str
    uid: int
    gid: int
    home: Path

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.name, self.gid)


class Accounts:
    """Creates accounts and groups named gft<random>; `remove()` deletes all of them."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self.users: list[str] = []
        self.groups: list[str] = []

    def group(self, label: str) -> str:
        name = f"gft{self.tag}{label}"[:31]
        subprocess.run(["groupadd", name], check=True, capture_output=True)
        self.groups.append(name)
        return name

    def user(self, label: str, *, groups: tuple[str, ...] = ()) -> Account:
        name = f"gft{self.tag}{label}"[:31]
        cmd = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group"]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        subprocess.run(cmd + [name], check=True, capture_output=True)
        self.users.append(name)
        pw = pwd.getpwnam(name)
        return Account(name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir))

    def remove(self) -> None:
        for name in self.users:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)
        for name in self.groups:
            subprocess.run(["groupdel", name], capture_output=True)
        leftovers = [n for n in self.users if _exists(pwd.getpwnam, n)]
        leftovers += [n for n in self.groups if _exists(grp.getgrnam, n)]
        assert not leftovers, f"could not remove test accounts {leftovers}"


def _exists(lookup, name) -> bool:
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def shared_dir(prefix: str) -> Path:
    """A root-owned 0755 directory under /tmp that every account can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


# What the daemon imports from the test venv (copied, so another account can run a
# gflowd of its own: the C extensions are built for 3.11, as is the system python).
DAEMON_PACKAGES = ("apscheduler", "blinker", "click", "flask", "itsdangerous", "jinja2",
                   "markupsafe", "msgpack", "prometheus_client", "psutil", "pynvml",
                   "setproctitle", "tzlocal", "waitress", "werkzeug")


def gflow_venv(base: Path) -> Path:
    """A venv on the system python with a copy of gflow and what its daemon imports."""
    venv = base / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    shutil.copytree(ROOT / "gflow", site / "gflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        stem = entry.name.split("-")[0].removesuffix(".py").lower().replace("_", "")
        if stem in {p.replace("_", "") for p in DAEMON_PACKAGES}:
            if entry.is_dir():
                shutil.copytree(entry, site / entry.name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(entry, site / entry.name)
    for tool in (*CLIENT_TOOLS, "gflowd"):
        script = venv / "bin" / tool
        script.write_text(f"#!{venv}/bin/python\nimport sys\n"
                          f"from gflow.cli.{tool} import main\nsys.exit(main())\n")
        script.chmod(0o755)
    for path in [base, *base.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else
                   path.stat().st_mode | 0o444)
    return venv / "bin"


def run_as(account: Account, argv: list, *, env: dict, input: str | None = None,
           timeout: float = 60, cwd=None, umask: int = -1) -> subprocess.CompletedProcess:
    """Run `argv` as `account` (its uid, gid and groups), with HOME and USER its own."""
    full_env = {**env, "HOME": str(account.home), "USER": account.name,
                "LOGNAME": account.name, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    return subprocess.run([str(a) for a in argv], env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or account.home, user=account.uid, group=account.gid,
                          extra_groups=account.groups, umask=umask)


def raw_http(account: Account, method: str, url_or_socket: str, path: str, *,
             body: str | None = None, port: int = 0) -> tuple[int, str]:
    """One HTTP request made by a process of `account` (the system python, stdlib only):
    over TCP to 127.0.0.1:`port`, or over the Unix socket at `url_or_socket`."""
    code = (
        "import socket, sys\n"
        "target, method, path, body = sys.argv[1:5]\n"
        "if target.startswith('/'):\n"
        "    s = socket.socket(socket.AF_UNIX); s.connect(target)\n"
        "else:\n"
        "    host, port = target.rsplit(':', 1); s = socket.create_connection((host, int(port)))\n"
        "data = body.encode()\n"
        "head = f'{method} {path} HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n'\n"
        "if data: head += 'Content-Type: application/json\\r\\n'\n"
        "head += f'Content-Length: {len(data)}\\r\\n\\r\\n'\n"
        "s.sendall(head.encode() + data)\n"
        "out = b''\n"
        "while True:\n"
        "    chunk = s.recv(65536)\n"
        "    if not chunk: break\n"
        "    out += chunk\n"
        "sys.stdout.write(out.decode('utf-8', 'replace'))\n"
    )
    target = url_or_socket if url_or_socket.startswith("/") else f"127.0.0.1:{port}"
    res = run_as(account, [SYSTEM_PYTHON, "-c", code, target, method, path, body or ""],
                 env={})
    assert res.returncode == 0, res.stderr
    # Text mode turned the CRLFs into newlines.
    head, _, body = res.stdout.partition("\n\n")
    return int(head.split()[1]), body


__all__ = ["need_root", "Accounts", "Account", "shared_dir", "gflow_venv", "run_as",
           "raw_http"]
