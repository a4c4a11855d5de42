"""The shell's command tables (tools, shortcuts, shell-only commands) and its own commands.

TOOLS and SHORTCUTS_TABLE name the classic tools and their short forms (gflow.shell.app
turns each entry into a cmd2 command that runs the tool in process). SHELL_COMMANDS are
the shell's own: `status`, `use`, `watch` and `wait`, each with an argparse parser here
(so completion and `help` treat them like the tools) and a body in `ShellCommands`.

Client layer (DESIGN.md §3): gflow.client, gflow.config, gflow.errors and gflow.parsing
only, the last three imported where used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Callable, Optional

from gflow.client import ApiError, Client, ConnectionFailed

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
FINAL_STATES = ("Finished", "Failed", "Cancelled", "Timeout")
LIVE_STATES = ("Queued", "Hold", "Running")
ALL_STATES = LIVE_STATES + FINAL_STATES

JOBS, SHORTCUTS, CLUSTER, SHELL = "Jobs", "Shortcuts", "Cluster", "Shell"
CATEGORY_ORDER = (JOBS, SHORTCUTS, CLUSTER, SHELL)

# tool -> (help category, one-line description)
TOOLS: dict[str, tuple[str, str]] = {
    "gbatch": (JOBS, "Submit a job: a script or a command (gbatch --help)"),
    "gqueue": (JOBS, "List jobs: yours by default, -a for finished ones too"),
    "gjob": (JOBS, "Inspect and manage one job: show, log, hold, release, ..."),
    "gcancel": (JOBS, "Cancel jobs (ids: 3, 1-5, 2,4)"),
    "ginfo": (CLUSTER, "GPUs and the jobs on them"),
    "gctl": (CLUSTER, "Administer GPUs, group limits and reservations"),
    "gstats": (CLUSTER, "Usage statistics"),
}

# shortcut -> (tool, leading arguments, description)
SHORTCUTS_TABLE: dict[str, tuple[str, tuple[str, ...], str]] = {
    "q": ("gqueue", (), "gqueue: list jobs"),
    "show": ("gjob", ("show",), "gjob show: a job's details"),
    "log": ("gjob", ("log",), "gjob log: a job's output"),
    "cancel": ("gcancel", (), "gcancel: cancel jobs"),
    "hold": ("gjob", ("hold",), "gjob hold: hold queued jobs"),
    "release": ("gjob", ("release",), "gjob release: release held jobs"),
}

# cmd2's own commands that stay visible (in the Shell category); the rest are hidden.
BUILTINS_SHOWN = ("alias", "edit", "help", "history", "macro", "quit", "run_script", "set",
                  "shell", "shortcuts")


class ShellParser(argparse.ArgumentParser):
    """Parser of a shell-only command: a usage error is one line, exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see 'help {self.prog}')\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value '{text}': not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid value '{text}': must be a number > 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value '{text}': not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value '{text}': must be at least 1")
    return value


def _watch_parser(default_interval: float) -> ShellParser:
    p = ShellParser(prog="watch", description=(
        "Run a command every N seconds, clearing the screen between runs, until Ctrl-C.\n"
        "Examples: watch gqueue -a | watch -n 5 ginfo | watch -c 3 q"))
    p.add_argument("-n", "--interval", type=_positive_float, default=default_interval,
                   metavar="SECS", help=f"seconds between runs (default {default_interval:g}, "
                                        "from [shell] refresh_secs)")
    p.add_argument("-c", "--count", type=_positive_int, metavar="N",
                   help="stop after N runs (default: until Ctrl-C)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="a shell command line, e.g. gqueue -a")
    return p


def _wait_parser() -> ShellParser:
    p = ShellParser(prog="wait", description=(
        "Wait until a job reaches a state (by default: until it has ended), then print it.\n"
        "Exit status 0 when it got there (for the default: when it Finished), else 1.\n"
        "Examples: wait 3 | wait @ | wait 3 --state Running --timeout 60"))
    p.add_argument("job", metavar="JOB", help="job id, @ (your last job) or @~N")
    p.add_argument("-s", "--state", metavar="STATES",
                   help="comma list of states to wait for (default: any final state)")
    p.add_argument("-t", "--timeout", type=_positive_float, metavar="SECS",
                   help="give up after SECS seconds (default: wait until Ctrl-C)")
    return p


def _status_parser() -> ShellParser:
    return ShellParser(prog="status", description=(
        "Show the daemon this shell talks to: its health (GET /health), pid, version, "
        "uptime, GPUs and job counts."))


def _use_parser() -> ShellParser:
    p = ShellParser(prog="use", description=(
        "Switch to another gflowd, or show the current one.\n"
        "TARGET: HOST:PORT, HOST (port 59000), :PORT, a gflow.toml path, or 'default'\n"
        "(the daemon the shell started with). The classic tools run from this shell\n"
        "(and programs started with 'shell'/'!') use it too: it sets GFLOW_DAEMON_HOST\n"
        "and GFLOW_DAEMON_PORT (and GFLOW_TIMEZONE from a config file)."))
    p.add_argument("target", nargs="?", metavar="TARGET")
    return p


SHELL_COMMANDS: dict[str, tuple[Callable[..., ShellParser], str]] = {
    "status": (_status_parser, "Health of the daemon this shell talks to"),
    "use": (_use_parser, "Switch daemons: use HOST:PORT | use CONFIG.toml | use default"),
    "watch": (_watch_parser, "Refresh a command every N seconds until Ctrl-C"),
    "wait": (_wait_parser, "Wait until a job has ended (or reached a given state)"),
}


def parse_target(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, HOST or :PORT -> (host, port); ValueError with a clear text."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid address '{text}': missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid address '{text}'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        port = 59000
    elif port_text.isascii() and port_text.isdigit() and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"invalid port '{port_text}' in '{text}': expected 1-65535")
    return host, port


TARGET_ENV = ("GFLOW_DAEMON_HOST", "GFLOW_DAEMON_PORT")


def load_target_config(path: str, env=None):
    """A config file chosen explicitly (`use FILE`, `--config FILE`): its daemon address
    wins over GFLOW_DAEMON_HOST/PORT, which only an earlier `use` may have set."""
    from gflow.config import load_config
    env = os.environ if env is None else env
    return load_config(path, env={k: v for k, v in env.items() if k not in TARGET_ENV})


class ShellCommands:
    """The bodies of the shell-only commands, mixed into GflowShell.

    They use the shell's state and helpers (`client()`, `_switch`, `_fail`, `_parse`,
    `_connection_message`, ...), which live in gflow.shell.app with the rest of the cmd2
    application; they are apart only to keep that module readable."""

    def cmd_status(self, args, argv) -> int:
        try:
            status, body = self.client().health()
        except ConnectionFailed as exc:
            reason = str(exc).splitlines()[-1] if "\n(" in str(exc) else None
            return self._fail(self._connection_message(
                reason[1:-1] if reason and reason.startswith("(") else None))
        self._reachable = True
        body = body if isinstance(body, dict) else {}
        state = body.get("status") or ("ok" if status == 200 else f"HTTP {status}")
        uptime = int(body.get("uptime_secs") or 0)
        jobs = body.get("jobs") or {}
        self.poutput(f"gflowd at {self.target}: {state}")
        self.poutput(f"  pid {body.get('pid', '?')}, version {body.get('version', '?')}, "
                     f"up {uptime // 3600:02d}:{uptime % 3600 // 60:02d}:{uptime % 60:02d}")
        self.poutput(f"  GPUs: {body.get('gpus', 0)} ({body.get('gpu_source', '?')}); "
                     f"jobs: {jobs.get('queued', 0)} queued, {jobs.get('running', 0)} running, "
                     f"{jobs.get('held', 0)} held")
        if body.get("detail"):
            self.poutput(f"  detail: {body['detail']}")
        return EXIT_OK if status == 200 and state == "ok" else EXIT_RUNTIME

    def cmd_use(self, args, argv) -> int:
        if args.target is None:
            source = "default" if (self.host, self.port) == self._initial_target else "use"
            self.poutput(f"Using gflowd at {self.target} ({source}).")
            return EXIT_OK
        text = args.target
        if text == "default":
            self._switch(*self._initial_target, restore=True)
        elif os.path.sep in text or text.endswith(".toml") or os.path.isfile(text):
            path = os.path.expanduser(text)
            if not os.path.isfile(path):
                return self._fail(f"use: no such config file: {text}")
            from gflow.errors import ConfigError
            try:
                config = load_target_config(path)
            except ConfigError as exc:
                return self._fail(f"use: {exc}")
            for warning in config.warnings:
                self.perror(f"Warning: {warning}", style=None)
            self._switch(config.daemon.host, config.daemon.port, config.timezone)
        else:
            try:
                host, port = parse_target(text)
            except ValueError as exc:
                return self._fail(f"use: {exc}")
            self._switch(host or self.host, port)
        try:
            status, body = Client.from_env(self.host, self.port, timeout=3).health()
        except ConnectionFailed:
            self.poutput(f"Using gflowd at {self.target} (not answering yet: "
                         "'gflowd up' starts it).")
            return EXIT_OK
        body = body if isinstance(body, dict) else {}
        self._reachable = True
        self.poutput(f"Using gflowd at {self.target} ({body.get('status', status)}, "
                     f"version {body.get('version', '?')}, pid {body.get('pid', '?')}).")
        return EXIT_OK

    def cmd_watch(self, args, argv) -> int:
        if not args.command:
            return self._fail("watch: error: a command to run is required "
                              "(e.g. watch gqueue -a)", EXIT_USAGE)
        # the command's words with their quotes, as typed (argv has them removed)
        raw = self._raw_args[len(self._raw_args) - len(args.command):]
        line = " ".join(raw)
        if args.command[0] == "watch":
            return self._fail("watch: error: cannot watch 'watch'", EXIT_USAGE)
        clear = False
        with contextlib.suppress(Exception):
            clear = self.stdout.isatty()
        runs, rc = 0, EXIT_OK
        try:
            while True:
                if clear:
                    self.stdout.write("\x1b[H\x1b[2J")
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                self.poutput(f"Every {args.interval:g}s: {line}    {self.target}  {stamp}")
                self.poutput("")
                self._interrupted = False
                self.onecmd_plus_hooks(line, add_to_history=False,
                                       raise_keyboard_interrupt=True)
                rc = self.last_rc
                with contextlib.suppress(Exception):
                    self.stdout.flush()
                runs += 1
                if self._interrupted or (args.count and runs >= args.count):
                    break
                time.sleep(args.interval)
        except KeyboardInterrupt:
            self.poutput("")
        return rc if args.count else EXIT_OK

    def cmd_wait(self, args, argv) -> int:
        from gflow.errors import ParseError
        from gflow.parsing import parse_job_ref
        wanted: tuple[str, ...] = FINAL_STATES
        if args.state:
            wanted = tuple(s.strip() for s in args.state.split(",") if s.strip())
            by_lower = {s.lower(): s for s in ALL_STATES}
            bad = [s for s in wanted if s.lower() not in by_lower]
            if bad or not wanted:
                return self._fail(f"wait: error: unknown state '{(bad or [''])[0]}' "
                                  f"(one of: {', '.join(ALL_STATES)})", EXIT_USAGE)
            wanted = tuple(by_lower[s.lower()] for s in wanted)
        client = self.client()
        try:
            try:
                ref = parse_job_ref(args.job)
            except ParseError as exc:
                return self._fail(f"wait: error: {exc}", EXIT_USAGE)
            job_id = ref if isinstance(ref, int) else client.resolve(
                os.environ.get("USER") or "unknown", ref)
            deadline = None if args.timeout is None else time.monotonic() + args.timeout
            delay = 0.05
            while True:
                job = client.get_job(job_id)
                if job is None:
                    return self._fail(f"Job {job_id} not found")
                state = job.get("state")
                if state in wanted:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return self._fail(f"Timed out after {args.timeout:g}s waiting for job "
                                      f"{job_id} (it is {state}).")
                if state in FINAL_STATES:
                    return self._fail(f"Job {job_id} is {state}: it will not become "
                                      f"{' or '.join(wanted)}.")
                time.sleep(delay if deadline is None
                           else max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 1.5, 1.0)
        except ConnectionFailed as exc:
            reason = str(exc).splitlines()[-1] if "\n(" in str(exc) else None
            return self._fail(self._connection_message(
                reason[1:-1] if reason and reason.startswith("(") else None))
        except ApiError as exc:
            return self._fail(f"Error: {exc}")
        except KeyboardInterrupt:
            self.poutput("")
            self._interrupted = True
            return 130
        self._reachable = True
        code = job.get("exit_code")
        detail = f" (exit code {code})" if code is not None else ""
        self.poutput(f"Job {job_id} is {state}{detail}.")
        if wanted == FINAL_STATES and state != "Finished":
            return EXIT_RUNTIME
        return EXIT_OK

    def run_shell_command(self, name: str, statement) -> Optional[bool]:
        self._raw_args = list(statement.arg_list)
        argv = statement.argv[1:]
        args = self._parse(name, argv)
        if args is None:
            return None
        self._rc = getattr(self, f"cmd_{name}")(args, argv)
        return None
