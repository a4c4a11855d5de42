"""`gflow-shell`: the interactive (and scriptable) admin shell.

    gflow-shell                          interactive, with completion and history
    gflow-shell 'gqueue -a' quit         run commands given as arguments, then quit
    echo 'gqueue -a' | gflow-shell       run commands read from stdin
    gflow-shell --transcript FILE...     check transcripts (see gflow.shell.transcript)

The application itself is gflow.shell.app (cmd2); this module reads the options and the
configuration (the `[shell]` section: prompt, refresh_secs, aliases), finds the history
file and the start-up script (~/.config/gflow/shellrc), and runs it. It stays light (no
cmd2 at import): the console script and `python -m gflow.shell` (__main__.py) import it,
and so does every import of a submodule.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from gflow import __version__

__all__ = ["main", "build_parser", "make_shell"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gflow-shell", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The gflow admin shell: every classic tool (gbatch, gqueue, gjob, "
                    "gcancel, ginfo, gctl,\ngstats) as a command, plus watch, wait, status "
                    "and use. Type 'help' inside.",
        epilog="Without COMMANDs it reads commands from the terminal (or stdin when piped).\n"
               "COMMANDs run first, then the shell goes on reading: end with 'quit' to stop.\n"
               "Exit status: that of the last command that failed (0 if none).\n"
               "Files: ~/.config/gflow/shellrc (start-up commands), "
               "~/.local/state/gflow/shell_history.")
    p.add_argument("commands", nargs="*", metavar="COMMAND",
                   help="shell command lines to run, e.g. 'gqueue -a' quit")
    p.add_argument("--config", metavar="PATH",
                   help="gflow.toml to read (the daemon address, which wins over "
                        "GFLOW_DAEMON_HOST/PORT, and the [shell] section)")
    p.add_argument("-d", "--daemon", metavar="HOST:PORT",
                   help="the gflowd to talk to (like 'use HOST:PORT')")
    p.add_argument("-e", "--exit-on-error", action="store_true",
                   help="stop at the first command that fails")
    p.add_argument("--no-rc", action="store_true",
                   help="do not run ~/.config/gflow/shellrc")
    p.add_argument("--transcript", metavar="FILE", nargs="+",
                   help="run transcript files and compare their output; exit 1 on a mismatch")
    p.add_argument("-V", "--version", action="version",
                   version=f"gflow-shell {__version__}")
    return p


def _load_config(path: Optional[str]):
    """The configuration, or defaults plus a warning line when it cannot be read.

    An explicit --config file names the daemon even when GFLOW_DAEMON_HOST/PORT are set
    (a command-line choice beats the environment), as `use FILE` does."""
    from gflow.config import load_config
    from gflow.errors import ConfigError
    from gflow.shell.commands import load_target_config
    try:
        config = load_config() if path is None else load_target_config(path)
    except ConfigError as exc:
        print(f"Warning: {exc} (using the defaults)", file=sys.stderr)
        from gflow.config import Config
        return Config()
    for warning in config.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return config


def make_shell(*, config_path: Optional[str] = None, daemon: Optional[str] = None,
               commands=(), rc: bool = True, history: Optional[bool] = None,
               exit_on_error: bool = False, stdin=None, stdout=None,
               interactive: Optional[bool] = None):
    """Build the shell as `gflow-shell` would (tests use this in process)."""
    from gflow.paths import Paths
    from gflow.shell.app import GflowShell
    from gflow.shell.commands import parse_target

    config = _load_config(config_path)
    if config_path is not None:
        # the tools read the same daemon address and time zone as the shell
        os.environ["GFLOW_DAEMON_HOST"] = config.daemon.host
        os.environ["GFLOW_DAEMON_PORT"] = str(config.daemon.port)
        if config.timezone:
            os.environ["GFLOW_TIMEZONE"] = config.timezone
    if daemon is not None:
        host, port = parse_target(daemon)
        host = host or config.daemon.host
        os.environ["GFLOW_DAEMON_HOST"] = host
        os.environ["GFLOW_DAEMON_PORT"] = str(port)
        from dataclasses import replace
        config = replace(config, daemon=replace(config.daemon, host=host, port=port))
    paths = Paths.from_env()
    stdin_obj = stdin if stdin is not None else sys.stdin
    if history is None:
        try:
            history = stdin_obj.isatty()
        except (AttributeError, ValueError):
            history = False
    history_file = ""
    if history:
        try:
            paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            history_file = str(paths.history_file)
        except OSError as exc:
            print(f"Warning: no history: cannot create {paths.state_dir}: {exc.strerror}",
                  file=sys.stderr)
    startup = str(paths.shellrc) if rc and paths.shellrc.is_file() else ""
    return GflowShell(config=config, config_path=config_path, history_file=history_file,
                      startup_script=startup, stdin=stdin, stdout=stdout,
                      commands=list(commands), exit_on_error=exit_on_error,
                      interactive=interactive)


def _run_transcripts(files, args) -> int:
    from gflow.shell.transcript import run_transcript
    failed = 0
    variables = dict(os.environ)        # before any `use` in a transcript changes it
    for name in files:
        shell = make_shell(config_path=args.config, daemon=args.daemon, rc=False,
                           history=False, interactive=False)
        try:
            failures = run_transcript(shell, name, variables=variables)
        except (OSError, ValueError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if failures:
            failed += 1
            for failure in failures:
                print(failure.report(), file=sys.stderr)
            print(f"FAIL {name}: {len(failures)} command(s) did not match", file=sys.stderr)
        else:
            print(f"ok {name}")
    return 1 if failed else 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.transcript:
            return _run_transcripts(args.transcript, args)
        try:
            shell = make_shell(config_path=args.config, daemon=args.daemon,
                               commands=args.commands, rc=not args.no_rc,
                               exit_on_error=args.exit_on_error)
        except ValueError as exc:          # a bad --daemon
            print(f"gflow-shell: error: {exc}", file=sys.stderr)
            return 2
        except ImportError as exc:
            print(f"gflow-shell: cannot start: {exc} (gflow-shell needs cmd2 4.x)",
                  file=sys.stderr)
            return 1
        if shell.interactive:
            shell.intro = (f"gflow-shell {__version__}, gflowd at {shell.target}. "
                           "Type 'help' for the commands, 'quit' or Ctrl-D to leave.")
        return shell.cmdloop()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130

