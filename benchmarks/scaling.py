"""`python -m benchmarks --scale 1k,10k,100k,1m`: how cost grows with the number of jobs.

For each size and each side a fresh daemon is filled with that many queued jobs through
`POST /jobs/batch` and measured at that size by the scale scenario's own step
(`scenarios.scale_step`): submit rate, daemon PSS, restart to healthy, `GET /jobs`,
`gqueue -a -u all` and the state on disk. One side failing at one size (a timeout, a
crash, 0.4.13 at 1M) is a result: it is recorded, shown in the table and on the plot,
and the run goes on; that side's larger sizes are then skipped.

The result is a list of records, one per (size, side):
    {"side": "ours", "size": 100000, "seconds": 41.2, "loadavg": 1.3,
     "error": None | "why it failed", "skipped": False,
     "metrics": {"submit": {"value": ..., ...}, "daemon PSS": {...}, ...}}
`format_scaling_table` (pure) turns them into the table, `benchmarks/plot.py` into a PNG.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

from .daemons import BenchError
from .report import format_ratio, format_value
from .scenarios import scale_batch, scale_step, size_label

# (metric, unit, plot title) in the order of the table and the plot's panels.
SCALING_METRICS = [
    ("submit", "/s", "submit rate (jobs/s, higher is better)"),
    ("daemon PSS", "MB", "daemon memory, sum of PSS (MB)"),
    ("restart", "s", "restart until GET /health is 200 (s)"),
    ("GET /jobs", "s", "GET /jobs, whole body (s)"),
    ("gqueue -a -u all", "s", "gqueue -a -u all (s)"),
    ("state file", "MB", "state on disk after a restart (MB)"),
]
WALL = "wall time"                      # fill + measure + stop, per size and side
SIDE_NAMES = {"ours": "ours (gflowd, this checkout)", "theirs": "gflow 0.4.13"}
DEFAULT_TIMEOUT = 1200.0                # seconds per size and side


# -- sizes ------------------------------------------------------------------------------
def parse_sizes(text: str) -> list[int]:
    """"1k,10k,100k,1m" -> [1000, 10000, 100000, 1000000] (sorted, no duplicates).
    Suffixes k/m (any case), plain numbers, decimals ("2.5k"); every size must be a
    positive multiple of 1000 (the jobs go in 1000 a batch). ValueError otherwise."""
    sizes = set()
    for item in text.split(","):
        item = item.strip().lower().replace("_", "")
        if not item:
            continue
        mult = 1
        if item[-1] in "km":
            mult = 1000 if item[-1] == "k" else 1_000_000
            item = item[:-1]
        try:
            value = float(item) * mult
        except ValueError:
            raise ValueError(f"not a job count: {item!r} (expected e.g. 1k,10k,100k,1m)"
                             ) from None
        if value != value or value <= 0 or value != int(value) or int(value) % 1000:
            raise ValueError(f"each size must be a positive multiple of 1000, got {item}"
                             f"{'' if mult == 1 else 'km'[mult > 1000]}")
        sizes.add(int(value))
    if not sizes:
        raise ValueError("no sizes given (expected e.g. 1k,10k,100k,1m)")
    return sorted(sizes)


def default_reps(size: int) -> int:
    """Repeats of GET /jobs, gqueue and restart: 3 up to 100k, 1 above (a 1M restart
    or listing takes tens of seconds)."""
    return 3 if size <= 100_000 else 1


# -- running ----------------------------------------------------------------------------
class ScaleTimeout(BenchError):
    pass


@contextmanager
def deadline(seconds: float | None, what: str):
    """Raise ScaleTimeout in the main thread after `seconds` (SIGALRM); no-op if None
    or off the main thread's signal handling."""
    if not seconds:
        yield
        return

    def fire(signum, frame):
        raise ScaleTimeout(f"timed out after {seconds:g} s of {what}")

    try:
        old = signal.signal(signal.SIGALRM, fire)
    except ValueError:                  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_one(ctx, make, size: int, reps: int, timeout: float | None, batch: bytes) -> dict:
    rec = {"side": make.side, "size": size, "label": size_label(size), "reps": reps,
           "loadavg": round(os.getloadavg()[0], 2), "error": None, "skipped": False,
           "metrics": {}}
    phase = {"now": "starting the daemon"}
    t0 = time.monotonic()
    try:
        with make(ctx) as d:
            phase["now"] = "filling and measuring"
            with deadline(timeout, "filling and measuring"):
                rec["metrics"], _ = scale_step(d, 0, size, reps, batch)
            phase["now"] = "stopping the daemon"
    except Exception as exc:            # a failure of one side at one size is a result
        msg = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, BenchError):
            msg = f"{type(exc).__name__}: {msg}"
        rec["error"] = f"{msg} (while {phase['now']})"
    rec["seconds"] = round(time.monotonic() - t0, 1)
    return rec


def run_scaling(ctx, sides: dict, sizes: list[int], reps: int | None = None,
                timeout: float | None = DEFAULT_TIMEOUT) -> list[dict]:
    """Every size (smallest first), both sides at each size, a fresh daemon each."""
    batch = scale_batch()
    records: list[dict] = []
    failed: dict[str, str] = {}
    for size in sizes:
        for side, make in sides.items():
            label = size_label(size)
            if side in failed:
                records.append({"side": side, "size": size, "label": label, "error":
                                f"skipped: failed at {failed[side]}", "skipped": True,
                                "metrics": {}, "seconds": 0.0, "reps": 0, "loadavg": None})
                ctx.log(f"scale {label}: {side} skipped (failed at {failed[side]})")
                continue
            ctx.log(f"scale {label}: {side} ...")
            rec = run_one(ctx, make, size, reps or default_reps(size), timeout, batch)
            records.append(rec)
            if rec["error"]:
                failed[side] = label
                ctx.log(f"scale {label}: {side} FAILED after {rec['seconds']:.1f} s: "
                        f"{rec['error']}")
            else:
                m = rec["metrics"]
                ctx.log(f"scale {label}: {side} done in {rec['seconds']:.1f} s (submit "
                        f"{format_value(m['submit']['value'], '/s')}, PSS "
                        f"{format_value(m['daemon PSS']['value'], 'MB')}, restart "
                        f"{format_value(m['restart']['value'], 's')})")
    return records


# -- reporting (pure) -------------------------------------------------------------------
def value_of(rec: dict | None, metric: str) -> float | None:
    """The metric's value in one record; None when missing, failed or skipped."""
    if rec is None or rec.get("error"):
        return None
    if metric == WALL:
        return rec.get("seconds")
    m = (rec.get("metrics") or {}).get(metric)
    return None if m is None else m.get("value")


def by_key(records: list[dict]) -> dict:
    return {(r["side"], r["size"]): r for r in records}


def failures(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("error")]


def format_scaling_table(records: list[dict], markdown: bool = False) -> str:
    """metric | jobs | ours | theirs | ours/theirs, grouped by metric, sizes ascending; a
    failed or skipped side at a size reads "failed [n]" / "skipped [n]" with the reason
    as footnote n. The last group is each size's wall time (fill, measure, stop; for a
    failed side, the time until it failed)."""
    recs = by_key(records)
    sizes = sorted({r["size"] for r in records})
    notes: list[str] = []

    def cell(side, size, metric, unit):
        rec = recs.get((side, size))
        if rec is None:
            return "-"
        if rec.get("error"):
            note = f"{side} at {size_label(size)}: {rec['error']}"
            if note not in notes:
                notes.append(note)
            if rec.get("skipped"):
                return f"skipped [{notes.index(note) + 1}]"
            if metric == WALL:
                return f"{format_value(rec.get('seconds'), 's')} [{notes.index(note) + 1}]"
            return f"failed [{notes.index(note) + 1}]"
        text = format_value(value_of(rec, metric), unit)
        remark = ((rec.get("metrics") or {}).get(metric) or {}).get("remark")
        if remark:                      # e.g. `gflowd up` gave up waiting at 1M
            note = f"{side} at {size_label(size)}, {metric}: {remark}"
            if note not in notes:
                notes.append(note)
            text += f" [{notes.index(note) + 1}]"
        return text

    headers = ["metric", "jobs", "ours", "theirs", "ours/theirs"]
    body = []
    for metric, unit, _ in [*SCALING_METRICS, (WALL, "s", "")]:
        for size in sizes:
            ours = value_of(recs.get(("ours", size)), metric)
            theirs = value_of(recs.get(("theirs", size)), metric)
            r = None if ours is None or not theirs else ours / theirs
            body.append([metric, size_label(size), cell("ours", size, metric, unit),
                         cell("theirs", size, metric, unit), format_ratio(r)])
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|---|--:|--:|--:|--:|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                  for row in body]
    else:
        widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h)
                  for i, h in enumerate(headers)]

        def line(cells):
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines = [line(headers), line(["-" * w for w in widths])]
        lines += [line(row) for row in body]
    if notes:
        lines.append("")
        lines += [f"[{i + 1}] {n}" for i, n in enumerate(notes)]
    return "\n".join(lines)


def ours_failed(records: list[dict]) -> list[str]:
    return [f"scale {r['label']}/ours: {r['error']}" for r in records
            if r["side"] == "ours" and r.get("error") and not r.get("skipped")]
