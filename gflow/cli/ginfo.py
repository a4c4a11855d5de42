"""`ginfo`: the GPUs and who uses them (0.4.13's PARTITION table).

Deliberate differences from 0.4.13 (spec/cli.md §15.19): with no GPUs it says so
(`No GPUs detected.`) instead of printing nothing; a GPU that `--shared` jobs hold is
`shared`, with its jobs and the GPU memory they reserved (0.4.13 listed it as idle); and
each pending or active reservation gets a `reserved` row naming its owner and window.
With our daemon a second table follows: per GPU, who holds it (a gflow job, or a foreign
process with its owner, command, memory and age), memory used/total, utilisation, and
idle holders with the command that releases them (gflow/cli/gpu_view.py).
"""

from __future__ import annotations

import argparse
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli import render
from gflow.cli.common import (
    Parser, add_completion_parser, add_config_arg, add_verbosity, add_version, client_for,
    guarded, builtin_subcommand,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ginfo", description="Show the GPUs: which are idle, which are allocated "
                                         "and to which job.")
    add_verbosity(p)
    add_config_arg(p)
    add_version(p, "ginfo")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    add_completion_parser(sub)
    return p


def rows_for(info: dict, jobs: list[dict], when=None) -> list[list[str]]:
    """0.4.13's rows: idle GPUs in one row, then allocated GPUs grouped by holder; then
    ours: GPUs held by shared jobs, and reservations (`when(start, end, active)` formats
    a reservation's window)."""
    gpus = sorted(info.get("gpus") or [], key=lambda g: g.get("index", 0))
    rows = [["PARTITION", "GPUS", "NODES", "STATE", "JOB(REASON)"]]
    idle = [g["index"] for g in gpus if g.get("available")]
    if idle:
        rows.append(["gpu", str(len(idle)), ",".join(map(str, idle)), "idle", ""])
    holder: dict[int, str] = {}
    names: dict[int, str] = {}
    for job in jobs:
        if job.get("state") != "Running":
            continue
        names[job["id"]] = f"{job['id']} ({render.safe(job.get('run_name') or '-')})"
        for index in job.get("gpu_ids") or []:
            holder.setdefault(index, names[job["id"]])
    groups: dict[str, list[int]] = {}
    shared = []
    for g in gpus:
        if g.get("available"):
            continue
        if isinstance(g.get("shared_jobs"), list) and g["shared_jobs"]:
            shared.append(g)
            continue
        key = holder.get(g["index"]) or f"({render.safe(g.get('reason') or 'unknown')})"
        groups.setdefault(key, []).append(g["index"])
    for key, indices in sorted(groups.items(), key=lambda kv: min(kv[1])):
        rows.append(["gpu", str(len(indices)), ",".join(map(str, indices)), "allocated", key])
    for g in shared:
        held = ", ".join(names.get(j, render.safe(str(j))) for j in g["shared_jobs"])
        used, total = _mb(g.get("shared_memory_mb")) or 0, _mb(g.get("memory_mb"))
        memory = (f"{render.format_memory(used)} of {render.format_memory(total)}" if total
                  else render.format_memory(used))
        rows.append(["gpu", "1", str(g["index"]), "shared", f"{held}; {memory} reserved"])
    for r in info.get("reservations") or []:
        if not isinstance(r, dict):
            continue
        indices = [i for i in r.get("gpu_indices") or () if isinstance(i, int)]
        start, end = r.get("start_time"), r.get("end_time")
        window = (when(start, end, r.get("active")) if when and _mb(start) is not None
                  and _mb(end) is not None else "")
        count = r.get("gpu_count") if isinstance(r.get("gpu_count"), int) else len(indices)
        rows.append(["gpu", str(count), ",".join(map(str, indices)) if indices else "-",
                     "reserved", f"({render.safe(str(r.get('user')))}"
                                 f"{' ' + window if window else ''})"])
    return rows


def _mb(value):
    """A number from the daemon, or None (a malformed reply must not crash ginfo)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def window_formatter(args):
    """Reservation windows in the zone `gctl reserve` uses; the date only when not today."""
    import time

    from gflow.cli.gctl import zone_for
    zone = zone_for(args)
    today = zone.fmt(time.time(), "%Y-%m-%d")

    def at(t: float, day: str) -> str:
        return zone.fmt(t, "%H:%M" if zone.fmt(t, "%Y-%m-%d") == day else "%Y-%m-%d %H:%M")

    def when(start: float, end: float, active) -> str:
        if active:
            return f"until {at(end, today)}"
        return f"{at(start, today)}-{at(end, zone.fmt(start, '%Y-%m-%d'))}"
    return when


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    done = builtin_subcommand(parser, args)
    if done is not None:
        return done
    client = client_for(args)
    info = client.call("GET", "/info")
    if not info.get("gpus"):
        print("No GPUs detected.")
        return 0
    jobs = client.list_jobs(states=["Running"])
    when = window_formatter(args) if info.get("reservations") else None
    print(render.table(rows_for(info, jobs, when), sep="  "))
    from gflow.cli import gpu_view
    if gpu_view.has_insight(info):
        print()
        print(render.table(gpu_view.gpu_rows(info), sep="  "))
        for line in gpu_view.idle_lines(info):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
