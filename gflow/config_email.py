"""The `[notifications.email]` settings: the SMTP server, the sender, and which events mail whom."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from gflow.errors import ConfigError

__all__ = ["EmailConfig", "parse_email", "EMAIL_KEYS", "SECURITY"]

SECURITY = ("none", "starttls", "ssl")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


@dataclass(frozen=True)
class EmailConfig:
    smtp_host: str = "localhost"
    smtp_port: int = 25
    security: str = "none"               # "none" | "starttls" | "ssl" (SMTPS)
    username: str = ""                   # empty: no login
    password_file: str = ""              # read when sending (first line)
    password_env: str = ""               # or the name of a variable in gflowd's environment
    from_addr: str = "gflow@localhost"   # the `from` key
    to: tuple[str, ...] = ()             # who gets every wanted event (besides per-job mail)
    events: tuple[str, ...] = ("*",)
    filter_users: tuple[str, ...] = ()
    subject_prefix: str = "[gflow]"
    timeout_secs: int = 10
    max_retries: int = 3


EMAIL_KEYS = ("smtp_host", "smtp_port", "security", "username", "password_file",
              "password_env", "from", "to", "events", "filter_users", "subject_prefix",
              "timeout_secs", "max_retries")


def is_address(text: str) -> bool:
    """A bare address, or `Name <address>`."""
    m = re.match(r"^.*<([^<>]+)>\s*$", text)
    return bool(_ADDRESS.match(m.group(1) if m else text.strip()))


def parse_email(value: Any, key: str, source: str, events: tuple) -> EmailConfig:
    """[notifications.email]; `events` are the known event names."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table, got {value!r} (from {source})")

    def bad(name: str, expected: str, got: Any) -> ConfigError:
        return ConfigError(f"{key}.{name}: expected {expected}, got {got!r} (from {source})")

    kwargs: dict = {}
    for name, item in value.items():
        if name not in EMAIL_KEYS:
            raise ConfigError(f"{key}.{name}: unknown setting (known: {', '.join(EMAIL_KEYS)})"
                              f" (from {source})")
        if name in ("smtp_port", "timeout_secs", "max_retries"):
            lo, hi = {"smtp_port": (1, 65535), "timeout_secs": (1, 3600),
                      "max_retries": (0, 100)}[name]
            if isinstance(item, bool) or not isinstance(item, int) or not lo <= item <= hi:
                raise bad(name, f"an integer in {lo}..{hi}", item)
            kwargs[name] = item
        elif name in ("to", "events", "filter_users"):
            if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
                raise bad(name, "a list of strings", item)
            if name == "to" and not all(is_address(x) for x in item):
                raise bad(name, "e-mail addresses", item)
            if name == "events":
                unknown = [e for e in item if e != "*" and e not in events]
                if unknown:
                    raise bad(name, "event names (or \"*\")", unknown[0])
            kwargs[name] = tuple(item)
        elif name == "security":
            if item not in SECURITY:
                raise bad(name, " or ".join(f'"{s}"' for s in SECURITY), item)
            kwargs[name] = item
        else:
            if not isinstance(item, str):
                raise bad(name, "a string", item)
            if name == "from":
                if not is_address(item):
                    raise bad(name, "an e-mail address", item)
                kwargs["from_addr"] = item
            elif name == "smtp_host" and not item.strip():
                raise bad(name, "a host name", item)
            else:
                kwargs[name] = item.strip() if name != "subject_prefix" else item
    return EmailConfig(**kwargs)


def optional_password(cfg: EmailConfig, env) -> Optional[str]:
    """The SMTP password from its file or variable (None: none configured or empty)."""
    if cfg.password_file:
        with open(cfg.password_file, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n") or None
    if cfg.password_env:
        return env.get(cfg.password_env) or None
    return None
