"""`gqueue`: list jobs as 0.4.13 does (tables, formats, groups, trees, JSON/CSV)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional

from gflow.cli import render
from gflow.cli.common import CommandError, add_config_arg, client_for, current_user, guarded

DEFAULT_FORMAT = "JOBID,NAME,ST,TIME,NODES,NODELIST(REASON)"
ACTIVE = ("Queued", "Hold", "Running")
COMPLETED = ("Finished", "Failed", "Cancelled", "Timeout")
STATE_ORDER = ("Queued", "Hold", "Running", "Finished", "Failed", "Cancelled", "Timeout")
GROUP_ORDER = ("Running", "Queued", "Hold", "Finished", "Failed", "Cancelled", "Timeout")
OUTPUTS = ("table", "json", "csv", "yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gqueue", description="List jobs in the queue.")
    p.add_argument("-u", "--user", "--users", help="comma list of users; `all` for everyone")
    p.add_argument("-n", "--limit", type=int, default=0,
                   help="show the first N jobs (negative: the last N); 0 shows all")
    when = p.add_mutually_exclusive_group()
    when.add_argument("-a", "--all", action="store_true", help="include finished jobs")
    when.add_argument("-c", "--completed", action="store_true", help="only finished jobs")
    p.add_argument("--since", help="submitted since: 1h, 2d, 3w, today, yesterday, unix time")
    p.add_argument("-r", "--sort", default="id",
                   help="id, state, time, name, gpus (or nodes), priority")
    p.add_argument("-s", "--states", help="comma list of states (Queued or PD, Running or R...)")
    p.add_argument("-j", "--jobs", "--job", help="comma list of job ids")
    p.add_argument("-N", "--names", help="comma list of job names")
    p.add_argument("-P", "--project", help="only this project")
    p.add_argument("-f", "--format", default=DEFAULT_FORMAT,
                   help="columns: JOBID,NAME,ST,TIME,NODES,NODELIST(REASON),TIMELIMIT,MEMORY,"
                        "USER,PROJECT")
    p.add_argument("-g", "--group", action="store_true", help="group by state")
    p.add_argument("-t", "--tree", action="store_true", help="show dependencies as a tree")
    p.add_argument("-T", "--tmux", action="store_true",
                   help="only jobs with a live process (0.4.13: a live tmux session)")
    p.add_argument("-o", "--output", default="table", help="table, json, csv or yaml")
    p.add_argument("-w", "--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--interval", type=int, default=2, help="seconds between refreshes")
    add_config_arg(p)
    return p


def fetch(client, args) -> list[dict]:
    if args.completed:
        states: Optional[list] = list(COMPLETED)
    elif args.states:
        states = [s for s in args.states.split(",")]
    elif args.all:
        states = None
    else:
        states = list(ACTIVE)
    user = (args.user or "").strip()
    if user in ("all", "*"):
        users = None
    elif user:
        users = [u.strip() for u in user.split(",")]
    else:
        users = [current_user()]
    created_after = None
    if args.since:
        from gflow.parsing import parse_since
        created_after = parse_since(args.since, time.time())
    return client.list_jobs(states=states, users=users, created_after=created_after)


def filter_jobs(jobs: list[dict], args) -> list[dict]:
    if args.jobs:
        wanted = set()
        for item in args.jobs.split(","):
            try:
                wanted.add(int(item.strip()))
            except ValueError:
                pass
        if wanted:
            jobs = [j for j in jobs if j.get("id") in wanted]
    if args.names:
        names = {n.strip() for n in args.names.split(",")}
        jobs = [j for j in jobs if j.get("run_name") in names]
    if args.project and args.project.strip():
        jobs = [j for j in jobs if j.get("project") == args.project.strip()]
    if args.tmux:
        jobs = [j for j in jobs if j.get("state") == "Running"]
    return jobs


def sort_jobs(jobs: list[dict], field: str) -> list[dict]:
    key = field.lower()
    if key == "id":
        return jobs
    if key == "state":
        return sorted(jobs, key=lambda j: STATE_ORDER.index(j.get("state", "Queued")))
    if key == "time":
        return sorted(jobs, key=lambda j: render.wire_time(j.get("started_at")) or -1.0)
    if key == "name":
        return sorted(jobs, key=lambda j: j.get("run_name") or "")
    if key in ("gpus", "nodes"):
        return sorted(jobs, key=lambda j: j.get("gpus", 0))
    if key == "priority":
        return sorted(jobs, key=lambda j: j.get("priority", 10))
    print(f"Warning: Unknown sort field '{field}', using default 'id'", file=sys.stderr)
    return jobs


def cell(job: dict, column: str, colour: bool, now: float) -> str:
    if column == "JOBID":
        return str(job.get("id", ""))
    if column == "NAME":
        return job.get("run_name") or "-"
    if column == "ST":
        return render.styled_state(job.get("state", "Queued"), colour)
    if column == "TIME":
        return render.hms(render.runtime(job, now))
    if column == "NODES":
        return str(job.get("gpus", 0))
    if column == "NODELIST(REASON)":
        return render.nodelist_cell(job)
    if column == "TIMELIMIT":
        limit = render.wire_duration(job.get("time_limit"))
        return "UNLIMITED" if limit is None else render.hms(limit)
    if column == "MEMORY":
        return render.format_memory(job.get("memory_limit_mb"))
    if column == "USER":
        return job.get("submitted_by", "")
    if column == "PROJECT":
        return job.get("project") or "-"
    return ""


def render_table(jobs: list[dict], columns: list[str], colour: bool, now: float,
                 prefixes: Optional[dict] = None) -> str:
    rows = [list(columns)]
    for job in jobs:
        row = [cell(job, c, colour, now) for c in columns]
        if prefixes is not None and columns and columns[0] == "JOBID":
            row[0] = prefixes.get(id(job), "") + row[0]
        rows.append(row)
    return render.table(rows)


def tree_order(jobs: list[dict]) -> tuple[list[dict], dict]:
    """Jobs in dependency-tree order, with the glyph prefix of each (0.4.13's -t)."""
    by_id = {j["id"]: j for j in jobs}
    children: dict[int, list[dict]] = {}
    roots = []
    for job in jobs:
        parent = job.get("depends_on")
        redo = job.get("redone_from")
        if parent in by_id:
            children.setdefault(parent, []).append(job)
        elif redo in by_id:
            children.setdefault(redo, []).append(job)
        else:
            roots.append(job)
    out: list[dict] = []
    prefixes: dict = {}
    seen: set = set()

    def walk(job: dict, prefix: str, glyph: str) -> None:
        if job["id"] in seen:
            return
        seen.add(job["id"])
        out.append(job)
        prefixes[id(job)] = prefix + glyph
        kids = sorted(children.get(job["id"], []), key=lambda j: j["id"])
        for n, kid in enumerate(kids):
            last = n == len(kids) - 1
            dashed = kid.get("depends_on") != job["id"]
            g = ("╰" if last else "├") + ("┄" if dashed else "─")
            deeper = prefix + ("" if not glyph else ("  " if glyph[0] == "╰" else "│ "))
            walk(kid, deeper, g)

    for root in sorted(roots, key=lambda j: j["id"]):
        walk(root, "", "")
    for job in jobs:  # cycles: never lose a job
        if job["id"] not in seen:
            walk(job, "", "")
    return out, prefixes


def rfc3339(value) -> Optional[str]:
    t = render.wire_time(value)
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def machine_record(job: dict, now: float) -> dict:
    rec = {"id": job.get("id"), "name": job.get("run_name"),
           "state": job.get("state"), "time": render.hms(render.runtime(job, now)),
           "gpus": job.get("gpu_ids") or [], "user": job.get("submitted_by")}
    if job.get("project"):
        rec["project"] = job["project"]
    submitted = rfc3339(job.get("submitted_at"))
    if submitted:
        rec["submitted_at"] = submitted
    if job.get("state") in ("Queued", "Hold", "Cancelled"):
        rec["reason"] = render.reason_text(job) or "-"
    if job.get("memory_limit_mb") is not None:
        rec["memory_mb"] = job["memory_limit_mb"]
    limit = render.wire_duration(job.get("time_limit"))
    if limit is not None:
        rec["time_limit"] = render.hms(limit)
    for extra in ("exit_code", "reason_detail"):
        if job.get(extra) is not None:
            rec[extra] = job[extra]
    return rec


def output(jobs: list[dict], args, colour: bool) -> str:
    now = time.time()
    fmt = args.output.lower()
    if fmt not in OUTPUTS:
        raise CommandError(f"Invalid output format '{args.output}'. Valid options: "
                           + ", ".join(OUTPUTS))
    jobs = sort_jobs(jobs, args.sort)
    header = ""
    if args.limit and not args.all and abs(args.limit) < len(jobs):
        total = len(jobs)
        if args.limit > 0:
            jobs = jobs[:args.limit]
            header = f"Showing first {args.limit} of {total} jobs (use --all or -n 0 to show all)\n\n"
        else:
            jobs = jobs[args.limit:]
            header = f"Showing last {-args.limit} of {total} jobs (use --all or -n 0 to show all)\n\n"
    if fmt == "json":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + \
            f".{int(now % 1 * 1e9):09d}+00:00"
        return json.dumps({"jobs": [machine_record(j, now) for j in jobs], "total": len(jobs),
                           "timestamp": stamp}, indent=2, ensure_ascii=False)
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "name", "state", "time", "gpus", "user", "submitted_at", "reason"])
        for j in jobs:
            r = machine_record(j, now)
            w.writerow([r["id"], r["name"] or "-", r["state"], r["time"],
                        "[" + ",".join(map(str, r["gpus"])) + "]", r["user"],
                        r.get("submitted_at", "-"), r.get("reason", "-")])
        return buf.getvalue().rstrip("\n")
    if fmt == "yaml":
        lines = ["jobs:"]
        for j in jobs:
            r = machine_record(j, now)
            first = True
            for k, v in r.items():
                if isinstance(v, list):
                    v = "[" + ", ".join(map(str, v)) + "]"
                lines.append(("- " if first else "  ") + f"{k}: {v}")
                first = False
        lines.append(f"total: {len(jobs)}")
        return "\n".join(lines) + "\n"
    columns = args.format.split(",")
    if args.group:
        blocks = []
        for state in GROUP_ORDER:
            group = [j for j in jobs if j.get("state") == state]
            if group:
                blocks.append(f"{state} ({len(group)})\n" + "─" * 60 + "\n"
                              + render_table(group, columns, colour, now))
        return header + "\n\n".join(blocks)
    if args.tree:
        ordered, prefixes = tree_order(jobs)
        return header + render_table(ordered, columns, colour, now, prefixes)
    return header + render_table(jobs, columns, colour, now)


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    client = client_for(args)
    colour = render.use_colour()
    while True:
        jobs = filter_jobs(fetch(client, args), args)
        text = "No jobs found." if not jobs else output(jobs, args, colour)
        if not args.watch:
            print(text)
            return 0
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        sys.stdout.write("\x1b[2J\x1b[H" f"Last updated: {stamp}  [Refreshing every "
                         f"{args.interval}s. Press Ctrl+C to exit]\n\n{text}\n")
        sys.stdout.flush()
        time.sleep(max(args.interval, 1))


if __name__ == "__main__":
    sys.exit(main())
