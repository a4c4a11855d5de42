"""What every command shares: the argument parser, config loading, the current user, error
reporting and exit codes (2 for usage errors, 1 for runtime errors)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Callable, Optional

from gflow import COMPAT_VERSION, __version__
from gflow.client import ApiError, Client, ConnectionFailed
from gflow.errors import GflowError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
U32_MAX = 2**32 - 1


class CommandError(Exception):
    """A runtime error of a command: printed as is on stderr, exit status 1 (or `code`)."""

    def __init__(self, message: str, code: int = EXIT_RUNTIME):
        super().__init__(message)
        self.code = code


def current_user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


# --- argument parsing ----------------------------------------------------------------------

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter without its `import shutil` (it runs on every add_argument)."""

    def __init__(self, prog, indent_increment=2, max_help_position=28, width=None):
        if width is None:
            try:
                width = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()).columns
                except (AttributeError, ValueError, OSError):
                    width = 80
            width = max(width - 2, 20)
        super().__init__(prog, indent_increment, max_help_position, width)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2.

    No abbreviated long options (clap has none: `--dry` is not `--dry-run`).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_version(parser: argparse.ArgumentParser, tool: str) -> None:
    parser.add_argument("-V", "--version", action="version",
                        version=f"{tool} {__version__} (gflow {COMPAT_VERSION} compatible)",
                        help="print the version")


def add_config_arg(parser: argparse.ArgumentParser, sub: bool = False) -> None:
    """0.4.13's hidden global `--config PATH` (valid before and after a subcommand)."""
    parser.add_argument("--config", metavar="PATH", help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS if sub else None)


def add_verbosity(parser: argparse.ArgumentParser, sub: bool = False) -> None:
    """`-v/-q` as in 0.4.13 (they only change tracing output there; accepted, no effect)."""
    default = argparse.SUPPRESS if sub else 0
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more output (accepted for compatibility)")
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="less output (accepted for compatibility)")


def add_completion_parser(sub, *, with_help: bool = True) -> None:
    """The `completion SHELL` subcommand (and, unless told otherwise, `help`)."""
    p = sub.add_parser("completion", help="print a shell completion script",
                       description="Print a completion script for bash, zsh or fish.")
    p.add_argument("shell", metavar="SHELL", choices=COMPLETION_SHELLS,
                   help="bash, zsh or fish")
    if with_help:
        sub.add_parser("help", help="print this help")


COMPLETION_SHELLS = ("bash", "zsh", "fish", "tcsh")


def special_command(parser: argparse.ArgumentParser, argv: list[str]) -> Optional[int]:
    """`<tool> completion SHELL` and `<tool> help` for tools whose first positional is data
    (gbatch, gcancel); None when argv is an ordinary command line."""
    if not argv:
        return None
    if argv[0] == "help" and len(argv) == 1:
        parser.print_help()
        return EXIT_OK
    if argv[0] == "completion":
        if len(argv) != 2:
            parser.error("usage: completion SHELL (one of: " + ", ".join(COMPLETION_SHELLS)
                         + ")")
        return print_completion(parser, argv[1])
    return None


def builtin_subcommand(parser: argparse.ArgumentParser, args,
                       name: Optional[str] = None) -> Optional[int]:
    """The `completion SHELL` and `help` subcommands every argparse-subcommand tool has
    (`name`: the subcommand given, by default `args.subcommand`): their exit status when
    one was given, else None."""
    name = args.subcommand if name is None else name
    if name == "completion":
        return print_completion(parser, args.shell)
    if name == "help":
        parser.print_help()
        return EXIT_OK
    return None


def print_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    from gflow.cli.completion import generate
    if shell not in COMPLETION_SHELLS:
        parser.error(f"invalid shell '{shell}' for completion (one of: "
                     + ", ".join(COMPLETION_SHELLS) + ")")
    sys.stdout.write(generate(parser, shell))
    return EXIT_OK


def _bad(text: str, reason: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"invalid value '{text}': {reason}")


# Bounds at or beyond this are a type's limits (u32, usize), not a documented range: their
# errors are plain sentences (`-1 is negative`), where clap printed `0..=4294967295`.
_TYPE_LIMIT = 2**31 - 1


def int_type(lo: int, hi: int, name: str = "int") -> Callable[[str], int]:
    """An argparse type for an integer in lo..=hi whose errors name the value.

    A documented range keeps clap's words (`256 is not in 0..=255`, pinned by spec/cli.md
    §1.2); a type limit reads as a sentence (`-1 is negative: expected 0 or more`)."""

    def convert(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise _bad(text, "not a whole number") from None
        if value < lo and lo == 0 and hi >= _TYPE_LIMIT:
            raise _bad(text, f"{value} is negative: expected 0 or more")
        if value > hi and hi >= _TYPE_LIMIT:
            raise _bad(text, f"{value} is too large (at most {hi})")
        if not lo <= value <= hi:
            raise _bad(text, f"{value} is not in {lo}..={hi}")
        return value

    convert.__name__ = name
    return convert


u32 = int_type(0, U32_MAX, "u32")
priority_type = int_type(0, 255, "priority")


def limit_type(hi: int, name: str = "limit") -> Callable[[str], int]:
    """A concurrency limit: 1..=hi (0 would keep every job of the group queued forever)."""
    base = int_type(0, hi, name)

    def convert(text: str) -> int:
        value = base(text)
        if value == 0:
            raise _bad(text, "a limit of 0 would never let a job run; use 1 or more")
        return value

    convert.__name__ = name
    return convert


# 0.4.13's causes are Rust's own words (kept in gflow.parsing, whose tests pin them);
# the commands say them as sentences.
_PLAIN_CAUSES = {
    "invalid digit found in string": "not a whole number",
    "cannot parse integer from empty string": "the number is missing",
    "number too large to fit in target type": "the number is too large",
    "number too small to fit in target type": "the number is too small",
}


def plain(exc: Exception) -> str:
    """A parse error's text with Rust's cause phrases replaced by plain words."""
    cause = getattr(exc, "cause", None)
    context = getattr(exc, "context", None)
    if cause in _PLAIN_CAUSES and context:
        return f"{context}: {_PLAIN_CAUSES[cause]}"
    text = str(exc)
    return _PLAIN_CAUSES.get(text, text)


def parsed_type(fn: Callable) -> Callable[[str], object]:
    """Wrap a gflow.parsing function: its ParseError becomes a usage error naming the value."""

    def convert(text: str):
        try:
            return fn(text)
        except GflowError as exc:
            raise _bad(text, plain(exc)) from None

    convert.__name__ = getattr(fn, "__name__", "value")
    return convert


class Once(argparse.Action):
    """A value option that may be given once (clap: "cannot be used multiple times")."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, "_seen_" + self.dest, False):
            parser.error(f"argument --{self.dest.replace('_', '-')}: "
                         "cannot be used multiple times")
        setattr(namespace, "_seen_" + self.dest, True)
        setattr(namespace, self.dest, values)


# --- configuration and the client ----------------------------------------------------------

def load_config(path: Optional[str] = None, overrides: Optional[dict] = None):
    from gflow.config import load_config as _load
    config = _load(path, overrides=overrides)
    for warning in config.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return config


_CONFIG_ENV = ("GFLOW_DAEMON_GPUS", "GFLOW_DAEMON_GPU_ALLOCATION_STRATEGY", "GFLOW_TIMEZONE")


def _fast_address() -> Optional[tuple[str, int]]:
    """(host, port) without importing gflow.config, when that gives the same answer.

    Only when no config file exists and the environment holds nothing that gflow.config
    would have to validate beyond a plain host and port; otherwise None (full load).
    """
    env = os.environ
    if any((env.get(k) or "").strip() for k in _CONFIG_ENV):
        return None
    home = env.get("HOME")
    if not home:
        return None
    xdg = env.get("XDG_CONFIG_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(home, ".config")
    if os.path.exists(os.path.join(base, "gflow", "gflow.toml")):
        return None
    host = env.get("GFLOW_DAEMON_HOST")
    if host is None or not host.strip():
        host = "localhost"
    elif host != host.strip():
        return None
    port_text = (env.get("GFLOW_DAEMON_PORT") or "").strip()
    if not port_text:
        return host, 59000
    if not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        return None
    return host, int(port_text)


def client_for(args) -> Client:
    """The client for the configured daemon (the config file is read only if it exists)."""
    path = getattr(args, "config", None)
    if path is None:
        address = _fast_address()
        if address is not None:
            return Client.from_env(*address)
    return Client.from_config(load_config(path))


# --- client logging (GFLOW_LOG, RUST_LOG) ------------------------------------------------------

_client_logging_done = False


def setup_client_logging() -> None:
    """GFLOW_LOG (else RUST_LOG) sets a command's log level; records go to stderr.

    `debug` logs every HTTP request with its status and time, `trace` also the bodies.
    Costs two environment lookups when neither is set (logging is not even imported).
    """
    global _client_logging_done
    if _client_logging_done:
        return
    _client_logging_done = True
    env = os.environ
    if not ((env.get("GFLOW_LOG") or "").strip() or (env.get("RUST_LOG") or "").strip()):
        return
    from gflow.logutil import configure_client_logging, env_level
    level = env_level(env)
    if level is None:
        return
    configure_client_logging(level)
    _trace_requests()


def _trace_requests() -> None:
    import logging
    log = logging.getLogger("gflow.client")
    if not log.isEnabledFor(logging.DEBUG) or getattr(Client.request, "_traced", False):
        return
    import json
    import time
    from urllib.parse import quote, urlencode

    from gflow.logutil import TRACE
    original = Client.request

    def request(self, method, path, body=None, query=None):
        shown = path
        items = {k: v for k, v in (query or {}).items() if v is not None}
        if items:
            shown += "?" + urlencode(items, quote_via=quote, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"http://{host}:{self.port}{shown}"
        if body is not None and log.isEnabledFor(TRACE):
            log.log(TRACE, "%s %s body=%s", method, url, json.dumps(body)[:4000])
        started = time.monotonic()
        try:
            status, parsed = original(self, method, path, body, query)
        except BaseException as exc:
            log.debug("%s %s failed after %.1f ms: %s", method, url,
                      (time.monotonic() - started) * 1000, str(exc).splitlines()[0] or
                      type(exc).__name__)
            raise
        log.debug("%s %s -> %d (%.1f ms)", method, url, status,
                  (time.monotonic() - started) * 1000)
        if log.isEnabledFor(TRACE):
            text = parsed if isinstance(parsed, str) else json.dumps(parsed)
            log.log(TRACE, "response %s", text[:4000])
        return status, parsed

    request._traced = True  # type: ignore[attr-defined]
    Client.request = request  # type: ignore[method-assign]


# --- running a command ---------------------------------------------------------------------

def guarded(fn: Callable[..., int]) -> Callable[..., int]:
    """Turn every expected failure into one or two clear lines and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> int:
        setup_client_logging()
        try:
            rc = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return rc
        except ConnectionFailed as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_RUNTIME
        except ApiError as exc:
            from gflow.cli.render import safe  # the daemon's words may quote a job's fields
            print(f"Error: {safe(exc)}", file=sys.stderr)
            return EXIT_RUNTIME
        except CommandError as exc:
            print(str(exc), file=sys.stderr)
            return exc.code
        except GflowError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code
            if code is None or isinstance(code, int):
                return code or 0
            print(code, file=sys.stderr)
            return EXIT_RUNTIME
        except KeyboardInterrupt:
            print("", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # `gqueue | head`: the reader went away; not an error worth a traceback.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return EXIT_OK

    return wrapper


def api_text(status: int, body) -> str:
    """The daemon's error message, control characters escaped (render.safe)."""
    from gflow.cli.render import safe
    from gflow.client import error_text
    return safe(error_text(status, body))


def parse_value(fn: Callable, text: str, flag: str):
    """Run a gflow.parsing function on a flag's value; a bad value is a runtime error (rc 1,
    as 0.4.13 parses these after clap) naming the flag and the value."""
    try:
        return fn(text)
    except GflowError as exc:
        raise CommandError(f"Error: invalid value '{text}' for {flag}: {plain(exc)}") from None


def resolve_job_ids(client, text: str, flag: str = "JOB") -> list[int]:
    """An id list (`1,3,5-7`, 0.4.13's rules) whose items may also be `@` / `@~N` (your
    latest jobs, resolved by the daemon): `@` works wherever an id does."""
    from gflow.parsing import is_shorthand, parse_id_list
    items = text.split(",")
    refs = [item.strip() for item in items if item.strip().startswith("@")]
    rest = ",".join(item for item in items if not item.strip().startswith("@"))
    ids = set(parse_value(parse_id_list, rest if refs else text, flag)) \
        if rest.strip() or not refs else set()
    for ref in refs:
        if not is_shorthand(ref):
            raise CommandError(f"Error: Invalid job ID: {ref}")
        try:
            ids.add(client.resolve(current_user(), ref))
        except ApiError as exc:
            raise CommandError(f"Error: Failed to resolve job ID '{ref}': {exc}") from None
    return sorted(ids)


def parse_since(text: str, flag: str = "--since") -> int:
    """`--since` of gqueue/gstats: 0.4.13's forms (`1h`, `2d`, `3w`, `today`, `yesterday`, a
    Unix timestamp) plus ISO 8601 dates and times, which its help promised but it refused.
    `today` is local midnight (0.4.13: UTC midnight)."""
    import time
    now = time.time()
    s = text.strip().lower()
    if s in ("today", "yesterday"):
        lt = time.localtime(now)
        day = lt.tm_mday - (1 if s == "yesterday" else 0)
        return int(time.mktime((lt.tm_year, lt.tm_mon, day, 0, 0, 0, 0, 0, -1)))
    from gflow.errors import ParseError
    from gflow.parsing import parse_since as _since
    try:
        return _since(text, now)
    except ParseError as exc:
        from datetime import datetime
        iso = text.strip()
        if iso[-1:] in "zZ":
            iso = iso[:-1] + "+00:00"
        try:
            return int(datetime.fromisoformat(iso).timestamp())
        except ValueError:
            pass
        reason = str(exc)
        if reason.startswith("Invalid time format."):
            reason = ("expected 1h, 2d, 3w, today, yesterday, a Unix timestamp or an ISO 8601 "
                      "date/time (2026-01-28 or 2026-01-28T14:00)")
        raise CommandError(f"Error: invalid value '{text}' for {flag}: {reason}") from None
