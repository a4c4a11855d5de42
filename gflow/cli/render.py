"""Rendering shared by the commands: 0.4.13's tables, state codes, colours and job cells."""

from __future__ import annotations

import os
import re
import sys
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Unicode's control characters (category Cc): C0, DEL and C1 (0x9b is a one-byte CSI).
# Left as patterns: re compiles them on first use, which plain text never reaches.
CONTROL = "[\x00-\x1f\x7f-\x9f]"
_C1 = "[\x7f-\x9f]"

STATE_SHORT = {"Queued": "PD", "Hold": "H", "Running": "R", "Finished": "CD", "Failed": "F",
               "Cancelled": "CA", "Timeout": "TO"}
STATE_STYLE = {
    "Queued": "\x1b[3m{}\x1b[0m", "Hold": "\x1b[1m{}\x1b[0m",
    "Running": "\x1b[1m\x1b[32m{}\x1b[39m\x1b[0m", "Finished": "\x1b[2m{}\x1b[0m",
    "Failed": "\x1b[1m\x1b[31m{}\x1b[39m\x1b[0m", "Cancelled": "\x1b[9m{}\x1b[0m",
    "Timeout": "\x1b[4m{}\x1b[0m",
}


STATES = ("Queued", "Hold", "Running", "Finished", "Failed", "Cancelled", "Timeout")
ACTIVE = ("Queued", "Hold", "Running")
FINAL = ("Finished", "Failed", "Cancelled", "Timeout")


def parse_state(text: str) -> str:
    """A state name as 0.4.13 spells it (`Running`, `R`, `r`) or in any case (`running`);
    ValueError otherwise. Returns the long name."""
    t = text.strip()
    for state in STATES:
        if t.lower() in (state.lower(), STATE_SHORT[state].lower()):
            return state
    raise ValueError(t)


STATE_HELP = "Queued|PD, Hold|H, Running|R, Finished|CD, Failed|F, Cancelled|CA, Timeout|TO"


def use_colour(stream=None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (0.4.13 always colours)."""
    if os.environ.get("NO_COLOR"):
        return False
    return is_terminal(stream)


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def styled_state(state: str, colour: bool) -> str:
    code = STATE_SHORT.get(state, state)
    return STATE_STYLE[state].format(code) if colour and state in STATE_STYLE else code


def bold(text: str, colour: bool) -> str:
    return f"\x1b[1m{text}\x1b[0m" if colour else text


def dim(text: str, colour: bool) -> str:
    return f"\x1b[2m{text}\x1b[0m" if colour else text


def safe(text) -> str:
    """Text from the daemon with every control character shown as `\\xNN`.

    The commands print daemon-provided text (names, commands, users, projects, reasons)
    through this. Whoever submitted a job chose that text and other users print it: a raw
    ESC or CSI could retitle their terminal, erase or overwrite lines, or fake output.
    Tab and newline are escaped too, so a value stays on its own line and a table cell
    keeps its width. One visible form for all, Python's `\\x` escape (`\\x1b`, `\\x0a`);
    backslashes are left alone, so text without a control character is unchanged.
    gflow.logutil escapes log records the same way.
    """
    text = text if isinstance(text, str) else str(text)
    if not has_control(text):
        return text
    return re.sub(CONTROL, _hex_escape, text)


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (one C-level check for plain text)."""
    return not text.isprintable() and re.search(CONTROL, text) is not None


def _hex_escape(m) -> str:
    return f"\\x{ord(m.group()):02x}"


def safe_json(text: str) -> str:
    """json.dumps output (ensure_ascii=False) with DEL and C1 as `\\u00NN` escapes too:
    json escapes C0 itself, and these are still valid JSON, so the data is unchanged."""
    return re.sub(_C1, lambda m: f"\\u{ord(m.group()):04x}", text)


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def display_width(text: str) -> int:
    if "\x1b" in text:
        text = ANSI_RE.sub("", text)
    if text.isascii():
        return len(text)
    import unicodedata
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def table(rows: list[list[str]], sep: str = "   ") -> str:
    """tabled's Style::blank(): one space each side, cells left-aligned, `sep` between."""
    if not rows:
        return ""
    ncols = len(rows[0])
    if ncols and all(len(r) == ncols for r in rows):
        return table_columns(list(zip(*rows)), sep)
    widths = [0] * max(len(r) for r in rows)   # ragged rows: each row joins its own cells
    measured = [[display_width(cell) for cell in row] for row in rows]
    for row in measured:
        for i, w in enumerate(row):
            if w > widths[i]:
                widths[i] = w
    lines = []
    for row, ws in zip(rows, measured):
        cells = [cell + " " * (widths[i] - ws[i]) for i, cell in enumerate(row)]
        lines.append(" " + sep.join(cells) + " ")
    return "\n".join(lines)


def table_columns(columns: list[list[str]], sep: str = "   ") -> str:
    """table() of the rows that `columns` (equal lengths, the header first) make up.

    Built a column at a time (issue 21: `gqueue -a` of 100k jobs): a column of plain ASCII
    text, the usual one, is measured and padded with len() and %-formatting in C; a cell with
    an escape or a wide character is measured once, with display_width.
    """
    if not columns or not columns[0]:
        return ""
    specs = []
    args = []
    for col in columns:
        joined = "".join(col)              # TypeError for a non-text cell, as before
        if joined.isascii() and "\x1b" not in joined:
            width = max(map(len, col))
            specs.append("%%-%ds" % width if width else "%s")
            args.append(col)
            continue
        known = {c: len(c) if c.isascii() and "\x1b" not in c else display_width(c)
                 for c in set(col)}         # a styled ST column has a few distinct cells
        ws = list(map(known.__getitem__, col))
        width = max(ws)
        specs.append("%s")
        args.append([c + " " * (width - w) for c, w in zip(col, ws)])
    fmt = " " + sep.replace("%", "%%").join(specs) + " "
    return "\n".join([fmt % row for row in zip(*args)])


def hms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def wire_time(value) -> Optional[float]:
    if not value:
        return None
    if isinstance(value, list):
        return value[0] + value[1] / 1e9
    return value["secs_since_epoch"] + value["nanos_since_epoch"] / 1e9


def wire_duration(value) -> Optional[float]:
    if not value:
        return None
    if isinstance(value, list):
        return value[0] + value[1] / 1e9
    return value["secs"] + value["nanos"] / 1e9


def runtime(job: dict, now: Optional[float] = None) -> Optional[float]:
    started = wire_time(job.get("started_at"))
    if started is None:
        return None
    finished = wire_time(job.get("finished_at"))
    return (finished if finished is not None else (now or time.time())) - started


def reason_display(reason) -> Optional[str]:
    if reason is None:
        return None
    if isinstance(reason, str):
        return {"WaitingForDependency": "Dependency",
                "WaitingForResources": "Resources"}.get(reason, reason)
    (key, val), = reason.items()
    return f"{key}:{val}"


def reason_text(job: dict) -> Optional[str]:
    """The NODELIST(REASON) text without parentheses, or None where 0.4.13 shows `-`."""
    state = job.get("state", "Queued")
    stored = reason_display(job.get("reason"))
    if stored is not None:
        return None if stored == "CancelledByUser" else stored
    if state == "Hold":
        return "JobHeldUser"
    if state == "Queued" and job.get("pending_reason") in ("BeginTime", "Quota"):
        return job["pending_reason"]         # ours (issue 17), an extra key
    if state == "Queued":
        return "Dependency" if (job.get("depends_on_ids") or job.get("depends_on") is not None) \
            else "Resources"
    return None


def nodelist_cell(job: dict) -> str:
    state = job.get("state", "Queued")
    if state == "Running":
        return ",".join(str(i) for i in job.get("gpu_ids") or [])
    if state in ("Queued", "Hold", "Cancelled"):
        text = reason_text(job)
        return f"({text})" if text else "-"
    return "-"


def format_memory(mb: Optional[int]) -> str:
    if mb is None:
        return "-"
    if mb < 1024:
        return f"{mb}M"
    gb = mb / 1024
    return f"{gb:.0f}G" if gb - int(gb) < 0.01 else f"{gb:.1f}G"
