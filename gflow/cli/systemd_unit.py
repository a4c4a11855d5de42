"""`gflowd service install|uninstall|show [--system]`: gflowd as a systemd user or system service.

The units are contrib/systemd/gflowd.service (a user's daemon) and gflowd-system.service
(the shared box's root daemon, jobs run as their submitters), with ExecStart pointing at
this installation's gflowd (the one beside `sys.executable`); tests keep them identical.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from gflow.cli.common import CommandError

UNIT_NAME = "gflowd.service"
SYSTEM_UNIT_NAME = "gflowd-system.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEMCTL_TIMEOUT_SECS = 60

UNIT_TEMPLATE = """\
# gflowd as a systemd *user* service: the daemon and its jobs run as you.
#   mkdir -p ~/.config/systemd/user && cp gflowd.service ~/.config/systemd/user/
#   systemctl --user daemon-reload && systemctl --user enable --now gflowd
#   loginctl enable-linger $USER      # keep it running when you log out
# (`gflowd service install` does the first two steps.)
[Unit]
Description=gflow GPU job scheduler (user daemon)
Documentation=https://pypi.org/project/gflow-scheduler/
After=network.target

[Service]
Type=simple
# ExecStart may need the full path of your gflowd (e.g. a virtual environment's bin/).
ExecStart={exec_start} up --foreground
ExecReload=/bin/kill -HUP $MAINPID
# Stop the daemon only: each job runs under its own monitor in its own session and keeps
# running across stops and restarts; the next start re-adopts it. Use KillMode=control-group
# (the default) instead if stopping the service must kill every job.
{stop_and_restart}
[Install]
WantedBy=default.target
"""


SYSTEM_UNIT_TEMPLATE = """\
# gflowd as the system service of a shared GPU box. The daemon runs as root and runs each
# job as the account that submitted it; the kernel tells it who each caller is (the Unix
# socket's peer credentials, the owner of a loopback connection), so nobody can act as
# someone else. Users configure nothing: the commands find /run/gflow/gflowd.sock.
#   cp gflowd-system.service /etc/systemd/system/ && systemctl daemon-reload
#   systemctl enable --now gflowd-system
# (`gflowd service install --system` does the first two steps; docs/operations.md.)
# State: /var/lib/gflow; configuration: /etc/gflow/gflow.toml.
[Unit]
Description=gflow GPU job scheduler (system service: jobs run as their submitters)
Documentation=https://pypi.org/project/gflow-scheduler/
After=network.target

[Service]
Type=simple
Environment=HOME=/var/lib/gflow XDG_DATA_HOME=/var/lib XDG_CONFIG_HOME=/etc
Environment=XDG_STATE_HOME=/var/lib/gflow/state GFLOW_DAEMON_SOCKET=/run/gflow/gflowd.sock
StateDirectory=gflow
StateDirectoryMode=0700
RuntimeDirectory=gflow
RuntimeDirectoryMode=0755
ExecStart={exec_start} up --foreground
ExecReload=/bin/kill -HUP $MAINPID
# Jobs outlive the daemon under their monitors (see gflowd.service).
{stop_and_restart}
[Install]
WantedBy=multi-user.target
"""

# Both units stop the master only (jobs keep running) and restart it when it fails.
STOP_AND_RESTART = """\
KillMode=process
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=on-failure
RestartSec=5
"""


def _quote(word: str) -> str:
    """A word for a systemd command line (spaces, quotes, `$` and `%` escaped)."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c in word for c in " \t\"'\\"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def gflowd_command() -> str:
    """This installation's gflowd: beside the interpreter (a virtual environment's bin/),
    else the one on PATH, else `python -m gflow.cli.gflowd`."""
    beside = Path(sys.executable).parent / "gflowd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return _quote(str(beside))
    found = shutil.which("gflowd")
    if found:
        return _quote(os.path.abspath(found))
    return " ".join(_quote(w) for w in (sys.executable, "-m", "gflow.cli.gflowd"))


def render(exec_start: Optional[str] = None, system: bool = False) -> str:
    template = SYSTEM_UNIT_TEMPLATE if system else UNIT_TEMPLATE
    return template.format(exec_start=exec_start or gflowd_command(),
                           stop_and_restart=STOP_AND_RESTART)


def unit_path(env=None, system: bool = False) -> Path:
    if system:
        return SYSTEM_UNIT_DIR / SYSTEM_UNIT_NAME
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(env.get("HOME") or str(Path.home()), ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def systemctl(*args: str, check: bool = True,
              system: bool = False) -> subprocess.CompletedProcess:
    exe = shutil.which("systemctl")
    if exe is None:
        raise FileNotFoundError("systemctl")
    scope = [] if system else ["--user"]
    res = subprocess.run([exe, *scope, *args], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_SECS)
    if check and res.returncode != 0:
        reason = first_line(res.stderr) or first_line(res.stdout) or f"exit status {res.returncode}"
        shown = " ".join([*scope, *args])
        raise CommandError(f"gflowd service: `systemctl {shown}` failed: {reason}")
    return res


def first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def user_manager_problem() -> Optional[str]:
    """None when a systemd user manager answers; else why not (one line)."""
    try:
        res = systemctl("show-environment", check=False)
    except FileNotFoundError:
        return "systemctl not found"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`systemctl --user` failed: {exc}"
    if res.returncode != 0:
        reason = first_line(res.stderr) or first_line(res.stdout) or f"exit status {res.returncode}"
        return f"`systemctl --user` failed: {reason}"
    return None


def no_manager(problem: str) -> CommandError:
    return CommandError(f"gflowd service: no systemd user manager here ({problem}); start the "
                        "daemon with `gflowd up` instead, or see contrib/systemd/gflowd@.service "
                        "for a system unit")


def write_unit(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cmd_install(args, running_pid: Optional[int]) -> int:
    problem = user_manager_problem()
    if problem:
        raise no_manager(problem)
    path = unit_path()
    text = render()
    existed = path.exists()
    try:
        write_unit(path, text)
    except OSError as exc:
        raise CommandError(f"gflowd service: cannot write {path}: {exc.strerror or exc}") from None
    systemctl("daemon-reload")
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    print(f"{'Updated' if existed else 'Installed'} {path} ({exec_start}).")
    active = systemctl("is-active", UNIT_NAME, check=False).stdout.strip() == "active"
    if args.now:
        if active:
            systemctl("enable", UNIT_NAME)
            print("gflowd.service is enabled and already active; `systemctl --user restart "
                  "gflowd` applies the new unit (running jobs keep running).")
        elif running_pid is not None:
            systemctl("enable", UNIT_NAME)
            print(f"Enabled gflowd.service, but gflowd is already running (pid {running_pid}) "
                  "outside systemd: run `gflowd down`, then `systemctl --user start gflowd`.")
        else:
            systemctl("enable", "--now", UNIT_NAME)
            print("Enabled and started gflowd.service (`systemctl --user status gflowd`).")
    else:
        print("Start it with: systemctl --user enable --now gflowd")
    user = os.environ.get("USER") or ""
    print(f"Keep it running after you log out: loginctl enable-linger {user}".rstrip())
    return 0


def cmd_uninstall(args) -> int:
    path = unit_path()
    if not path.exists():
        print(f"Nothing to uninstall: {path} does not exist.")
        return 0
    problem = user_manager_problem()
    if problem is None:
        # Stops the daemon only (KillMode=process): running jobs keep running and the
        # next `gflowd up` re-adopts them.
        systemctl("disable", "--now", UNIT_NAME, check=False)
    try:
        path.unlink()
    except OSError as exc:
        raise CommandError(f"gflowd service: cannot remove {path}: {exc.strerror or exc}") from None
    if problem is None:
        systemctl("daemon-reload")
        print(f"Stopped, disabled and removed {path}.")
    else:
        print(f"Removed {path} (no systemd user manager to tell: {problem}).")
    return 0


def cmd_show(args) -> int:
    sys.stdout.write(render(system=getattr(args, "system", False)))
    return 0


def cmd_install_system(args) -> int:
    """Install the shared box's root service (/etc/systemd/system/gflowd-system.service)."""
    if os.geteuid() != 0:
        raise CommandError("gflowd service install --system: the system service runs as "
                           "root and is installed by root (sudo gflowd service install "
                           "--system)")
    path = unit_path(system=True)
    existed = path.exists()
    try:
        write_unit(path, render(system=True))
    except OSError as exc:
        raise CommandError(f"gflowd service: cannot write {path}: {exc.strerror or exc}") from None
    try:
        systemctl("daemon-reload", system=True)
        if args.now:
            systemctl("enable", "--now", SYSTEM_UNIT_NAME, system=True)
    except FileNotFoundError:
        raise CommandError(f"gflowd service: wrote {path}, but systemctl is not here") from None
    print(f"{'Updated' if existed else 'Installed'} {path}.")
    print("Started gflowd-system.service (`systemctl status gflowd-system`)." if args.now
          else "Start it with: systemctl enable --now gflowd-system")
    print("Admins: set [security] admin_group in /etc/gflow/gflow.toml (docs/operations.md).")
    return 0


def cmd_uninstall_system(args) -> int:
    if os.geteuid() != 0:
        raise CommandError("gflowd service uninstall --system: needs root")
    path = unit_path(system=True)
    if not path.exists():
        print(f"Nothing to uninstall: {path} does not exist.")
        return 0
    try:
        systemctl("disable", "--now", SYSTEM_UNIT_NAME, check=False, system=True)
    except FileNotFoundError:
        pass
    path.unlink()
    print(f"Stopped, disabled and removed {path} (running jobs keep running).")
    return 0
