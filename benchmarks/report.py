"""Pure parts of the benchmark runner: statistics, targets and the result table.

Nothing here starts a process or opens a socket, so tests/unit/test_benchmarks.py can
check it quickly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def median(samples) -> float | None:
    values = sorted(float(s) for s in samples if s is not None)
    if not values:
        return None
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    return (values[mid - 1] + values[mid]) / 2


def percentile(samples, q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    values = sorted(float(s) for s in samples if s is not None)
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    pos = (len(values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Target:
    """What "met" means for one metric. Ratios are always ours / theirs."""

    ratio_max: float | None = None      # ours/theirs must be <= this (lower is better)
    ratio_min: float | None = None      # ours/theirs must be >= this (higher is better)
    abs_max: float | None = None        # ours must be < this, in the metric's base unit
    abs_min: float | None = None        # ours must be >= this, in the metric's base unit
    aim: str | None = None              # a softer goal, shown but not judged

    def describe(self, unit: str) -> str:
        parts = []
        if self.ratio_max is not None:
            parts.append(f"<= {self.ratio_max:g}x")
        if self.ratio_min is not None:
            parts.append(f">= {self.ratio_min:g}x")
        if self.abs_max is not None:
            parts.append(f"< {format_value(self.abs_max, unit)}")
        if self.abs_min is not None:
            parts.append(f">= {format_value(self.abs_min, unit)}")
        text = " & ".join(parts) if parts else "-"
        if self.aim:
            text += f" (aim {self.aim})"
        return text

    def judge(self, ours: float | None, theirs: float | None) -> bool | None:
        """True/False when it can be decided, None when there is no target or no data."""
        checks = []
        if self.ratio_max is not None or self.ratio_min is not None:
            r = ratio(ours, theirs)
            if r is None:
                return None
            if self.ratio_max is not None:
                checks.append(r <= self.ratio_max)
            if self.ratio_min is not None:
                checks.append(r >= self.ratio_min)
        if self.abs_max is not None or self.abs_min is not None:
            if ours is None:
                return None
            if self.abs_max is not None:
                checks.append(ours < self.abs_max)
            if self.abs_min is not None:
                checks.append(ours >= self.abs_min)
        if not checks:
            return None
        return all(checks)


@dataclass(frozen=True)
class MetricSpec:
    scenario: str
    metric: str
    unit: str                       # "s", "/s", "MB", "B"
    target: Target = field(default_factory=Target)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} us"
        if value < 1:
            return f"{value * 1e3:.1f} ms" if value < 0.1 else f"{value * 1e3:.0f} ms"
        return f"{value:.2f} s"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "B":
        return f"{value / 1e6:.1f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"
    return f"{value:g} {unit}".strip()


def format_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    if r < 0.01:
        return f"{r:.4f}"
    if r < 10:
        return f"{r:.2f}"
    return f"{r:.0f}"


def verdict(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


@dataclass
class Row:
    spec: MetricSpec
    ours: float | None
    theirs: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.ours, self.theirs)

    @property
    def met(self) -> bool | None:
        return self.spec.target.judge(self.ours, self.theirs)

    def cells(self) -> list[str]:
        return [self.spec.scenario, self.spec.metric, format_value(self.ours, self.spec.unit),
                format_value(self.theirs, self.spec.unit), format_ratio(self.ratio),
                self.spec.target.describe(self.spec.unit), verdict(self.met)]


HEADERS = ["scenario", "metric", "ours", "theirs", "ratio", "target", "met?"]


def format_table(rows: list[Row], markdown: bool = False) -> str:
    """One table; notes become numbered footnotes under it."""
    notes: list[str] = []
    body = []
    for row in rows:
        cells = row.cells()
        if row.note:
            if row.note not in notes:
                notes.append(row.note)
            cells[1] += f" [{notes.index(row.note) + 1}]"
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(HEADERS) + " |",
                 "|" + "|".join("---" for _ in HEADERS) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
                  for cells in body]
    else:
        widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h)
                  for i, h in enumerate(HEADERS)]
        right = {2, 3, 4}

        def line(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines = [line(HEADERS), line(["-" * w for w in widths])]
        lines += [line(cells) for cells in body]
    if notes:
        lines.append("")
        lines += [f"[{i + 1}] {n}" for i, n in enumerate(notes)]
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    judged = [r for r in rows if r.met is not None]
    failed = [f"{r.spec.scenario}/{r.spec.metric}" for r in judged if not r.met]
    text = f"{sum(1 for r in judged if r.met)}/{len(judged)} targets met"
    if failed:
        text += "; not met: " + ", ".join(failed)
    return text
