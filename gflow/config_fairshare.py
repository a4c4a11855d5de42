"""The `[daemon.fair_share]` settings: whether recent GPU use orders jobs of equal priority, and how fast it is forgotten."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gflow.errors import ConfigError

__all__ = ["FairShareConfig", "parse_fair_share", "FAIR_SHARE_KEYS"]

WEEK = 7 * 24 * 3600.0
FAIR_SHARE_KEYS = ("daemon.fair_share.enabled", "daemon.fair_share.half_life_secs",
                   "daemon.fair_share.half_life")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class FairShareConfig:
    # Off by default: jobs keep 0.4.13's order (priority, time limit, id) unless asked.
    enabled: bool = False
    half_life_secs: float = WEEK        # upstream's key; `half_life = "7d"` is the same


def _half_life(value: Any, key: str, source: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = float(value)
    else:
        m = _DURATION.match(value) if isinstance(value, str) else None
        if not m:
            raise ConfigError(f'{key}: expected seconds or a duration ("7d", "12h"), got '
                              f"{value!r} (from {source})")
        secs = float(m.group(1)) * _UNIT[m.group(2)]
    if secs <= 0:
        raise ConfigError(f"{key}: expected a duration > 0, got {value!r} (from {source})")
    return secs


def parse_fair_share(value: Any, key: str, source: str) -> FairShareConfig:
    """The [daemon.fair_share] table (a config validator: value, dotted key, source)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table, got {value!r} (from {source})")
    kwargs: dict = {}
    for name, item in value.items():
        if name == "enabled":
            if not isinstance(item, bool):
                raise ConfigError(f"{key}.enabled: expected true or false, got {item!r} "
                                  f"(from {source})")
            kwargs["enabled"] = item
        elif name in ("half_life_secs", "half_life"):
            kwargs["half_life_secs"] = _half_life(item, f"{key}.{name}", source)
        else:
            raise ConfigError(f"{key}.{name}: unknown setting (known: enabled, "
                              f"half_life_secs, half_life) (from {source})")
    return FairShareConfig(**kwargs)
