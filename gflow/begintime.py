"""Wall-clock start times (`gbatch --begin`, `gjob release --at`): parsed in the configured time zone, and shown back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Optional

from gflow.errors import ParseError

__all__ = ["parse_begin", "format_begin", "BEGIN_FORMATS"]

BEGIN_FORMATS = ("HH:MM[:SS] (the next time the clock shows it), YYYY-MM-DD, "
                 "YYYY-MM-DD HH:MM[:SS], ISO 8601 (2030-01-02T14:00:00+02:00), "
                 "now, now+N[s|m|h|d] (minutes without a unit)")

_RELATIVE = re.compile(r"^now(?:\s*\+\s*(\d{1,9})\s*([a-z]*))?$", re.IGNORECASE)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
# upstream's default unit for now+N is minutes; Slurm's words are accepted too
_UNITS = {"": 60, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
          "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400}


def _zone(tz: Optional[str]):
    if not tz:
        return None                      # the system's local time
    from zoneinfo import ZoneInfo
    try:
        return ZoneInfo(tz)
    except (ValueError, OSError, KeyError):
        raise ParseError(f"unknown time zone {tz!r}") from None


def parse_begin(text: str, now: float, tz: Optional[str] = None) -> float:
    """Epoch seconds for `text`, read in time zone `tz` (an IANA name; None: local time).
    `now` is passed in so that tests (and the daemon) decide what "now" is."""
    raw = (text or "").strip()
    if not raw:
        raise ParseError("empty start time: expected " + BEGIN_FORMATS)
    m = _RELATIVE.match(raw)
    if m:
        if m.group(1) is None:
            return float(now)
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise ParseError(f"invalid start time {raw!r}: unknown unit {m.group(2)!r} "
                             "(use s, m, h or d)")
        return float(now) + int(m.group(1)) * _UNITS[unit]
    zone = _zone(tz)
    m = _CLOCK.match(raw)
    if m:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ParseError(f"invalid start time {raw!r}: not a time of day")
        today = datetime.fromtimestamp(now, zone)
        for days in (0, 1, 2):           # 2: a day that skips the time (DST) is passed over
            day = (today + timedelta(days=days)).date()
            candidate = datetime(day.year, day.month, day.day, hour, minute, second,
                                 tzinfo=zone)
            if candidate.timestamp() > now:
                return candidate.timestamp()
        raise ParseError(f"invalid start time {raw!r}")   # pragma: no cover
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise ParseError(f"invalid start time {raw!r}: expected {BEGIN_FORMATS}") from None
    if when.tzinfo is None and zone is not None:
        when = when.replace(tzinfo=zone)
    return when.timestamp()              # naive and no zone: the system's local time


def format_begin(t: float, now: float, tz: Optional[str] = None) -> str:
    """HH:MM in the zone, with the date when `t` is not within the next 24 hours."""
    zone = _zone(tz)
    fmt = "%H:%M" if 0 <= t - now < 86400 else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(t, zone).strftime(fmt)
