"""`gqueue`: list jobs as 0.4.13 does (tables, formats, groups, trees, JSON/CSV/YAML).

Deliberate differences from 0.4.13 (spec/cli.md §15): `-n` also limits with `-a`; `-g`
shows held jobs; `-j` takes ranges; unknown `-s` state names and bad `-j` items are errors
instead of being dropped (which could silently remove the filter); `--since` also takes
ISO 8601 and `today` is local midnight; `-T` lists jobs with a live process (Running: we
run jobs without tmux, so there is no `○` session mark); `-o json|csv|yaml` print an empty
document rather than `No jobs found.`; colour only on a terminal and never with NO_COLOR;
an unknown `-f` column is an error (0.4.13: an empty column); `-w` clears the screen only
on a terminal.
"""

from __future__ import annotations

import argparse
import sys
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli import render
from gflow.cli.common import (
    CommandError, Parser, add_completion_parser, add_config_arg, add_version, client_for,
    current_user, guarded, parse_since, builtin_subcommand,
)

DEFAULT_FORMAT = "JOBID,NAME,ST,TIME,NODES,NODELIST(REASON)"
STATE_ORDER = render.STATES
GROUP_ORDER = ("Running", "Queued", "Hold", "Finished", "Failed", "Cancelled", "Timeout")
OUTPUTS = ("table", "json", "csv", "yaml")
COLUMNS = ("JOBID", "NAME", "ST", "TIME", "NODES", "NODELIST(REASON)", "TIMELIMIT", "MEMORY",
           "USER", "PROJECT", "FAIRSHARE")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gqueue", description="List jobs (by default your queued, held and "
                                          "running jobs).",
               epilog="Columns for -f: " + ",".join(COLUMNS) + "\n"
                      "Examples: gqueue -a -t | gqueue -s R,PD -u all | gqueue -o json")
    p.add_argument("-u", "--user", "--users", metavar="USER",
                   help="comma list of users; `all` or `*` for everyone (default: you)")
    p.add_argument("-n", "--limit", type=_i32, default=0, metavar="LIMIT",
                   help="show the first N jobs (negative: the last N); 0 shows all")
    p.add_argument("-a", "--all", action="store_true",
                   help="include finished, failed, cancelled and timed-out jobs")
    p.add_argument("-c", "--completed", action="store_true",
                   help="only finished, failed, cancelled and timed-out jobs")
    p.add_argument("--since", metavar="SINCE",
                   help="submitted since: 1h, 2d, 3w, today, yesterday, a Unix timestamp or "
                        "an ISO 8601 date/time")
    p.add_argument("-r", "--sort", default="id", metavar="SORT",
                   help="id (default), state, time, name, gpus (or nodes), priority")
    p.add_argument("-s", "--states", metavar="STATES",
                   help="comma list of states: " + render.STATE_HELP)
    p.add_argument("-j", "--jobs", "--job", metavar="JOBS",
                   help="comma list of job ids or ranges: 3,5-7")
    p.add_argument("-N", "--names", metavar="NAMES", help="comma list of job names")
    p.add_argument("-P", "--project", metavar="PROJECT", help="only jobs of this project")
    p.add_argument("-f", "--format", default=DEFAULT_FORMAT, metavar="FORMAT",
                   help=f"comma list of columns (default: {DEFAULT_FORMAT})")
    p.add_argument("-g", "--group", action="store_true", help="group jobs by state")
    p.add_argument("-t", "--tree", action="store_true",
                   help="show dependencies (─) and redo relationships (┄) as a tree")
    p.add_argument("-T", "--tmux", action="store_true",
                   help="only jobs with a live process (0.4.13: a live tmux session)")
    p.add_argument("-o", "--output", default="table", metavar="OUTPUT",
                   help="table (default), json, csv or yaml")
    p.add_argument("--start", action="store_true",
                   help="queued jobs with an estimated start time, from the time limits of "
                        "what runs ahead of them (unknown behind a job without a limit)")
    p.add_argument("-w", "--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--interval", type=_u64, metavar="INTERVAL",
                   help="seconds between refreshes with --watch (default 2)")
    add_config_arg(p)
    add_version(p, "gqueue")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    add_completion_parser(sub)
    return p


def _i32(text: str) -> int:
    from gflow.cli.common import int_type
    return int_type(-2**31, 2**31 - 1, "i32")(text)


def _u64(text: str) -> int:
    from gflow.cli.common import int_type
    return int_type(0, 2**64 - 1, "u64")(text)


class Query:
    """The validated command line: what to ask the daemon and how to filter it."""

    def __init__(self, args):
        self.args = args
        self.output = args.output.strip().lower()
        if self.output not in OUTPUTS:
            raise CommandError(f"Invalid output format '{args.output}'. Valid options: "
                               + ", ".join(OUTPUTS))
        # 0.4.13 printed an empty column for a misspelt name; ours names it
        unknown = [c for c in args.format.split(",") if c not in COLUMNS]
        if unknown:
            raise CommandError(f"Error: unknown column '{unknown[0]}' in --format (columns: "
                               + ",".join(COLUMNS) + ")")
        if args.completed:
            self.states: Optional[list[str]] = list(render.FINAL)
        elif args.states is not None:
            self.states = []
            for item in args.states.split(","):
                if not item.strip():
                    continue
                try:
                    state = render.parse_state(item)
                except ValueError:
                    raise CommandError(f"Error: invalid value '{args.states}' for --states: "
                                       f"unknown state '{item.strip()}' (use "
                                       f"{render.STATE_HELP})") from None
                if state not in self.states:
                    self.states.append(state)
            if not self.states:
                raise CommandError(f"Error: invalid value '{args.states}' for --states: "
                                   "no state given")
        elif args.all:
            self.states = None
        else:
            self.states = list(render.ACTIVE)
        user = (args.user or "").strip()
        if user in ("all", "*"):
            self.users: Optional[list[str]] = None
        elif user:
            self.users = [u.strip() for u in user.split(",") if u.strip()]
        else:
            self.users = [current_user()]
        self.created_after = parse_since(args.since) if args.since is not None else None
        self.ids: Optional[set[int]] = None
        if args.jobs is not None:
            from gflow.cli.common import parse_value
            from gflow.parsing import parse_id_list
            self.ids = set(parse_value(parse_id_list, args.jobs, "--jobs"))
        self.names = None
        if args.names is not None:
            self.names = {n.strip() for n in args.names.split(",")}
        project = (args.project or "").strip()
        self.project = project or None

    def fetch(self, client) -> list[dict]:
        return client.list_jobs(states=self.states, users=self.users,
                                created_after=self.created_after)

    def filter(self, jobs: list[dict]) -> list[dict]:
        if self.ids is not None:
            jobs = [j for j in jobs if j.get("id") in self.ids]
        if self.names is not None:
            jobs = [j for j in jobs if j.get("run_name") in self.names]
        if self.project is not None:
            jobs = [j for j in jobs if j.get("project") == self.project]
        if self.args.tmux:
            jobs = [j for j in jobs if j.get("state") == "Running"]
        return jobs


# kept for callers of the first version (the admin shell)
def filter_jobs(jobs: list[dict], args) -> list[dict]:
    return Query(args).filter(jobs)


def sort_jobs(jobs: list[dict], field: str) -> list[dict]:
    key = field.lower()
    if key == "id":
        ids = [j.get("id", 0) for j in jobs]
        if ids == sorted(ids):          # the daemon lists by id: no key call per job
            return list(jobs)
        return sorted(jobs, key=lambda j: j.get("id", 0))
    if key == "state":
        return sorted(jobs, key=lambda j: STATE_ORDER.index(j.get("state", "Queued")))
    if key == "time":
        # Rust's Option ordering: not started (None) first, then by start time
        return sorted(jobs, key=lambda j: (j.get("started_at") is not None,
                                           render.wire_time(j.get("started_at")) or 0.0))
    if key == "name":
        return sorted(jobs, key=lambda j: j.get("run_name") or "")
    if key in ("gpus", "nodes"):
        return sorted(jobs, key=lambda j: j.get("gpus", 0))
    if key == "priority":
        return sorted(jobs, key=lambda j: j.get("priority", 10))
    print(f"Warning: Unknown sort field '{field}', using default 'id'", file=sys.stderr)
    return sorted(jobs, key=lambda j: j.get("id", 0))


def cell(job: dict, column: str, colour: bool, now: float) -> str:
    """One table cell; text from the daemon goes through render.safe (other users chose it)."""
    if column == "ST":
        if job.get("suspended_at") and job.get("state") == "Running":
            return "S"                  # gjob suspend: stopped, still holding its GPUs
        return render.styled_state(render.safe(job.get("state", "Queued")), colour)
    return render.safe(_cell_text(job, column, now))


def _cell_text(job: dict, column: str, now: float) -> str:
    if column == "JOBID":
        return str(job.get("id", ""))
    if column == "NAME":
        return job.get("run_name") or "-"
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
    if column == "FAIRSHARE":       # ours: the owner's fair-share factor (GET /fair-share)
        return job.get("_fairshare") or "-"
    return ""


def render_table(jobs: list, columns: list[str], colour: bool, now: float,
                 prefixes: Optional[list[str]] = None) -> str:
    """Rows of jobs; with `prefixes` (tree mode) a job may be a `("see", id)` reference.

    Built a column at a time (issue 21: 100k jobs): the cells are those of cell().
    """
    if not columns:
        return render.table([[] for _ in range(len(jobs) + 1)])
    refs = prefixes is not None and any(isinstance(j, tuple) for j in jobs)
    real = [j for j in jobs if not isinstance(j, tuple)] if refs else jobs
    cols = []
    for column in columns:
        values = column_cells(real, column, colour, now)
        if refs:  # a "see job N" reference row of the tree: `-` in every column
            cells = iter(values)
            values = ["-" if isinstance(j, tuple) else next(cells) for j in jobs]
        cols.append(values)
    if prefixes is not None and columns[0] == "JOBID":
        cols[0] = [f"{p}→ see job {j[1]}" if isinstance(j, tuple) else p + v
                   for p, j, v in zip(prefixes, jobs, cols[0])]
    return render.table_columns([[name] + values for name, values in zip(columns, cols)])


def column_cells(jobs: list[dict], column: str, colour: bool, now: float) -> list[str]:
    """[cell(job, column, colour, now) for job in jobs], without a call per cell."""
    if column == "ST":
        return _state_cells(jobs, colour)
    if column == "JOBID":
        values = [str(j.get("id", "")) for j in jobs]
    elif column == "NAME":
        values = [j.get("run_name") or "-" for j in jobs]
    elif column == "TIME":
        hms, runtime = render.hms, render.runtime
        values = [hms(runtime(j, now)) if j.get("started_at") else "-" for j in jobs]
    elif column == "NODES":
        values = [str(j.get("gpus", 0)) for j in jobs]
    elif column == "NODELIST(REASON)":
        values = _nodelist_cells(jobs)
    elif column == "USER":
        values = [j.get("submitted_by", "") for j in jobs]
    elif column == "PROJECT":
        values = [j.get("project") or "-" for j in jobs]
    else:
        values = [_cell_text(j, column, now) for j in jobs]
    return _safe_cells(values)


def _safe_cells(values: list) -> list[str]:
    """[render.safe(v) for v in values]; one C-level check when none needs escaping."""
    try:
        if "".join(values).isprintable():
            return values
    except TypeError:                    # a value that is not text: safe() makes it one
        pass
    safe = render.safe
    return [safe(v) for v in values]


def _state_cells(jobs: list[dict], colour: bool) -> list[str]:
    """cell(job, "ST", ...) of each job: each distinct state is styled once."""
    states = [j.get("state", "Queued") for j in jobs]
    try:
        distinct = set(states)
    except TypeError:                    # an unhashable state (not from our daemon)
        distinct = None
    if distinct is None or not all(type(s) is str for s in distinct):
        return [cell(j, "ST", colour, 0.0) for j in jobs]
    styled = {s: render.styled_state(render.safe(s), colour) for s in distinct}
    out = [styled[s] for s in states]
    if "Running" in styled:             # gjob suspend: stopped, still holding its GPUs
        for n, state in enumerate(states):
            if state == "Running" and jobs[n].get("suspended_at"):
                out[n] = "S"
    return out


def _nodelist_cells(jobs: list[dict]) -> list[str]:
    """render.nodelist_cell of each job, a queued job's usual reason worked out in line."""
    nodelist = render.nodelist_cell
    return [("(Dependency)" if j.get("depends_on_ids") or j.get("depends_on") is not None
             else "(Resources)")
            if j.get("state", "Queued") == "Queued" and j.get("reason") is None
            and j.get("pending_reason") not in ("BeginTime", "Quota")
            else nodelist(j) for j in jobs]


def tree_order(jobs: list[dict]) -> tuple[list, list[str]]:
    """0.4.13's `-t`: jobs in tree order with the glyph prefix of each row.

    A job hangs under its legacy `depends_on` (solid ─) and under the job it was redone
    from (dashed ┄); a redo child that already hangs under its dependency is shown under
    the original as a `→ see job N` reference row.
    """
    by_id = {j["id"]: j for j in jobs}
    dep_children: dict[int, list[int]] = {}
    redo_children: dict[int, list[int]] = {}
    for job in jobs:
        parent = job.get("depends_on")
        if parent in by_id:
            dep_children.setdefault(parent, []).append(job["id"])
        redo = job.get("redone_from")
        if redo in by_id:
            redo_children.setdefault(redo, []).append(job["id"])
    roots = [j["id"] for j in jobs
             if j.get("depends_on") not in by_id and j.get("redone_from") not in by_id]
    rows: list = []
    prefixes: list[str] = []
    shown: set[int] = set()

    def walk(job_id: int, prefix: str, glyph: str, is_root: bool, is_last: bool,
             stack: set) -> None:
        shown.add(job_id)
        rows.append(by_id[job_id])
        prefixes.append(prefix + glyph)
        kids = [(c, "dep") for c in dep_children.get(job_id, ())]
        for c in redo_children.get(job_id, ()):
            dep = by_id[c].get("depends_on")
            if dep == job_id:
                continue  # already a dependency child of this very job
            kids.append((c, "ref" if dep in by_id else "redo"))
        kids = [k for k in kids if k[0] not in stack]  # cut cycles
        kids.sort(key=lambda k: k[0])
        child_prefix = "" if is_root else prefix + ("  " if is_last else "│ ")
        for n, (kid, kind) in enumerate(kids):
            last = n == len(kids) - 1
            g = ("╰" if last else "├") + ("─" if kind == "dep" else "┄")
            if kind == "ref":
                rows.append(("see", kid))
                prefixes.append(child_prefix + g)
            elif kid not in shown:
                walk(kid, child_prefix, g, False, last, stack | {kid})

    for root in sorted(roots):
        walk(root, "", "", True, True, {root})
    for job in jobs:  # a dependency cycle has no root: never lose a job
        if job["id"] not in shown:
            walk(job["id"], "", "", True, True, {job["id"]})
    return rows, prefixes


def rfc3339(value) -> Optional[str]:
    t = render.wire_time(value)
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def machine_record(job: dict, now: float) -> dict:
    """One job of `-o json|csv|yaml` (0.4.13's keys and order, plus our exit_code and
    reason_detail)."""
    rec = {"id": job.get("id"), "name": job.get("run_name"),
           "state": job.get("state"), "time": render.hms(render.runtime(job, now)),
           "gpus": list(job.get("gpu_ids") or []), "user": job.get("submitted_by")}
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
    if "exit_code" in job:
        rec["exit_code"] = job["exit_code"]
    if "reason_detail" in job:
        rec["reason_detail"] = job["reason_detail"]
    return rec


def timestamp(now: float) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(round(now % 1 * 1e9)) % 1_000_000_000:09d}+00:00")


_YAML_PLAIN_BAD = set("-?:,[]{}#&*!|>'\"%@`")


def yaml_scalar(value) -> str:
    """A scalar as serde_yaml writes it: plain when unambiguous, else single-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    s = str(value)
    if render.has_control(s):
        # Double-quoted, the one YAML style with escapes (render.safe's `\xNN` is one): a
        # parser reads the value back intact, and no raw control character reaches a terminal.
        return '"' + render.safe(s.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    lowered = s.lower()
    needs_quotes = (
        s == "" or s != s.strip() or s[0] in _YAML_PLAIN_BAD or ": " in s or " #" in s
        or s.endswith(":")
        or lowered in ("null", "~", "true", "false", "yes", "no", "on", "off", "y", "n")
        or _looks_numeric(s))
    if not needs_quotes:
        return s
    return "'" + s.replace("'", "''") + "'"


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return s.lower() in (".inf", "-.inf", "+.inf", ".nan")
    return True


def to_yaml(records: list[dict], now: float) -> str:
    lines = ["jobs:"] if records else ["jobs: []"]
    for rec in records:
        first = True
        for key, value in rec.items():
            lead = "- " if first else "  "
            first = False
            if isinstance(value, list):
                if not value:
                    lines.append(f"{lead}{key}: []")
                else:
                    lines.append(f"{lead}{key}:")
                    lines.extend(f"  - {yaml_scalar(v)}" for v in value)
            else:
                lines.append(f"{lead}{key}: {yaml_scalar(value)}")
    lines.append(f"total: {len(records)}")
    lines.append(f"timestamp: {timestamp(now)}")
    return "\n".join(lines) + "\n"


def to_csv(records: list[dict]) -> str:
    import csv
    import io

    def safe(value):  # CSV has no escapes: control characters are shown as \xNN
        return value if value is None else render.safe(value)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name", "state", "time", "gpus", "user", "submitted_at", "reason"])
    for r in records:
        w.writerow([r["id"], safe(r["name"] or "-"), safe(r["state"]), r["time"],
                    "[" + ",".join(map(str, r["gpus"])) + "]", safe(r["user"]),
                    r.get("submitted_at", "-"), safe(r.get("reason", "-"))])
    return buf.getvalue().rstrip("\n")


def output(jobs: list[dict], args, colour: bool, fmt: Optional[str] = None,
           now: Optional[float] = None) -> str:
    """The text gqueue prints for `jobs` (already fetched and filtered)."""
    now = time.time() if now is None else now
    fmt = (fmt or args.output).strip().lower()
    if not jobs and fmt == "table":
        return "No jobs found."
    jobs = sort_jobs(jobs, args.sort)
    header = ""
    total = len(jobs)
    if args.limit and abs(args.limit) < total:
        hint = "use -n 0 to show all" if args.all else "use --all or -n 0 to show all"
        if args.limit > 0:
            jobs = jobs[:args.limit]
            header = f"Showing first {args.limit} of {total} jobs ({hint})\n\n"
        else:
            jobs = jobs[args.limit:]
            header = f"Showing last {-args.limit} of {total} jobs ({hint})\n\n"
    if fmt == "json":
        import json
        records = [machine_record(j, now) for j in jobs]
        return render.safe_json(json.dumps({"jobs": records, "total": len(records),
                                            "timestamp": timestamp(now)},
                                           indent=2, ensure_ascii=False))
    if fmt == "csv":
        return to_csv([machine_record(j, now) for j in jobs])
    if fmt == "yaml":
        return to_yaml([machine_record(j, now) for j in jobs], now)
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


def listing(client, query: Query, args, colour: bool) -> str:
    """What one run prints (the jobs are fetched, filtered and rendered).

    The garbage collector is off meanwhile (issue 21): a listing of 100k jobs is 3M
    objects, none of them garbage, and each pass of the collector walks the survivors
    (a third of the time). They are freed by their counts when _listing returns, before
    the collector is back, so it finds its counters about as it left them.
    """
    import gc
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _listing(client, query, args, colour)
    finally:
        if was_enabled:
            gc.enable()


def _listing(client, query: Query, args, colour: bool) -> str:
    if args.start:              # Slurm's squeue --start (gqueue_start.py)
        from gflow.cli import gqueue_start
        return gqueue_start.table(client, query.filter(query.fetch(client)), colour)
    jobs = query.filter(query.fetch(client))
    if "FAIRSHARE" in args.format.split(","):
        from gflow.cli.gjob_more import fair_shares
        shares = fair_shares(client) or {}
        for j in jobs:
            row = shares.get(j.get("submitted_by"))
            j["_fairshare"] = f"{row['factor']:.3f}" if row else "1.000"
    return output(jobs, args, colour, query.output)


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    done = builtin_subcommand(parser, args)
    if done is not None:
        return done
    if args.completed and args.all:
        parser.error("argument -c/--completed: not allowed with argument -a/--all")
    if args.completed and args.states is not None:
        parser.error("argument -c/--completed: not allowed with argument -s/--states")
    if args.interval is not None and not args.watch:
        parser.error("argument --interval: requires -w/--watch")
    query = Query(args)
    client = client_for(args)
    colour = render.use_colour()
    interval = 2 if args.interval is None else args.interval
    while True:
        text = listing(client, query, args, colour)
        if not args.watch:
            sys.stdout.write(text + "\n")
            return 0
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        # clear the screen only on a terminal: in a pipe or a file the escapes are garbage
        sys.stdout.write(("\x1b[2J\x1b[H" if render.is_terminal(sys.stdout)
                          else "") + f"Last updated: {stamp}  [Refreshing every "
                         f"{interval}s. Press Ctrl+C to exit]\n\n{text}\n")
        sys.stdout.flush()
        time.sleep(max(interval, 0.2))


if __name__ == "__main__":
    sys.exit(main())
