"""`--plot PATH`: the --scale records as one PNG, a panel per metric, x = jobs (log),
one line per implementation. matplotlib (the `bench` extra) is imported only here, and
only when a plot is asked for. A side that failed or was skipped at a size is a missing
point: an x on the panel's floor at that size, and its reason under the figure."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from .scaling import SCALING_METRICS, SIDE_NAMES, failures, value_of
from .scenarios import size_label

STYLE = {"ours": {"color": "tab:blue", "marker": "o"},
         "theirs": {"color": "tab:orange", "marker": "s"}}


def series(records: list[dict], side: str, metric: str) -> tuple[list, list]:
    """(sizes, values) of one side's successful points, sizes ascending."""
    pts = sorted((r["size"], value_of(r, metric)) for r in records if r["side"] == side)
    pts = [(x, y) for x, y in pts if y is not None and y > 0]
    return [x for x, _ in pts], [y for _, y in pts]


def human(value: float, _pos=None) -> str:
    """Tick label: 0.05, 2, 300, 20k, 1.5M."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def failure_lines(records: list[dict], width: int = 150) -> list[str]:
    lines = []
    for r in failures(records):
        why = " ".join(r["error"].split())
        if len(why) > 220:
            why = why[:217] + "..."
        lines += textwrap.wrap(f"x  {SIDE_NAMES.get(r['side'], r['side'])} at "
                               f"{size_label(r['size'])} jobs: {why}", width,
                               subsequent_indent="    ")
    for r in records:
        for metric, m in sorted((r.get("metrics") or {}).items()):
            if m.get("remark"):
                lines += textwrap.wrap(f"*  {SIDE_NAMES.get(r['side'], r['side'])} at "
                                       f"{size_label(r['size'])} jobs, {metric}: "
                                       f"{m['remark']}", width, subsequent_indent="    ")
    return lines


def plot_scaling(records: list[dict], path, title: str = "", subtitle: str = "") -> Path:
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError("--plot needs matplotlib: .venv/bin/pip install -e '.[bench]' "
                           "(or pip install matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import (FixedLocator, FuncFormatter, LogLocator, NullFormatter,
                                   NullLocator)

    sizes = sorted({r["size"] for r in records})
    sides = [s for s in STYLE if any(r["side"] == s for r in records)]
    notes = failure_lines(records)
    ncols = 3
    nrows = -(-len(SCALING_METRICS) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(15, 4.2 * nrows + 1.1 + 0.22 * len(notes)))
    for ax, (metric, _unit, label) in zip(axes.flat, SCALING_METRICS):
        for side in sides:
            xs, ys = series(records, side, metric)
            if xs:
                ax.plot(xs, ys, label=SIDE_NAMES.get(side, side), linewidth=1.8,
                        markersize=6, **STYLE[side])
            for r in records:
                if r["side"] == side and r.get("error"):
                    # A missing point: an x on the panel's floor (axes coordinates in y).
                    ax.plot([r["size"]], [0.04 if side == "ours" else 0.1], linestyle="none",
                            marker="x", markersize=9, mew=2, color=STYLE[side]["color"],
                            transform=ax.get_xaxis_transform(), clip_on=False)
                    ax.annotate("skipped" if r.get("skipped") else "failed",
                                (r["size"], 0.04 if side == "ours" else 0.1),
                                xycoords=ax.get_xaxis_transform(), textcoords="offset points",
                                xytext=(-8, 0), ha="right", va="center", fontsize=8,
                                color=STYLE[side]["color"])
        ax.set_xscale("log")
        if ax.has_data() and any(series(records, s, metric)[0] for s in sides):
            ax.set_yscale("log")
            lo, hi = ax.get_ylim()
            ax.yaxis.set_major_formatter(FuncFormatter(human))
            if hi / lo < 1000:          # up to 3 decades: label 2x and 5x too
                ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2, 5)))
                ax.yaxis.set_minor_formatter(FuncFormatter(human))
            else:
                ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(sizes[0] / 2, sizes[-1] * 2)
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([size_label(s) for s in sizes])
        ax.set_title(label, fontsize=11)
        ax.set_xlabel("jobs in the daemon (log)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(SCALING_METRICS):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if not handles:
        for ax in axes.flat:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
    if handles:
        fig.legend(handles, labels, loc="upper right", ncol=len(handles), frameon=False)
    fig.suptitle(title or "Cost against the number of queued jobs", x=0.01, ha="left",
                 fontsize=13)
    sub = textwrap.wrap(subtitle, 190)
    if sub:
        fig.text(0.01, 1 - 0.5 / fig.get_figheight(), "\n".join(sub), fontsize=9, va="top")
    bottom = (0.35 + 0.22 * len(notes)) / fig.get_figheight()
    if notes:
        fig.text(0.01, 0.15 / fig.get_figheight(), "\n".join(notes), fontsize=8,
                 va="bottom", family="monospace")
    fig.tight_layout(rect=(0, bottom, 1, 1 - (0.6 + 0.17 * len(sub)) / fig.get_figheight()))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- python -m benchmarks.plot run1.json run2.json -o scaling.png ------------------------
def merge_runs(raws: list[dict]) -> list[dict]:
    """The "scaling" records of several --json files; a later file wins for the same
    (side, size)."""
    merged: dict = {}
    for raw in raws:
        for rec in raw.get("scaling") or []:
            merged[(rec["side"], rec["size"])] = rec
    return sorted(merged.values(), key=lambda r: (r["size"], r["side"]))


def describe_runs(raws: list[dict]) -> str:
    """The machine once, then per file: what it contributed to the merge, when, at what
    load ("ours+theirs 1k,10k: <date>, load average 7.1 -> 7.3")."""
    kept = {id(r) for r in merge_runs(raws)}
    parts = []
    for raw in raws:
        recs = [r for r in raw.get("scaling") or [] if id(r) in kept]
        if not recs:
            continue
        sides = "+".join(s for s in ("ours", "theirs") if any(r["side"] == s for r in recs))
        sizes = ",".join(size_label(n) for n in sorted({r["size"] for r in recs}))
        m = raw.get("machine") or {}
        load = (m.get("loadavg_start") or [0])[0]
        end = (m.get("loadavg_end") or [0])[0]
        parts.append(f"{sides} {sizes}: {m.get('date', '?')}, load average {load:.1f} -> "
                     f"{end:.1f}")
    m = (raws[-1].get("machine") or {}) if raws else {}
    head = (f"{m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), {m.get('memory', '?')} RAM, "
            f"Python {m.get('python', '?')}, commit {m.get('commit', '?')}")
    return head + "; " + "; ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plot",
                                description="Draw the --scale records of one or more "
                                            "--json files to one PNG (a later file wins "
                                            "for the same size and side).")
    p.add_argument("json", nargs="+", type=Path, help="files written by --scale ... --json")
    p.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    raws = [json.loads(path.read_text()) for path in args.json]
    records = merge_runs(raws)
    if not records:
        p.error("no --scale records in these files")
    plot_scaling(records, args.out, subtitle=describe_runs(raws))
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
