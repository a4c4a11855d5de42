"""Configuration: the TOML file, a fixed list of environment variables and CLI overrides, validated into frozen dataclasses."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from gflow.config_email import EMAIL_KEYS, EmailConfig, parse_email
from gflow.config_fairshare import FAIR_SHARE_KEYS, FairShareConfig, parse_fair_share
from gflow.config_executor import ExecutorConfig, executor_keys, parse_executor
from gflow.config_quota import QuotaConfig, parse_quota, quota_keys
from gflow.errors import ConfigError, ParseError
from gflow.parsing import parse_gpu_spec
from gflow.paths import Paths

__all__ = [
    "DaemonConfig", "SchedulerConfig", "LauncherConfig", "ApiConfig", "ProjectsConfig",
    "WebhookConfig", "NotificationsConfig", "ShellConfig", "LoggingConfig", "SecurityConfig",
    "GpuConfig", "Config",
    "load_config", "config_keys", "ENV_VARS", "WEBHOOK_EVENTS", "LOG_LEVELS",
]

MiB = 1024 * 1024

WEBHOOK_EVENTS = (
    "job_submitted", "job_started", "job_completed", "job_failed", "job_cancelled",
    "job_timeout", "job_held", "job_released", "gpu_available", "reservation_created",
    "reservation_cancelled", "job_retrying", "job_suspended", "job_resumed",
    "gpu_idle_held",
)
LOG_LEVELS = ("error", "warn", "info", "debug", "trace")  # "warning" is read as "warn"
STRATEGIES = ("sequential", "random")
PROJECT_MAX_LEN = 64


# --- the dataclasses -------------------------------------------------------------------

@dataclass(frozen=True)
class DaemonConfig:
    host: str = "localhost"
    port: int = 59000
    gpus: Optional[tuple[int, ...]] = None          # allow-list; None = all detected GPUs
    gpu_allocation_strategy: str = "sequential"     # "sequential" | "random"
    gpu_poll_interval_secs: float = 10.0            # ours
    # The Unix socket beside the TCP port (ours): None = the default place
    # (Paths.daemon_socket), "" = none.
    socket: Optional[str] = None
    # The account gflowd runs as when it is neither root nor the client's own (ours):
    # clients refuse a daemon run by anyone else.
    user: Optional[str] = None
    # [daemon.fair_share] (config_fairshare.py): recent GPU use orders equal priorities.
    fair_share: FairShareConfig = field(default_factory=FairShareConfig)

    @property
    def base_url(self) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):  # a bare IPv6 address
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class SchedulerConfig:
    starvation_secs: float = 1800.0
    periodic_pass_secs: float = 5.0
    # The write-ahead log is folded into a new snapshot once it is larger than this
    # (and than twice the last snapshot).
    snapshot_wal_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class LauncherConfig:
    kill_grace_secs: float = 10.0
    memory_poll_secs: float = 2.0


@dataclass(frozen=True)
class ApiConfig:
    threads: int = 16
    max_body_bytes: int = 16 * MiB
    # A submitted job's command (or script path) and its captured environment (the
    # bytes of KEY=VALUE pairs): every job is held in the scheduler's memory and state
    # file, so one request may not bloat them with megabytes of text (ours).
    max_command_bytes: int = 1 * MiB
    max_env_bytes: int = 1 * MiB


@dataclass(frozen=True)
class ProjectsConfig:
    known_projects: tuple[str, ...] = ()
    require_project: bool = False


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    events: tuple[str, ...] = ("*",)
    filter_users: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()       # (name, value) pairs, file order
    timeout_secs: int = 10
    max_retries: int = 3

    @property
    def headers_dict(self) -> dict[str, str]:
        return dict(self.headers)

    def wants(self, event: str) -> bool:
        return "*" in self.events or event in self.events


@dataclass(frozen=True)
class NotificationsConfig:
    enabled: bool = False
    max_concurrent_deliveries: int = 16
    webhooks: tuple[WebhookConfig, ...] = ()
    email: Optional[EmailConfig] = None             # [notifications.email] (config_email.py)


@dataclass(frozen=True)
class ShellConfig:
    prompt: str = "gflow> "
    refresh_secs: float = 2.0
    aliases: tuple[tuple[str, str], ...] = ()       # (name, expansion) pairs, file order


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    max_bytes: int = 10 * MiB
    backups: int = 5


@dataclass(frozen=True)
class SecurityConfig:
    """Who may do what (ours; 0.4.13 trusts whatever user name a request carries)."""

    anonymous: str = "read"                         # "read" | "none"
    admins: tuple[str, ...] = ()                    # user names with every right
    admin_group: Optional[str] = None               # members are admins too
    private_logs: bool = False                      # logs readable by owner/admins only
    run_as: str = "submitter"                       # "submitter" | "daemon"
    # Host header values accepted beyond this daemon's own names (deliberate remote use);
    # "*" accepts any.
    allowed_hosts: tuple[str, ...] = ()
    # Origins (scheme://host:port) whose pages may send requests, beyond this daemon's own.
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuConfig:
    """GPU insight (ours): when a process holding GPU memory counts as an idle holder."""

    idle_util_percent: float = 5.0                  # below this utilisation: idle
    idle_after: float = 1800.0                      # seconds idle before it is flagged


@dataclass(frozen=True)
class Config:
    timezone: Optional[str] = None                  # IANA name; None = local time
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    projects: ProjectsConfig = field(default_factory=ProjectsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    shell: ShellConfig = field(default_factory=ShellConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)               # [gpu] (ours)
    quota: QuotaConfig = field(default_factory=QuotaConfig)      # [quota] (config_quota.py)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # config_executor.py
    source: Optional[Path] = None                   # the file that was read, if any
    warnings: tuple[str, ...] = ()


# --- validators ------------------------------------------------------------------------
# Each takes (value, key, source) and returns the normalised value or raises ConfigError.

Validator = Callable[[Any, str, str], Any]


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _bad(key: str, expected: str, value: Any, source: str) -> ConfigError:
    return ConfigError(f"{key}: expected {expected}, got {_show(value)} (from {source})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo: int, hi: Optional[int] = None) -> Validator:
    expected = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"

    def check(v: Any, key: str, source: str) -> int:
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            raise _bad(key, expected, v, source)
        return v
    return check


def _number(lo: float, *, strict: bool) -> Validator:
    expected = f"a number {'>' if strict else '>='} {lo:g}"

    def check(v: Any, key: str, source: str) -> float:
        if (not (_is_int(v) or isinstance(v, float)) or not math.isfinite(v)
                or (v <= lo if strict else v < lo)):
            raise _bad(key, expected, v, source)
        return float(v)
    return check


def _bool(v: Any, key: str, source: str) -> bool:
    if not isinstance(v, bool):
        raise _bad(key, "true or false", v, source)
    return v


def _nonempty_str(v: Any, key: str, source: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _bad(key, "a non-empty string", v, source)
    return v.strip()


def _any_str(v: Any, key: str, source: str) -> str:
    if not isinstance(v, str):
        raise _bad(key, "a string", v, source)
    return v


def _str_list(v: Any, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise _bad(key, "a list of strings", v, source)
    return tuple(v)


def _gpus(v: Any, key: str, source: str) -> Optional[tuple[int, ...]]:
    if isinstance(v, str):
        if v.strip().lower() == "all":
            return None
        try:
            return tuple(parse_gpu_spec(v))
        except ParseError as e:
            raise ConfigError(f"{key}: {e} (from {source})") from None
    if (not isinstance(v, (list, tuple))
            or not all(_is_int(x) and 0 <= x <= 2**32 - 1 for x in v)):
        raise _bad(key, 'a list of GPU indices (e.g. [0, 2]), a spec like "0-3", or "all"',
                   v, source)
    return tuple(sorted(set(v)))


def _strategy(v: Any, key: str, source: str) -> str:
    if not isinstance(v, str) or v.strip().lower() not in STRATEGIES:
        raise _bad(key, '"sequential" or "random"', v, source)
    return v.strip().lower()


def _timezone(v: Any, key: str, source: str) -> Optional[str]:
    if not isinstance(v, str):
        raise _bad(key, 'an IANA time zone name (e.g. "Asia/Shanghai") or "local"', v, source)
    name = v.strip()
    if name == "" or name.lower() == "local":
        return None
    try:
        import zoneinfo  # only when a zone is configured: it costs ~4 ms to import
        zoneinfo.ZoneInfo(name)
    except (ImportError, ValueError, OSError, KeyError):  # KeyError: ZoneInfoNotFoundError
        raise ConfigError(
            f"{key}: unknown time zone {_show(v)}: expected an IANA name "
            f'(e.g. "Asia/Shanghai", "UTC") or "local" (from {source})') from None
    return name


def _log_level(v: Any, key: str, source: str) -> str:
    level = v.strip().lower() if isinstance(v, str) else None
    if level == "warning":
        level = "warn"
    if level not in LOG_LEVELS:
        raise _bad(key, "one of error, warn, info, debug, trace", v, source)
    return level


def _projects(v: Any, key: str, source: str) -> tuple[str, ...]:
    names = _str_list(v, key, source)
    out: list[str] = []
    for name in names:
        name = name.strip()
        if not name:
            raise _bad(key, "non-empty project names", v, source)
        if len(name.encode()) > PROJECT_MAX_LEN:
            raise _bad(key, f"project names of at most {PROJECT_MAX_LEN} characters",
                       v, source)
        if name not in out:
            out.append(name)
    return tuple(out)


def _string_table(what: str) -> Validator:
    def check(v: Any, key: str, source: str) -> tuple[tuple[str, str], ...]:
        if isinstance(v, Mapping):
            items = list(v.items())
        elif isinstance(v, (list, tuple)) and all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in v):
            items = [tuple(p) for p in v]
        else:
            raise _bad(key, f"a table of {what}", v, source)
        for name, value in items:
            if not isinstance(name, str) or not name or not isinstance(value, str):
                raise _bad(key, f"a table of {what}", v, source)
        return tuple((str(n), str(x)) for n, x in items)
    return check


def _events(v: Any, key: str, source: str) -> tuple[str, ...]:
    events = _str_list(v, key, source)
    for event in events:
        if event != "*" and event not in WEBHOOK_EVENTS:
            raise ConfigError(
                f"{key}: unknown event {_show(event)}; expected \"*\" or one of "
                f"{', '.join(WEBHOOK_EVENTS)} (from {source})")
    return events


def _choice(*allowed: str) -> Validator:
    def check(v: Any, key: str, source: str) -> str:
        if not isinstance(v, str) or v.strip().lower() not in allowed:
            raise _bad(key, " or ".join(f'"{a}"' for a in allowed), v, source)
        return v.strip().lower()
    return check


def _optional_name(v: Any, key: str, source: str) -> Optional[str]:
    if not isinstance(v, str):
        raise _bad(key, "a group name", v, source)
    return v.strip() or None


def _socket_path(v: Any, key: str, source: str) -> str:
    """An absolute path, or "" for no Unix socket."""
    if not isinstance(v, str) or (v.strip() and not os.path.isabs(v.strip())):
        raise _bad(key, 'an absolute path or "" (no socket)', v, source)
    return v.strip()


def _duration_secs(v: Any, key: str, source: str) -> float:
    """Seconds: a number, or text such as "30m", "2h", "1h30m", "90s"."""
    import re
    expected = 'a duration: seconds, or text such as "30m", "2h", "1h30m"'
    if _is_int(v) or isinstance(v, float):
        if not math.isfinite(v) or v <= 0:
            raise _bad(key, expected, v, source)
        return float(v)
    text = v.strip().lower() if isinstance(v, str) else ""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not text or re.sub(r"\d+(?:\.\d+)?\s*[hms]\s*", "", text) or not parts:
        raise _bad(key, expected, v, source)
    secs = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if secs <= 0:
        raise _bad(key, expected, v, source)
    return secs


def _percent(v: Any, key: str, source: str) -> float:
    if not (_is_int(v) or isinstance(v, float)) or not 0 <= v <= 100:
        raise _bad(key, "a percentage (0-100)", v, source)
    return float(v)


def _url(v: Any, key: str, source: str) -> str:
    if not isinstance(v, str) or not v.strip().lower().startswith(("http://", "https://")):
        raise _bad(key, "an http:// or https:// URL", v, source)
    return v.strip()


# --- the schema ------------------------------------------------------------------------

_SECTIONS: dict[str, type] = {
    "daemon": DaemonConfig, "scheduler": SchedulerConfig, "launcher": LauncherConfig,
    "api": ApiConfig, "projects": ProjectsConfig, "notifications": NotificationsConfig,
    "shell": ShellConfig, "logging": LoggingConfig, "security": SecurityConfig,
    "gpu": GpuConfig,
}

_SCHEMA: dict[str, Validator] = {
    "timezone": _timezone,
    "daemon.host": _nonempty_str,
    "daemon.port": _int(0, 65535),   # 0 = any free port (test daemons)
    "daemon.gpus": _gpus,
    "daemon.gpu_allocation_strategy": _strategy,
    "daemon.gpu_poll_interval_secs": _number(0, strict=True),
    "daemon.socket": _socket_path,
    "daemon.user": _optional_name,
    "daemon.fair_share": parse_fair_share,
    "scheduler.starvation_secs": _number(0, strict=True),
    "scheduler.periodic_pass_secs": _number(0, strict=True),
    "scheduler.snapshot_wal_bytes": _int(1024),
    "launcher.kill_grace_secs": _number(0, strict=False),
    "launcher.memory_poll_secs": _number(0, strict=True),
    "api.threads": _int(1, 1024),
    "api.max_body_bytes": _int(1024),
    "api.max_command_bytes": _int(1),
    "api.max_env_bytes": _int(1),
    "projects.known_projects": _projects,
    "projects.require_project": _bool,
    "notifications.enabled": _bool,
    "notifications.max_concurrent_deliveries": _int(1),
    "shell.prompt": _any_str,
    "shell.refresh_secs": _number(0, strict=True),
    "shell.aliases": _string_table("alias names to command lines"),
    "logging.level": _log_level,
    "logging.max_bytes": _int(0),
    "logging.backups": _int(0),
    "security.anonymous": _choice("read", "none"),
    "security.admins": _str_list,
    "security.admin_group": _optional_name,
    "security.private_logs": _bool,
    "security.run_as": _choice("submitter", "daemon"),
    "security.allowed_hosts": _str_list,
    "security.allowed_origins": _str_list,
    "gpu.idle_util_percent": _percent,
    "gpu.idle_after": _duration_secs,
}

_WEBHOOK_SCHEMA: dict[str, Validator] = {
    "url": _url,
    "events": _events,
    "filter_users": _str_list,
    "headers": _string_table("header names to strings"),
    "timeout_secs": _int(1),
    "max_retries": _int(0),
}
_WEBHOOKS_KEY = "notifications.webhooks"

# Environment variables read: an explicit list, never every GFLOW_* (a job's
# GFLOW_JOB_ID / GFLOW_ARRAY_TASK_ID must not break a gbatch run inside it).
ENV_VARS: dict[str, str] = {
    "GFLOW_DAEMON_HOST": "daemon.host",
    "GFLOW_DAEMON_PORT": "daemon.port",
    "GFLOW_DAEMON_GPUS": "daemon.gpus",
    "GFLOW_DAEMON_GPU_ALLOCATION_STRATEGY": "daemon.gpu_allocation_strategy",
    "GFLOW_TIMEZONE": "timezone",
    "GFLOW_DAEMON_SOCKET": "daemon.socket",
    "GFLOW_DAEMON_USER": "daemon.user",
    "GFLOW_RUN_AS": "security.run_as",
}


def config_keys() -> set[str]:
    """Every dotted key this module knows; webhook fields as `notifications.webhooks.<field>`."""
    keys = set(_SCHEMA) | {_WEBHOOKS_KEY}
    keys |= {f"{_WEBHOOKS_KEY}.{name}" for name in _WEBHOOK_SCHEMA}
    keys |= {"notifications.email"} | {f"notifications.email.{n}" for n in EMAIL_KEYS}
    return keys | quota_keys() | set(FAIR_SHARE_KEYS) | executor_keys()


# --- loading ---------------------------------------------------------------------------

def _env_value(key: str, raw: str) -> Any:
    """Environment strings to the types the validators expect (bad ones pass through)."""
    if key == "daemon.port":
        text = raw.strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else raw
    return raw


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"TOML parse error in {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"TOML parse error in {path}: not valid UTF-8 ({e.reason})") from None
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}") from None


def _webhooks(v: Any, source: str, warnings: list[str]) -> tuple[WebhookConfig, ...]:
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        raise _bad(_WEBHOOKS_KEY, "an array of tables ([[notifications.webhooks]])", v, source)
    hooks = []
    for i, table in enumerate(v):
        prefix = f"{_WEBHOOKS_KEY}[{i}]"
        kwargs: dict[str, Any] = {}
        for name, value in table.items():
            check = _WEBHOOK_SCHEMA.get(name)
            if check is None:
                warnings.append(f"unknown setting '{prefix}.{name}' in {source} (ignored)")
                continue
            kwargs[name] = check(value, f"{prefix}.{name}", source)
        if "url" not in kwargs:
            raise ConfigError(f"{prefix}.url: required setting missing (from {source})")
        hooks.append(WebhookConfig(**kwargs))
    return tuple(hooks)


def _flatten_file(doc: dict[str, Any], source: str, values: dict[str, Any],
                  warnings: list[str]) -> None:
    for top, value in doc.items():
        if top in _SECTIONS:
            if not isinstance(value, dict):
                raise _bad(top, "a table", value, source)
            for name, item in value.items():
                key = f"{top}.{name}"
                if key == _WEBHOOKS_KEY:
                    values[key] = _webhooks(item, source, warnings)
                elif key == "notifications.email":
                    values[key] = parse_email(item, key, source, WEBHOOK_EVENTS)
                elif key in _SCHEMA:
                    values[key] = _SCHEMA[key](item, key, source)
                else:
                    warnings.append(f"unknown setting '{key}' in {source} (ignored)")
        elif top == "quota":
            values[top] = parse_quota(value, source, warnings)
        elif top == "executor":
            values[top] = parse_executor(value, source)
        elif top in _SCHEMA:
            values[top] = _SCHEMA[top](value, top, source)
        else:
            warnings.append(f"unknown setting '{top}' in {source} (ignored)")


def _build(values: dict[str, Any], source: Optional[Path], warnings: list[str]) -> Config:
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        kwargs = {f.name: values[f"{name}.{f.name}"] for f in fields(cls)
                  if f"{name}.{f.name}" in values}
        sections[name] = cls(**kwargs)
    top = {k: values[k] for k in ("timezone", "quota", "executor") if k in values}
    return Config(**top, **sections, source=source, warnings=tuple(warnings))


def load_config(path: Union[str, os.PathLike, None] = None, *,
                env: Optional[Mapping[str, str]] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """Defaults < config file < environment < `overrides` (dotted keys from CLI flags).

    `path` None reads the default file when it exists; an explicit path that does not
    exist adds the warning `Config file "<path>" not found.` and uses defaults. Unknown
    settings add warnings; bad values raise ConfigError naming the key and the source.
    Overrides whose value is None are ignored (flag not given).
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    warnings: list[str] = []
    source: Optional[Path] = None

    if path is None:
        default = Paths.from_env(env).config_file
        if default.exists():
            source = default
    else:
        explicit = Path(path)
        if explicit.exists():
            source = explicit
        else:
            warnings.append(f'Config file "{explicit}" not found.')

    if source is not None:
        doc = _read_toml(source)
        _flatten_file(doc, str(source), values, warnings)

    for var, key in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        values[key] = _SCHEMA[key](_env_value(key, raw), key, var)

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == _WEBHOOKS_KEY:
            values[key] = _webhooks([_as_table(h) for h in value], "command line", warnings)
        elif key in _SCHEMA:
            values[key] = _SCHEMA[key](value, key, "command line")
        else:
            raise ConfigError(f"{key}: unknown setting (from command line)")

    return _build(values, source, warnings)


def _as_table(hook: Any) -> Any:
    if isinstance(hook, WebhookConfig):
        return {f.name: getattr(hook, f.name) for f in fields(hook)}
    return hook
