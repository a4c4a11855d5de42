"""`gflowd`: start, stop, reload and inspect the daemon (`up --foreground` runs the master);
`init` writes a configuration, `service` installs the systemd user unit, `--cleanup` removes
the bookkeeping files of finished jobs."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
from typing import Optional

from gflow import __version__
from gflow.cli.common import CommandError, guarded
from gflow.cli.gflowd_cleanup import cleanup, cmd_cleanup  # noqa: F401 (gflowd.cleanup: API)
from gflow.cli.gflowd_start import START_TIMEOUT_SECS, fork_master, start_timeout
from gflow.client import Client, ConnectionFailed
from gflow.errors import ConfigError, ParseError

RELOAD_TIMEOUT_SECS = 120.0
STOP_TIMEOUT_SECS = 60.0


CLEANUP_HELP = ("remove the bookkeeping files (<id>.spec.json, .pid, .status in the logs "
                "directory) of jobs the running daemon reports finished over a minute ago "
                "and whose processes are gone; job logs, the job state and the configuration "
                "are kept (0.4.13's help said it cleaned up the configuration)")
# `gflowd status` exit statuses, as LSB init scripts (and `systemctl status`) use them.
STATUS_RUNNING, STATUS_UNHEALTHY, STATUS_NOT_RUNNING = 0, 1, 3


def add_globals(p: argparse.ArgumentParser, sub: bool = False) -> None:
    """-c/-v/-q/--cleanup: global, as in 0.4.13 (accepted before or after the command)."""
    default = argparse.SUPPRESS if sub else None
    count = argparse.SUPPRESS if sub else 0
    p.add_argument("-c", "--config", metavar="PATH", default=default, help="config file")
    p.add_argument("-v", "--verbose", action="count", default=count,
                   help="more log output (repeatable)")
    p.add_argument("-q", "--quiet", action="count", default=count,
                   help="less log output (repeatable)")
    p.add_argument("--cleanup", action="store_true",
                   default=argparse.SUPPRESS if sub else False, help=CLEANUP_HELP)


def build_parser() -> argparse.ArgumentParser:
    from gflow.cli.init_wizard import add_init_parser
    p = argparse.ArgumentParser(prog="gflowd", description="The gflow daemon.",
                                allow_abbrev=False)
    add_globals(p)
    p.add_argument("-V", "--version", action="version", version=f"gflowd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    add_globals(common, sub=True)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    for names, text in ((["up", "start"], "start the daemon"),
                        (["restart"], "stop, then start the daemon"),
                        (["reload"], "replace the workers without closing the port")):
        sp = sub.add_parser(names[0], aliases=names[1:], help=text, parents=[common])
        sp.add_argument("--gpus", metavar="INDICES", help="GPUs the scheduler may use: 0,2 or 0-3")
        sp.add_argument("--gpu-allocation-strategy", choices=["sequential", "random"],
                        type=str.lower, metavar="STRATEGY", help="sequential or random")
        sp.add_argument("--gpu-poll-interval-secs", type=float, metavar="SECS",
                        help="how often NVML is polled")
        if names[0] == "up":
            sp.add_argument("--foreground", action="store_true",
                            help="run in the foreground (for systemd); logs go to stderr")
            sp.add_argument("--log-file", metavar="PATH",
                            help="also write the log to PATH, rotated per [logging] "
                                 "(`gflowd up` in the background uses logs/gflowd.log)")
    sub.add_parser("down", aliases=["stop"], help="stop the daemon (jobs keep running)",
                   parents=[common])
    sub.add_parser("status", help="is the daemon running? (exit status 0 running, 1 "
                   "unhealthy, 3 not running)", parents=[common])
    add_init_parser(sub, common)
    sp = sub.add_parser("service", help="install or remove the systemd user unit",
                        parents=[common],
                        description="Install or remove ~/.config/systemd/user/gflowd.service "
                                    "(the daemon as a systemd user service).")
    actions = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    inst = actions.add_parser("install", help="write the unit and reload systemd",
                              parents=[common])
    inst.add_argument("--now", "--enable", dest="now", action="store_true",
                      help="also enable and start it (systemctl --user enable --now)")
    uninst = actions.add_parser("uninstall", help="stop, disable and remove the unit",
                                parents=[common])
    show = actions.add_parser("show", help="print the unit that install would write",
                              parents=[common])
    for action in (inst, uninst, show):
        action.add_argument("--system", action="store_true",
                            help="the shared box's root service (gflowd-system.service: "
                                 "jobs run as their submitters)")
    from gflow.cli.common import add_completion_parser
    add_completion_parser(sub, with_help=False)
    return p


def log_level(args, config=None) -> int:
    """`[logging] level` (or GFLOW_LOG), moved one step per -v (more) or -q (less)."""
    from gflow.logutil import daemon_level
    name = config.logging.level if config is not None else None
    return daemon_level(name, args.verbose, args.quiet)


def overrides_from(args) -> dict:
    out: dict = {}
    if getattr(args, "gpus", None):
        from gflow.parsing import parse_gpu_spec
        try:
            out["daemon.gpus"] = parse_gpu_spec(args.gpus)
        except ParseError as exc:
            raise CommandError(f"Error: --gpus: {exc}") from None
    if getattr(args, "gpu_allocation_strategy", None):
        out["daemon.gpu_allocation_strategy"] = args.gpu_allocation_strategy
    if getattr(args, "gpu_poll_interval_secs", None) is not None:
        out["daemon.gpu_poll_interval_secs"] = args.gpu_poll_interval_secs
    return out


def load(args, overrides: Optional[dict] = None):
    from gflow.config import load_config
    try:
        config = load_config(args.config, overrides=overrides or None)
    except ConfigError as exc:
        raise CommandError(f"gflowd: error: {exc}") from None
    for warning in config.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return config


def paths():
    from gflow.paths import Paths
    return Paths.from_env()


def running_pid(lock_file) -> Optional[int]:
    """The master's pid if one holds the lock, else None (a stale file is not a daemon)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null") or {}
        except ValueError:
            info = {}
        return int(info.get("pid", 0)) or -1
    finally:
        os.close(fd)
    return None


def lock_info(lock_file) -> dict:
    try:
        with open(lock_file) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


def lock_address(info: dict) -> Optional[tuple[str, int]]:
    """Where the daemon holding the lock listens (its lock file says), reachable from here."""
    host, port = info.get("host"), info.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    host = host.strip() if isinstance(host, str) else ""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"          # every interface answers on the loopback one
    elif host in ("::", "[::]"):
        host = "::1"
    return host, port


def health(config, info: Optional[dict] = None) -> tuple[Optional[int], Optional[dict]]:
    """The daemon's /health, asked where its lock file says it listens when it says so
    (the environment may point at another port), else at the configured address."""
    address = lock_address(info or {})
    if address is None:
        client = Client.from_config(config, timeout=5)
    else:
        sock = (info or {}).get("socket")
        client = Client(*address, timeout=5,
                        unix_socket=sock if isinstance(sock, str) and os.path.exists(sock)
                        else None,
                        trusted_users=(config.daemon.user,) if config.daemon.user else ())
    try:
        status, body = client.health()
    except ConnectionFailed:
        return None, None
    finally:
        client.close()
    return status, body if isinstance(body, dict) else None


def rotate_log(path, max_bytes: int, backups: int) -> None:
    from gflow.logutil import rotate
    rotate(path, max_bytes, backups)


def last_error_line(path, offset: int) -> Optional[str]:
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if "error:" in line.lower() or "Traceback" in line or "CRITICAL" in line:
            return line
    return lines[-1] if lines else None


def cmd_up(args) -> int:
    overrides = overrides_from(args)
    config = load(args, overrides)
    p = paths()
    if args.foreground:
        return run_foreground(args, config, overrides)
    pid = running_pid(p.lock_file)
    if pid is not None:
        winner = await_starting(config, p.lock_file)
        if winner is not None:
            return already_running(winner)
        raise CommandError(f"gflowd (pid {pid}) holds {p.lock_file} but does not answer on "
                           f"{config.daemon.host}:{config.daemon.port}. "
                           "Use `gflowd down` or `gflowd restart`.")
    try:
        os.makedirs(p.logs_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"gflowd: error: cannot create {p.logs_dir} ({exc.strerror}): fix "
                           "its permissions or set XDG_DATA_HOME") from None
    rotate_log(p.daemon_log, config.logging.max_bytes, config.logging.backups)
    log_fd = os.open(p.daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    offset = os.lseek(log_fd, 0, os.SEEK_END)
    # The master is `gflowd up --foreground --log-file <log>` with these arguments, run
    # from "/" by a fork of this command (gflowd_start.py says why).
    args.foreground, args.log_file = True, str(p.daemon_log)
    if args.config:
        args.config = os.path.abspath(args.config)
    proc = fork_master(log_fd, guarded(lambda: run_foreground(args, load(args, overrides),
                                                              overrides)))
    os.close(log_fd)
    timeout = start_timeout(p)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            # Two `gflowd up` at once: the other one took the lock; say whose daemon runs
            # (its foreground process could only say "pid ?" before the lock was written).
            holder = running_pid(p.lock_file)
            if holder is not None and holder != proc.pid:
                winner = await_starting(config, p.lock_file, deadline)
                if winner is not None:
                    return already_running(winner)
            line = last_error_line(p.daemon_log, offset) or f"exit status {proc.returncode}"
            raise CommandError(line if "error" in line.lower() else f"gflowd: error: {line}")
        status, body = health(config)
        if status in (200, 503) and body and body.get("pid") == proc.pid:
            print(f"gflowd started (pid {proc.pid}, http://{config.daemon.host}:"
                  f"{config.daemon.port}).")
            if body.get("gpus") == 0:
                print("gflowd runs with 0 GPUs (no NVIDIA driver or GPU found, or none "
                      "allowed): jobs asking for --gpus will wait; GFLOW_FAKE_GPUS=N "
                      "simulates N GPUs.")
            if body.get("status") != "ok":
                print(f"Warning: gflowd is in {body.get('status')} mode: {body.get('detail')}",
                      file=sys.stderr)
            if beyond_loopback(config.daemon.host):
                print(f"Warning: gflowd listens on {config.daemon.host}: everyone who can reach "
                      "it can submit and cancel jobs as any user (there is no "
                      "authentication)", file=sys.stderr)
            return 0
        time.sleep(0.05)
    raise CommandError(f"gflowd did not become healthy within {timeout:.0f}s; "
                       f"see {p.daemon_log}")


def already_running(pid: int) -> int:
    print(f"gflowd is already running (pid {pid}).")
    print("Use `gflowd reload` to hot-reload or `gflowd restart` to restart it.")
    return 0


def await_starting(config, lock_file, deadline: Optional[float] = None) -> Optional[int]:
    """The pid of the daemon holding the lock once it answers; a daemon that took the lock
    moments ago (another `gflowd up`) is given until `deadline` to start. None: it does
    not answer."""
    info = lock_info(lock_file)
    started = info.get("started_at")
    fresh = not info.get("pid") or (isinstance(started, (int, float))
                                    and time.time() - started < START_TIMEOUT_SECS)
    if deadline is None:
        deadline = time.monotonic() + (START_TIMEOUT_SECS if fresh else 0)
    while True:
        info = lock_info(lock_file)
        status, body = health(config, info)
        if status == 200 and body:
            return int(body.get("pid") or info.get("pid") or 0) or None
        if time.monotonic() >= deadline or running_pid(lock_file) is None:
            return None
        time.sleep(0.1)


def beyond_loopback(host: str) -> bool:
    """Whether a daemon listening on `host` may be reachable from other machines.

    Decided on addresses, not spellings (`127.0.0.2` and `::ffff:127.0.0.1` are loopback,
    `0.0.0.0` and `::` are every interface): a name counts as loopback only if every
    address it resolves to is one; a name that does not resolve is not trusted either.
    """
    import ipaddress
    import socket

    from gflow.identity import is_loopback
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if is_loopback(text):
        return False
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
        return True  # an address, and not a loopback one
    except ValueError:
        pass
    if not text:
        return True  # an empty host binds every interface
    try:
        infos = socket.getaddrinfo(text, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return True
    return not infos or any(not is_loopback(info[4][0]) for info in infos)


def run_foreground(args, config, overrides) -> int:
    import logging

    from gflow.daemon.master import Master, StartupError, configure_logging
    level = log_level(args, config)
    log_file = os.path.abspath(args.log_file) if getattr(args, "log_file", None) else None
    if log_file:
        os.makedirs(os.path.dirname(log_file), mode=0o700, exist_ok=True)
    handler = configure_logging(level, log_file)
    env = dict(os.environ)
    if args.config:
        env["GFLOW_CONFIG_PATH"] = os.path.abspath(args.config)
    master = Master(config, env, log_level=level, gpus_from_cli="daemon.gpus" in overrides,
                    log_file=log_file, log_follow=bool(handler and handler.follow_fds),
                    level_for=lambda c: log_level(args, c))
    master.overrides = overrides
    try:
        code = master.run()
    except StartupError as exc:
        logging.getLogger("gflow.master").error("%s", exc)
        print(f"gflowd: error: {exc}", file=sys.stderr)
        return 1
    # Stopped: the workers are joined, the lock released and the sockets closed. Exit
    # now rather than after the interpreter's teardown (tens of milliseconds that
    # `gflowd down`, which waits for this process to end, would wait too).
    from gflow.procexit import exit_now
    exit_now(code)


def wait_gone(pid: int, timeout: float) -> bool:
    """True once the master has exited (or released its lock) within `timeout`. Woken by
    the exit itself (a pidfd becomes readable when the process ends), not by polling;
    the lock is still looked at every 50 ms in case the process lingers after it."""
    import select
    deadline = time.monotonic() + timeout
    lock_file = paths().lock_file
    try:
        pidfd: Optional[int] = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):    # no pidfd_open (Linux < 5.3): poll only
        pidfd = None
    try:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
            if running_pid(lock_file) is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if pidfd is None:
                time.sleep(min(0.05, remaining))
            elif select.select([pidfd], [], [], min(0.05, remaining))[0]:
                return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def refuse_unnamed(pid: int, command: str) -> None:
    """The lock is held but names no pid yet (a daemon starting this instant): never
    kill(-1), which would signal every process of this account."""
    if pid <= 0:
        raise CommandError("gflowd is starting (its lock file names no pid yet): "
                           f"run `gflowd {command}` again in a moment")


def cmd_down(args) -> int:
    pid = running_pid(paths().lock_file)
    if pid is None:
        print("gflowd is not running.")
        return 0
    refuse_unnamed(pid, "down")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print("gflowd stopped.")
        return 0
    if not wait_gone(pid, STOP_TIMEOUT_SECS):
        raise CommandError(f"gflowd (pid {pid}) did not stop within {STOP_TIMEOUT_SECS:.0f}s")
    print("gflowd stopped.")
    return 0


def cmd_status(args) -> int:
    """Exit status 0 running, 1 unhealthy, 3 not running (LSB; 0.4.13: 0 when stopped)."""
    config = load(args)
    p = paths()
    pid = running_pid(p.lock_file)
    if pid is None:
        print("Status: Not running")
        print("The gflowd daemon is not running.")
        return STATUS_NOT_RUNNING
    info = lock_info(p.lock_file)
    host, port = config.daemon.host, config.daemon.port
    if lock_address(info) is not None:
        host, port = info.get("host") or host, info["port"]
        if (host, port) != (config.daemon.host, config.daemon.port):
            print(f"Note: gflowd listens on {host}:{port}, but clients here are set to "
                  f"{config.daemon.host}:{config.daemon.port} (GFLOW_DAEMON_HOST/PORT or the "
                  "config file)", file=sys.stderr)
    status, body = health(config, info)
    if status is None:
        print("Status: Unhealthy")
        print(f"gflowd (pid {pid}) holds the lock but does not answer on {host}:{port}.",
              file=sys.stderr)
        return STATUS_UNHEALTHY
    if status != 200:
        print("Status: Unhealthy")
        print("The gflowd daemon responded to the health check but is not healthy.",
              file=sys.stderr)
        return STATUS_UNHEALTHY
    body = body or {}
    uptime = int(body.get("uptime_secs") or 0)
    print("Status: Running")
    print(f"PID: {body.get('pid', pid)}")
    print(f"Uptime: {uptime // 3600:02d}:{uptime % 3600 // 60:02d}:{uptime % 60:02d}")
    print(f"Version: {body.get('version', '?')}")
    print(f"GPUs: {body.get('gpus', 0)} ({body.get('gpu_source', '?')})")
    print(f"Listening: http://{host}:{port}")
    executor = body.get("executor")
    if isinstance(executor, dict):          # Slurm mode (docs/slurm.md)
        from gflow.cli.render import safe
        ok = executor.get("ok")
        said = ("reachable" if ok else "not checked yet" if ok is None else
                "NOT reachable: " + safe(str(executor.get("detail") or "")))
        print(f"Executor: {safe(str(executor.get('kind')))} (controller {said})")
    if body.get("status") == "recovery":
        print(f"Mode: recovery ({body.get('detail')})")
    return STATUS_RUNNING


def cmd_reload(args) -> int:
    config = load(args, overrides_from(args))
    p = paths()
    pid = running_pid(p.lock_file)
    if pid is None:
        raise CommandError("gflowd is not running; start it with `gflowd up`")
    refuse_unnamed(pid, "reload")
    overrides = overrides_from(args)
    if overrides:
        path = p.data_dir / "reload-overrides.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(overrides, f)
        os.replace(tmp, path)
    before = lock_info(p.lock_file).get("reloads", 0)
    os.kill(pid, signal.SIGHUP)
    # The master counts finished reloads in its lock file (workers are replaced one by
    # one, each waited for); then the API must answer from the same master.
    deadline = time.monotonic() + RELOAD_TIMEOUT_SECS
    while time.monotonic() < deadline:
        info = lock_info(p.lock_file)
        if info.get("reloads", 0) > before:
            last = info.get("last_reload") or {}
            if last.get("error"):
                raise CommandError(f"gflowd reload: {last['error']}; see {p.daemon_log}")
            status, body = health(config)
            if status in (200, 503) and body and body.get("pid") == pid:
                print(f"gflowd reloaded ({last.get('secs', 0):.2f}s).")
                return 0
        if running_pid(p.lock_file) is None:
            raise CommandError("gflowd exited during the reload; see the daemon log")
        time.sleep(0.05)
    raise CommandError("gflowd did not finish the reload in time; see the daemon log")


# --- main -----------------------------------------------------------------------------------

def dispatch(args) -> int:
    cmd = args.cmd
    if cmd in ("up", "start"):
        return cmd_up(args)
    if cmd in ("down", "stop"):
        return cmd_down(args)
    if cmd == "restart":
        cmd_down(args)
        args.foreground = False
        args.log_file = None
        return cmd_up(args)
    if cmd == "reload":
        return cmd_reload(args)
    if cmd == "status":
        return cmd_status(args)
    if cmd == "init":
        from gflow.cli.init_wizard import cmd_init
        return cmd_init(args)
    if cmd == "completion":
        from gflow.cli.common import print_completion
        return print_completion(build_parser(), args.shell)
    if cmd == "service":
        from gflow.cli import systemd_unit
        if args.action == "install":
            if args.system:
                return systemd_unit.cmd_install_system(args)
            return systemd_unit.cmd_install(args, running_pid(paths().lock_file))
        if args.action == "uninstall":
            if args.system:
                return systemd_unit.cmd_uninstall_system(args)
            return systemd_unit.cmd_uninstall(args)
        return systemd_unit.cmd_show(args)
    raise CommandError(f"unknown command {cmd}", code=2)


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd = args.cmd
    if cmd is None:
        if args.cleanup:
            return cmd_cleanup(args, alone=True)
        parser.error("a command is required (up, down, restart, reload, status, init, "
                     "service, completion)")
    if not args.cleanup or (cmd in ("up", "start") and getattr(args, "foreground", False)):
        return dispatch(args)
    # --cleanup with a command (0.4.13 accepts it everywhere and does nothing): before
    # the daemon goes away, after everything else.
    if cmd in ("down", "stop", "restart"):
        cmd_cleanup(args, alone=False)
        return dispatch(args)
    rc = dispatch(args)
    if rc == 0 or (cmd == "status" and rc == STATUS_NOT_RUNNING):
        cmd_cleanup(args, alone=False)     # stopped: it says why it skipped
    return rc


if __name__ == "__main__":
    sys.exit(main())
