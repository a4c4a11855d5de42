"""`gflowd init`: write a gflow.toml, interactively (a 5-step wizard) or from flags.

Follows gflow 0.4.13 (spec/cli.md §5.1): the same flags, messages, written file and
summary. Differences, on purpose:
- without `--timezone` the zone stored is the machine's IANA name (TZ, /etc/timezone,
  /etc/localtime); when it cannot be found the key is left out (local time) instead of
  0.4.13's guess from the UTC offset (+8 -> Asia/Shanghai, anything unknown -> UTC);
- our `--gpu-poll-interval-secs` (and the wizard's advanced step) writes
  `[daemon] gpu_poll_interval_secs`;
- a bad answer in the wizard is asked again instead of ending it, and "no" to "port in
  use, continue?" asks for another port.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from gflow.cli.common import CommandError

STRATEGIES = ("sequential", "random")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 59000


def add_init_parser(sub, globals_parent) -> None:
    from gflow.cli.common import int_type
    p = sub.add_parser(
        "init", parents=[globals_parent], help="write a configuration file (a wizard on a terminal)",
        description="Write ~/.config/gflow/gflow.toml (or -c PATH): a 5-step wizard on a "
                    "terminal, flags and defaults with --yes or without a terminal.")
    p.add_argument("--yes", action="store_true",
                   help="no questions: use the flags and defaults")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--advanced", action="store_true",
                   help="ask the advanced questions (notifications, GPU polling)")
    p.add_argument("--gpus", metavar="INDICES", help="GPUs the scheduler may use: 0,2 or 0-3")
    p.add_argument("--host", metavar="HOST", help="address the daemon listens on")
    p.add_argument("--port", metavar="PORT", type=int_type(0, 65535, "port"),
                   help="port the daemon listens on")
    p.add_argument("--timezone", metavar="TZ",
                   help="IANA time zone (e.g. Asia/Shanghai), or 'local'")
    p.add_argument("--gpu-allocation-strategy", metavar="STRATEGY",
                   help="sequential or random")
    p.add_argument("--gpu-poll-interval-secs", metavar="SECS",
                   help="how often NVML is polled (our setting)")


# --- the settings --------------------------------------------------------------------------

@dataclass
class Detected:
    """GPUs found at init time: (index, memory MB) pairs and a one-line description."""
    gpus: list = field(default_factory=list)
    message: str = ""

    @property
    def indices(self) -> list[int]:
        return [index for index, _ in self.gpus]


@dataclass
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    gpus: Optional[list[int]] = None
    strategy: str = "sequential"
    timezone: Optional[str] = None
    poll_secs: Optional[float] = None
    webhooks: list[str] = field(default_factory=list)
    notifications: bool = False
    max_deliveries: int = 16


def detect_gpus() -> Detected:
    """The GPUs the daemon would see (NVML, or GFLOW_FAKE_GPUS); warns when detection fails."""
    from gflow.errors import ParseError
    from gflow.gpu import GpuInventory
    try:
        inventory = GpuInventory(os.environ.get("GFLOW_FAKE_GPUS"))
    except ParseError as exc:
        print(f"Warning: GPU detection failed: {exc}", file=sys.stderr)
        return Detected()
    try:
        if inventory.source == "none":
            reason = inventory.message.split("; running with 0 GPUs")[0] or "NVML init failed"
            print(f"Warning: GPU detection failed: {reason}", file=sys.stderr)
            return Detected()
        return Detected([(g.index, g.memory_total_mb) for g in inventory.poll()],
                        inventory.message)
    finally:
        inventory.close()


def validate_gpus(spec: str, detected: Detected) -> list[int]:
    """0.4.13's rules: out-of-range indices are dropped with a warning; none left is an
    error; with no GPUs detected every index is accepted as is."""
    from gflow.errors import ParseError
    from gflow.parsing import parse_gpu_spec
    try:
        indices = sorted(set(parse_gpu_spec(spec)))
    except ParseError as exc:
        raise CommandError(f"Invalid GPU indices '{spec}': {exc}") from None
    count = len(detected.gpus)
    if count == 0:
        return indices
    valid = [i for i in indices if i < count]
    invalid = [i for i in indices if i >= count]
    if invalid:
        print(f"Warning: Ignoring invalid GPU indices [{', '.join(map(str, invalid))}] "
              f"(only {count} GPU(s) detected).", file=sys.stderr)
    if not valid:
        raise CommandError(f"No valid GPU indices specified (detected {count} GPU(s)).")
    return valid


def validate_strategy(text: str) -> str:
    value = text.strip().lower()
    if value not in STRATEGIES:
        raise CommandError(f"Invalid GPU allocation strategy '{text}'. Use 'sequential' or "
                           "'random'.\n\nCaused by:\n    Matching variant not found")
    return value


def validate_timezone(text: Optional[str], detected: Optional[str]) -> Optional[str]:
    """None (flag absent) -> the detected zone; `local` or empty -> None (key left out)."""
    if text is None:
        return detected
    name = text.strip()
    if not name or name.lower() == "local":
        return None
    if not is_zone(name):
        raise CommandError(f"Invalid timezone: {name}\n\nCaused by:\n    failed to parse timezone")
    return name


def validate_poll(text: str) -> float:
    import math
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise CommandError(f"Invalid value '{text}' for --gpu-poll-interval-secs: expected a "
                           "number of seconds > 0")
    return value


def is_zone(name: str) -> bool:
    import zoneinfo
    if not name or name.startswith("/") or ".." in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, OSError, KeyError):   # KeyError: ZoneInfoNotFoundError
        return False
    return True


def local_zone_name(env=None, etc: str = "/etc") -> Optional[str]:
    """The machine's IANA zone: $TZ, /etc/timezone, or where /etc/localtime points."""
    env = os.environ if env is None else env
    tz = (env.get("TZ") or "").strip().lstrip(":")
    if tz:
        return tz if is_zone(tz) else None
    try:
        with open(os.path.join(etc, "timezone")) as f:
            name = f.read().strip()
        if is_zone(name):
            return name
    except OSError:
        pass
    try:
        target = os.path.realpath(os.path.join(etc, "localtime"))
    except OSError:
        return None
    marker = "/zoneinfo/"
    if marker in target:
        name = target.split(marker, 1)[1]
        for prefix in ("posix/", "right/"):
            if name.startswith(prefix):
                name = name[len(prefix):]
        if is_zone(name):
            return name
    return None


def format_indices(indices) -> str:
    return ",".join(str(i) for i in indices)


# --- the file ----------------------------------------------------------------------------

def document(s: Settings) -> dict:
    doc: dict = {}
    if s.timezone:
        doc["timezone"] = s.timezone
    daemon: dict = {"host": s.host, "port": s.port}
    if s.gpus is not None:
        daemon["gpus"] = list(s.gpus)
    daemon["gpu_allocation_strategy"] = s.strategy
    if s.poll_secs is not None:
        daemon["gpu_poll_interval_secs"] = (int(s.poll_secs) if float(s.poll_secs).is_integer()
                                            else s.poll_secs)
    doc["daemon"] = daemon
    if s.notifications:
        doc["notifications"] = {
            "enabled": True, "max_concurrent_deliveries": s.max_deliveries,
            "webhooks": [{"url": url, "events": ["*"], "timeout_secs": 10, "max_retries": 3}
                         for url in s.webhooks]}
    return doc


def render(s: Settings, now: Optional[float] = None) -> str:
    import tomli_w
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return f"# Generated by gflowd init on {stamp}\n\n" + tomli_w.dumps(document(s))


def write_atomically(path: Path, text: str) -> None:
    """`.gflow.toml.tmp.<pid>` beside the target, fsynced, then renamed over it."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"Failed to create config directory {parent}: "
                           f"{exc.strerror or exc}") from None
    tmp = parent / f".gflow.toml.tmp.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CommandError(f"Failed to write {path}: {exc.strerror or exc}") from None
    try:
        fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def check_written(path: Path) -> None:
    """The file must load as it is, without warnings (a bug here would bite at `up`)."""
    from gflow.config import load_config
    from gflow.errors import ConfigError
    try:
        config = load_config(path, env={"HOME": str(Path.home())})
    except ConfigError as exc:
        raise CommandError(f"gflowd init wrote a file that does not load: {exc}") from None
    if config.warnings:
        raise CommandError(f"gflowd init wrote a file with warnings: {'; '.join(config.warnings)}")


def print_summary(path: Path, s: Settings, detected: Detected) -> None:
    print(f"Configuration saved to: {path}")
    print()
    print("Configuration Summary:")
    if s.gpus is None:
        if not detected.gpus:
            print("  GPUs: all (no GPUs detected at init time)")
        else:
            print(f"  GPUs: {detected.indices[0]}-{detected.indices[-1]} (all detected)")
    else:
        print(f"  GPUs: {format_indices(s.gpus)}")
    print(f"  Host: {s.host}")
    print(f"  Port: {s.port}")
    print(f"  GPU allocation strategy: {s.strategy}")
    if s.poll_secs is not None:
        print(f"  GPU poll interval: {s.poll_secs:g}s")
    print(f"  Timezone: {s.timezone or 'local'}")
    if s.notifications and s.webhooks:
        print(f"  Notifications: enabled ({len(s.webhooks)} webhook(s))")
    print()
    print("Next steps:")
    print("  1. Start the daemon: gflowd up")
    print("  2. Check status: gflowd status")
    print("  3. Submit a job: gbatch --gpus 1 script.sh")


def target_path(args) -> Path:
    if args.config:
        return Path(os.path.abspath(os.path.expanduser(args.config)))
    from gflow.paths import Paths
    return Paths.from_env().config_file


# --- the command -------------------------------------------------------------------------

def cmd_init(args) -> int:
    path = target_path(args)
    if path.exists() and not args.force:
        raise CommandError(f"Config file already exists: {path} (use --force to overwrite)")
    interactive = not args.yes and sys.stdin.isatty() and sys.stdout.isatty()
    zone = local_zone_name()

    s = Settings()
    if args.host is not None:
        if not args.host.strip():
            raise CommandError("Invalid value '' for --host: expected a host name or address")
        s.host = args.host.strip()
    if args.port is not None:
        s.port = args.port
    if args.gpu_allocation_strategy is not None:
        s.strategy = validate_strategy(args.gpu_allocation_strategy)
    if args.gpu_poll_interval_secs is not None:
        s.poll_secs = validate_poll(args.gpu_poll_interval_secs)
    if args.timezone is not None:
        validate_timezone(args.timezone, zone)      # a bad flag fails before any question
    detected = detect_gpus()

    if not interactive:
        if args.gpus is not None:
            s.gpus = validate_gpus(args.gpus, detected)
        s.timezone = validate_timezone(args.timezone, zone)
        text = render(s)
    else:
        text = Wizard(args, s, detected, zone, path).run()
    write_atomically(path, text)
    check_written(path)
    print_summary(path, s, detected)
    return 0


class Aborted(CommandError):
    def __init__(self):
        super().__init__("Aborted by user")


class Wizard:
    """The interactive steps; plain prompts on stdout, answers from stdin (EOF aborts)."""

    def __init__(self, args, settings: Settings, detected: Detected, zone: Optional[str],
                 path: Path, read: Callable[[str], str] = input):
        self.args, self.s, self.detected, self.zone, self.path = (
            args, settings, detected, zone, path)
        self._read = read

    # prompts
    def ask(self, prompt: str, default: Optional[str] = None) -> str:
        shown = f"{prompt} [{default}]: " if default not in (None, "") else f"{prompt}: "
        try:
            answer = self._read(shown)
        except EOFError:
            print()
            raise Aborted() from None
        answer = answer.strip()
        return answer if answer else (default or "")

    def confirm(self, prompt: str, default: bool) -> bool:
        while True:
            answer = self.ask(f"{prompt} {'[Y/n]' if default else '[y/N]'}", None).lower()
            if not answer:
                return default
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            print("  Please answer y or n.")

    def ask_valid(self, prompt: str, default: Optional[str], convert: Callable[[str], object]):
        while True:
            answer = self.ask(prompt, default)
            try:
                return convert(answer)
            except CommandError as exc:
                print(f"  {str(exc).splitlines()[0]}")

    # steps
    def run(self) -> str:
        print("gflow Configuration Wizard\n")
        print("Welcome to gflow! Let's set up your scheduler.\n")
        self.step_gpus()
        self.step_network()
        self.step_timezone()
        self.step_advanced()
        text = render(self.s)
        print("Configuration preview:\n")
        print(text)
        if not self.confirm(f"Write configuration to {self.path}?", True):
            raise Aborted()
        return text

    def step_gpus(self) -> None:
        d = self.detected
        print("[1/5] Detecting GPUs...")
        if not d.gpus:
            print("No NVIDIA GPUs detected (or NVML is unavailable).")
        else:
            print(f"Found {len(d.gpus)} GPU(s): {d.message}")
            for index, memory_mb in d.gpus:
                print(f"  GPU {index}: {memory_mb}MB")
        print()
        print("[2/5] GPU Selection")
        if self.args.gpus is not None:
            self.s.gpus = validate_gpus(self.args.gpus, d)
            print(f"GPUs: {format_indices(self.s.gpus)} (from --gpus)")
        elif not d.gpus:
            print("Skipping GPU selection.")
        else:
            whole = f"{d.indices[0]}-{d.indices[-1]}"
            print("Which GPUs should gflow manage?")
            print(f"  1) All GPUs ({whole}) [recommended]")
            print("  2) Specific GPUs")
            print("  3) Configure later (use defaults)")
            choice = self.ask_valid("Choice", "1", self._choice)
            if choice == 2:
                self.s.gpus = self.ask_valid("Enter GPU indices (e.g., 0,2 or 0-3)", whole,
                                             lambda a: validate_gpus(a, d))
            else:
                self.s.gpus = None
        if self.args.gpu_allocation_strategy is None and (d.gpus or self.s.gpus):
            self.s.strategy = self.ask_valid("GPU allocation strategy (sequential/random)",
                                             self.s.strategy, validate_strategy)
        print()

    @staticmethod
    def _choice(answer: str) -> int:
        if answer.strip() in ("1", "2", "3"):
            return int(answer)
        raise CommandError("Please answer 1, 2 or 3.")

    def step_network(self) -> None:
        from gflow.cli.common import int_type
        print("[3/5] Network Configuration")
        self.s.host = self.ask_valid("Daemon host", self.s.host, _host)
        port_type = int_type(0, 65535, "port")

        def port(answer: str) -> int:
            try:
                return port_type(answer)
            except Exception as exc:  # argparse.ArgumentTypeError
                raise CommandError(str(exc)) from None
        while True:
            self.s.port = self.ask_valid("Daemon port", str(self.s.port), port)
            if port_looks_available(self.s.host, self.s.port):
                break
            if self.confirm(f"Port {self.s.port} may be in use on host '{self.s.host}'. "
                            "Continue anyway?", False):
                break
            # "no" means "not this port", not "stop the wizard" (0.4.13 aborted here)
            print("  Choose another port (0 lets the system pick one at start).")
        if self.s.host not in LOOPBACK:
            print(f"Note: gflowd has no authentication: anyone who can reach "
                  f"{self.s.host}:{self.s.port} can submit and cancel jobs.")
        print()

    def step_timezone(self) -> None:
        print("[4/5] Timezone")
        if self.args.timezone is not None:
            self.s.timezone = validate_timezone(self.args.timezone, self.zone)
            print(f"Timezone: {self.s.timezone or 'local'} (from --timezone)")
        elif self.zone:
            print(f"Detected timezone: {self.zone}")
            self.s.timezone = self.zone if self.confirm("Store this timezone in config?",
                                                        True) else None
        else:
            print("Could not detect the machine's time zone name.")
            self.s.timezone = self.ask_valid("Timezone (IANA name, or 'local')", "local",
                                             lambda a: validate_timezone(a, None))
        print()

    def step_advanced(self) -> None:
        print("[5/5] Advanced Options")
        if self.args.advanced or self.confirm("Configure advanced options?", False):
            if self.args.gpu_poll_interval_secs is None:
                default = "10"
                self.s.poll_secs = self.ask_valid("GPU poll interval in seconds", default,
                                                  validate_poll)
                if self.s.poll_secs == 10.0:
                    self.s.poll_secs = None          # the default: not written
            if self.confirm("Enable webhook notifications?", False):
                self.s.notifications = True
                self.s.webhooks = self.ask_valid(
                    "Webhook URL(s) (comma-separated, leave empty to skip)", "", _urls)
                self.s.max_deliveries = self.ask_valid(
                    "Max concurrent webhook deliveries", str(self.s.max_deliveries),
                    _positive_int)
        print()


def _host(answer: str) -> str:
    if not answer.strip():
        raise CommandError("Please enter a host name or address.")
    return answer.strip()


def _urls(answer: str) -> list[str]:
    urls = [u.strip() for u in answer.split(",") if u.strip()]
    for url in urls:
        if not url.lower().startswith(("http://", "https://")):
            raise CommandError(f"Not an http:// or https:// URL: {url}")
    return urls


def _positive_int(answer: str) -> int:
    if answer.strip().isdigit() and int(answer) >= 1:
        return int(answer)
    raise CommandError("Please enter a whole number >= 1.")


def port_looks_available(host: str, port: int) -> bool:
    import socket
    if port == 0:
        return True
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return True           # cannot tell; the daemon says so at `up`
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(addr)
        except OSError:
            return False
    return True
