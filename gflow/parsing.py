"""Parsers and formatters for user-supplied values (times, memory, id ranges, GPU specs, `@~N`, params) with gflow 0.4.13's rules and error texts."""

from __future__ import annotations

import math
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Iterable, Optional, Union

from gflow.errors import ParseError

__all__ = [
    "parse_time_limit", "parse_job_time_limit", "format_duration", "parse_memory_mb",
    "parse_job_memory_mb", "format_memory",
    "parse_id_list", "parse_gpu_spec", "parse_job_ref", "is_shorthand", "parse_since",
    "parse_array", "parse_param", "shell_escape", "shell_join", "parse_duration_spec",
    "MAX_ID_LIST_ITEMS", "MAX_PARAM_VALUES",
]

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

MAX_ID_LIST_ITEMS = 100_000   # ours: 0.4.13 would try to build "0-4294967295" in memory
MAX_PARAM_VALUES = 10_000     # 0.4.13: "Range too large (max 10000 values)"

# Rust's `str::trim` strips Unicode White_Space; Python's `str.strip()` also strips
# \x1c-\x1f, so the set is spelled out.
_WS = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
       "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")

_EMPTY = "cannot parse integer from empty string"
_INVALID = "invalid digit found in string"
_TOO_LARGE = "number too large to fit in target type"
_TOO_SMALL = "number too small to fit in target type"


def _fail(context: str, cause: Optional[str] = None) -> ParseError:
    """A ParseError whose text is `context` or `context: cause` (one line).

    `err.context` and `err.cause` are kept apart so a CLI can print 0.4.13's
    `context\\n\\nCaused by:\\n    cause` form byte for byte.
    """
    err = ParseError(context if cause is None else f"{context}: {cause}")
    err.context = context  # type: ignore[attr-defined]
    err.cause = cause  # type: ignore[attr-defined]
    return err


class _IntError(Exception):
    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


def _rust_int(text: str, lo: int, hi: int) -> int:
    """Parse like Rust's `<int>::from_str`: optional sign, ASCII digits, no trimming."""
    if not text:
        raise _IntError(_EMPTY)
    signed = lo < 0
    negative = False
    digits = text
    if text[0] in "+-":
        if len(text) == 1:
            raise _IntError(_INVALID)
        if text[0] == "+":
            digits = text[1:]
        elif signed:
            negative, digits = True, text[1:]
    value = 0
    for ch in digits:
        if not ("0" <= ch <= "9"):
            raise _IntError(_INVALID)
        value = value * 10 + (ord(ch) - 48)
        if negative and -value < lo:
            raise _IntError(_TOO_SMALL)
        if not negative and value > hi:
            raise _IntError(_TOO_LARGE)
    return -value if negative else value


def _u64(text: str) -> int:
    return _rust_int(text, 0, U64_MAX)


def _u32(text: str) -> int:
    return _rust_int(text, 0, U32_MAX)


# --- time limits -----------------------------------------------------------------------

def parse_time_limit(text: str) -> int:
    """Seconds from `MM`, `MM:SS` or `HH:MM:SS` (a single number is minutes; 0.4.13 §4.1)."""
    parts = text.split(":")

    def part(i: int, context: str) -> int:
        try:
            return _u64(parts[i])
        except _IntError as e:
            raise _fail(context, e.cause) from None

    if len(parts) == 1:
        total = part(0, "Invalid time format. Expected number of minutes") * 60
    elif len(parts) == 2:
        total = (part(0, "Invalid minutes in MM:SS format") * 60
                 + part(1, "Invalid seconds in MM:SS format"))
    elif len(parts) == 3:
        total = (part(0, "Invalid hours in HH:MM:SS format") * 3600
                 + part(1, "Invalid minutes in HH:MM:SS format") * 60
                 + part(2, "Invalid seconds in HH:MM:SS format"))
    else:
        raise _fail("Invalid time format. Expected formats: HH:MM:SS, MM:SS, or MM")
    if total > U64_MAX:
        raise _fail("Time limit too large", _TOO_LARGE)
    return total


def parse_job_time_limit(text: str) -> int:
    """parse_time_limit for a job, refusing limits no job can live with (ours, issue 23).

    0.4.13 took `0` (an instant Timeout) and `25:99:99` (minutes or seconds over 59);
    minutes stay unbounded in `MM:SS` (`90:00`) and hours in `HH:MM:SS`.
    """
    secs = parse_time_limit(text)
    parts = text.split(":")
    if len(parts) == 3 and (int(parts[1]) > 59 or int(parts[2]) > 59):
        raise _fail("minutes and seconds must be 0-59 in HH:MM:SS (e.g. 25:30:00)")
    if len(parts) == 2 and int(parts[1]) > 59:
        raise _fail("seconds must be 0-59 in MM:SS (90 minutes: 90:00 or 1:30:00)")
    if secs == 0:
        raise _fail("a time limit must be at least 1 second (leave it out for no limit)")
    return secs


def format_duration(secs: float) -> str:
    """`HH:MM:SS`, zero padded, hours unbounded (`25:00:00`); negatives show as zero."""
    try:
        total = max(0, int(secs))
    except (OverflowError, ValueError):  # inf / nan
        total = 0
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}"


# --- memory ----------------------------------------------------------------------------

def parse_memory_mb(text: str) -> int:
    """Megabytes from `512`, `1024M`/`1024m` or `2G`/`2g` (integers only; 0.4.13 §4.2)."""
    s = text.strip(_WS)
    if not s:
        raise _fail("Memory limit cannot be empty")
    if s[-1] in "Gg":
        try:
            mb = _u64(s[:-1].strip(_WS)) * 1024
        except _IntError as e:
            raise _fail("Invalid memory value in GB format", e.cause) from None
    elif s[-1] in "Mm":
        try:
            mb = _u64(s[:-1].strip(_WS))
        except _IntError as e:
            raise _fail("Invalid memory value in MB format", e.cause) from None
    else:
        try:
            mb = _u64(s)
        except _IntError as e:
            raise _fail("Invalid memory format. Expected formats: 100G, 1024M, or 100 (MB)",
                        e.cause) from None
    if mb > U64_MAX:
        raise _fail("Memory limit too large", _TOO_LARGE)
    return mb


def parse_job_memory_mb(text: str) -> int:
    """parse_memory_mb for a job's limit: `-5G` and `0` are refused as not positive."""
    if text.strip(_WS).startswith("-"):
        raise _fail("memory must be positive")
    mb = parse_memory_mb(text)
    if mb == 0:
        raise _fail("memory must be positive")
    return mb


def format_memory(mb: int) -> str:
    """`512M` below 1024 MB, else GB with 0 decimals (`2G`) or 1 (`2.5G`) as 0.4.13 shows it."""
    if mb < 1024:
        return f"{mb}M"
    gb = mb / 1024
    if gb - math.floor(gb) < 0.01:
        return f"{gb:.0f}G"
    return f"{gb:.1f}G"


# --- id lists and GPU specs ------------------------------------------------------------

class _RangeError(Exception):
    pass


def _range_items(text: str, limit: int) -> list[int]:
    """The `range_parser` crate's `parse::<u32>` (value separator `,`, range `-`)."""
    def number(s: str) -> int:
        try:
            return _u32(s.strip(_WS))
        except _IntError:
            raise _RangeError(f"Not a number: {s}") from None

    out: list[int] = []
    for item in text.split(","):
        if "-" not in item:
            out.append(number(item))
        else:
            pieces = item.split("-")
            if len(pieces) == 2 and pieces[0] == "":
                out.append(number("-" + pieces[1]))  # a negative number: never a u32
                continue
            if len(pieces) == 2:
                start, end = number(pieces[0]), number(pieces[1])
            elif len(pieces) == 3 and pieces[0] == "":
                start, end = number("-" + pieces[1]), number(pieces[2])
            elif len(pieces) == 3:
                raise _RangeError(f"Start of the range cannot be bigger than the end: {item}")
            elif len(pieces) == 4:
                start, end = number("-" + pieces[1]), number("-" + pieces[3])
            else:
                raise _RangeError(f"Invalid range syntax: {item}")
            if start > end:
                raise _RangeError(f"Start of the range cannot be bigger than the end: {item}")
            if len(out) + (end - start + 1) > limit:
                raise _RangeError(f"Range too large: {item.strip(_WS)} (max {limit} values)")
            out.extend(range(start, end + 1))
        if len(out) > limit:
            raise _RangeError(f"Too many values (max {limit})")
    return out


def parse_id_list(text: str, what: str = "job ID", *, max_items: int = MAX_ID_LIST_ITEMS) -> list[int]:
    """Sorted, de-duplicated u32s from `1,3,5-7` (spaces tolerated; 0.4.13 §4.3).

    Errors read `Invalid <what> or range: <input>: <cause>`, e.g.
    `Invalid job ID or range: 3-1: Start of the range cannot be bigger than the end: 3-1`.
    """
    try:
        items = _range_items(text.strip(_WS), max_items)
    except _RangeError as e:
        raise _fail(f"Invalid {what} or range: {text}", str(e)) from None
    return sorted(set(items))


def parse_gpu_spec(text: str) -> list[int]:
    """GPU indices from `0`, `0,2,4`, `0-3`, `0-1,3,5-6`; callers handle the word `all`."""
    return parse_id_list(text, "GPU index")


# --- single job references -------------------------------------------------------------

# Patterns are compiled on first use (re's cache), not when a command imports this module.
_SHORTHAND = r"@(?:~[0-9]+)?\Z"


def is_shorthand(text: str) -> bool:
    """True for `@` and `@~N` with N >= 1 (surrounding whitespace ignored)."""
    s = text.strip(_WS)
    if not re.match(_SHORTHAND, s):
        return False
    return s == "@" or s[2:].strip("0") != ""


def parse_job_ref(text: str) -> Union[int, str]:
    """A job id (int) or a shorthand `@` / `@~N` (returned stripped, resolved by the daemon)."""
    s = text.strip(_WS)
    if s.startswith("@"):
        if is_shorthand(s):
            return s
        raise _fail(f"Invalid job ID: {s}")
    try:
        return _u32(s)
    except _IntError:
        raise _fail(f"Invalid job ID: {s}") from None


# --- --since ---------------------------------------------------------------------------

def parse_since(text: str, now: float) -> int:
    """Unix time from `1h`, `2d`, `3w`, `today`, `yesterday` (UTC days) or a Unix timestamp."""
    s = text.strip(_WS).lower()
    now_secs = math.floor(now)
    for suffix, unit, context in (("h", 3600, "Invalid hours format"),
                                  ("d", 86400, "Invalid days format"),
                                  ("w", 604800, "Invalid weeks format")):
        if s.endswith(suffix):
            try:
                n = _u64(s[:-1])
            except _IntError as e:
                raise _fail(context, e.cause) from None
            since = now_secs - n * unit
            if since < 0:
                raise _fail("Failed to convert to Unix timestamp",
                            "second time provided was later than self")
            return since
    if s == "today":
        return (now_secs // 86400) * 86400
    if s == "yesterday":
        return (now_secs // 86400 - 1) * 86400
    try:
        return _rust_int(s, I64_MIN, I64_MAX)
    except _IntError:
        raise _fail("Invalid time format. Expected formats: '1h', '2d', '3w', 'today', "
                    "'yesterday', or Unix timestamp") from None


# --- --array ---------------------------------------------------------------------------

def parse_array(text: str) -> tuple[int, int]:
    """`A-B` (inclusive, u32, no trimming) as `(A, B)`."""
    if "-" not in text:
        raise _fail("Invalid array format. Expected format like '1-10'.")
    a, b = text.split("-", 1)
    try:
        start = _u32(a)
    except _IntError as e:
        raise _fail("Invalid array start index", e.cause) from None
    try:
        end = _u32(b)
    except _IntError as e:
        raise _fail("Invalid array end index", e.cause) from None
    if start > end:
        raise _fail("Array start index cannot be greater than end index")
    return start, end


# --- --param ---------------------------------------------------------------------------

_FLOAT = r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)\Z"


def _rust_f64(text: str) -> float:
    if not text:
        raise _fail("cannot parse float from empty string")
    if not re.match(_FLOAT, text, re.IGNORECASE | re.ASCII):
        raise _fail("invalid float literal")
    return float(text)


def _rust_display(x: float) -> str:
    """Rust's `Display` for f64: shortest round-trip digits, never an exponent."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    from decimal import Decimal  # ~1 ms to import; only --param values need it
    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "-0" or (x == 0 and math.copysign(1.0, x) < 0):
        return "-0"
    return text


def _round_half_away(x: float) -> float:
    if not math.isfinite(x):
        return x
    a = abs(x)
    f = float(math.floor(a))
    if a - f >= 0.5:
        f += 1.0
    return math.copysign(f, x)


def _range_values(start: float, stop: float, step: float) -> list[str]:
    if (step > 0 and start > stop) or (step < 0 and start < stop):
        raise _fail("Step direction doesn't match start/stop")
    step_text = _rust_display(abs(step))
    decimals = len(step_text.split(".", 1)[1].rstrip("0")) if "." in step_text else 0
    try:
        power = 10.0 ** max(decimals, 10)
    except OverflowError:
        power = math.inf  # Rust's powi overflows to inf
    eps = 1e-10
    values: list[str] = []
    index = 0
    while True:
        current = start + step * float(index)
        if step > 0 and current > stop + eps:
            break
        if step < 0 and current < stop - eps:
            break
        rounded = _round_half_away(current * power) / power
        whole = _round_half_away(rounded)
        if abs(rounded - whole) < eps:
            text = str(max(I64_MIN, min(I64_MAX, int(whole))))  # Rust `as i64` saturates
        elif decimals > 0 and math.isfinite(rounded):
            text = f"{rounded:.{decimals}f}"
        else:
            text = _rust_display(rounded)
        values.append(text)
        index += 1
        if len(values) > MAX_PARAM_VALUES:
            raise _fail(f"Range too large (max {MAX_PARAM_VALUES} values)")
    return values


def _parse_range_spec(spec: str) -> list[str]:
    parts = spec.split(":")
    start = _rust_f64(parts[0].strip(_WS))
    stop = _rust_f64(parts[1].strip(_WS))
    if len(parts) == 2:
        step = 1.0 if start <= stop else -1.0
    else:
        step = _rust_f64(parts[2].strip(_WS))
        if step == 0.0:
            raise _fail("Step cannot be zero")
    return _range_values(start, stop, step)


def parse_param(text: str) -> tuple[str, list[str]]:
    """`name=v1,v2,...` or `name=start:stop[:step]` (float range) as `(name, values)`."""
    if "=" not in text:
        raise _fail("Invalid param format. Expected 'name=val1,val2,...'")
    raw_name, spec = text.split("=", 1)
    name = raw_name.strip(_WS)
    if not name:
        raise _fail("Parameter name cannot be empty")
    if 1 <= spec.count(":") <= 2 and "," not in spec:
        values = _parse_range_spec(spec)
    else:
        values = [v for v in (item.strip(_WS) for item in spec.split(",")) if v]
    if not values:
        raise _fail("Parameter must have at least one value")
    return name, values


# --- shell escaping --------------------------------------------------------------------

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=/,.+")


def shell_escape(word: str) -> str:
    """The shell-escape crate (unix): safe words as is, else `'...'` with `'` and `!` escaped."""
    if word and all(ch in _SAFE for ch in word):
        return word
    out = ["'"]
    for ch in word:
        if ch in "'!":
            out.append("'\\" + ch + "'")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def shell_join(words: Iterable[str]) -> str:
    """Each word escaped, joined with single spaces (gbatch's command mode)."""
    return " ".join(shell_escape(w) for w in words)


# --- reservation durations -------------------------------------------------------------

def parse_duration_spec(text: str, *, half_hours: bool = True) -> int:
    """Seconds from `1h`, `30m`, `2h30m`, `90m` (gctl reserve; 0.4.13 §12.4).

    A bare number is refused (`Duration must end with a unit (h or m)`), as in 0.4.13.
    With `half_hours` (the default) the total must be a multiple of 30 minutes.
    """
    total = 0
    number = ""
    for ch in text:
        if "0" <= ch <= "9":
            number += ch
        elif ch in "hH":
            try:
                total += _u64(number) * 3600
            except _IntError as e:
                raise _fail("Invalid number before 'h'", e.cause) from None
            number = ""
        elif ch in "mM":
            try:
                total += _u64(number) * 60
            except _IntError as e:
                raise _fail("Invalid number before 'm'", e.cause) from None
            number = ""
        elif ch in "sS":
            raise _fail("Seconds are not allowed in reservation duration. "
                        "Use hours (h) or minutes (m) only.")
        else:
            raise _fail(f"Invalid character in duration: {ch}")
    if number:
        raise _fail("Duration must end with a unit (h or m)")
    if total == 0:
        raise _fail("Duration must be greater than 0")
    if total > U64_MAX:
        raise _fail("Duration too large", _TOO_LARGE)
    if half_hours and total % 1800:
        raise _fail("Reservation duration must be a multiple of 30 minutes "
                    f"(e.g., 30m, 1h, 1h30m, 2h). Got: {text}")
    return total
