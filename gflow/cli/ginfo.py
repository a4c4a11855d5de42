"""`ginfo`: the GPUs and who uses them (0.4.13's PARTITION table).

Deliberate difference from 0.4.13 (spec/cli.md §15.19): with no GPUs it says so
(`No GPUs detected.`) instead of printing nothing.
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


def rows_for(info: dict, jobs: list[dict]) -> list[list[str]]:
    """0.4.13's rows: idle GPUs in one row, then allocated GPUs grouped by holder."""
    gpus = sorted(info.get("gpus") or [], key=lambda g: g.get("index", 0))
    rows = [["PARTITION", "GPUS", "NODES", "STATE", "JOB(REASON)"]]
    idle = [g["index"] for g in gpus if g.get("available")]
    if idle:
        rows.append(["gpu", str(len(idle)), ",".join(map(str, idle)), "idle", ""])
    holder: dict[int, str] = {}
    for job in jobs:
        if job.get("state") != "Running":
            continue
        for index in job.get("gpu_ids") or []:
            holder.setdefault(index, f"{job['id']} ({render.safe(job.get('run_name') or '-')})")
    groups: dict[str, list[int]] = {}
    for g in gpus:
        if g.get("available"):
            continue
        key = holder.get(g["index"]) or f"({render.safe(g.get('reason') or 'unknown')})"
        groups.setdefault(key, []).append(g["index"])
    for key, indices in sorted(groups.items(), key=lambda kv: min(kv[1])):
        rows.append(["gpu", str(len(indices)), ",".join(map(str, indices)), "allocated", key])
    return rows


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
    print(render.table(rows_for(info, jobs), sep="  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
