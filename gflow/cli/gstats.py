"""`gstats`: usage statistics as a table, JSON or CSV (0.4.13's layouts).

Deliberate differences from 0.4.13 (spec/cli.md §15.12): `-u all` (or `*`) means every user
as the help says (0.4.13 looked for a user literally called "all"); an empty selection shows
`0.0h` GPU-hours, not `-0.0h`; an unknown `-o` format is an error instead of a table; held
jobs (our `held_jobs`) get their own line and CSV row; colour only on a terminal.
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

OUTPUTS = ("table", "json", "csv")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gstats", description="Usage statistics of your jobs (or everyone's).")
    who = p.add_mutually_exclusive_group()
    who.add_argument("-u", "--user", metavar="USER",
                     help="statistics of this user (default: you); `all` for everyone")
    who.add_argument("-a", "--all-users", action="store_true", help="statistics of every user")
    p.add_argument("-t", "--since", metavar="SINCE",
                   help="jobs submitted since: 1h, 2d, 3w, today, yesterday, a Unix timestamp "
                        "or an ISO 8601 date/time")
    p.add_argument("-o", "--output", default="table", metavar="OUTPUT",
                   help="table (default), json or csv")
    p.add_argument("--gpu-hours", action="store_true",
                   help="GPU-hours per user and project that ran within the period "
                        "(--since .. --until)")
    p.add_argument("--until", metavar="UNTIL", help="with --gpu-hours: the period's end "
                                                    "(same forms as --since; default now)")
    add_config_arg(p)
    add_version(p, "gstats")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    add_completion_parser(sub)
    return p


def _zero(value):
    """-0.0 (an empty float sum in 0.4.13) shows as 0.0."""
    return 0.0 if isinstance(value, float) and value == 0 else value


def render_json(stats: dict) -> str:
    import json
    return render.safe_json(json.dumps({k: _zero(v) for k, v in stats.items()}, indent=2,
                                       ensure_ascii=False))


def render_csv(stats: dict) -> str:
    def f1(v):
        return "" if v is None else f"{_zero(v):.1f}"

    rows = [("total_jobs", stats.get("total_jobs", 0)),
            ("completed_jobs", stats.get("completed_jobs", 0)),
            ("failed_jobs", stats.get("failed_jobs", 0)),
            ("cancelled_jobs", stats.get("cancelled_jobs", 0)),
            ("timeout_jobs", stats.get("timeout_jobs", 0)),
            ("running_jobs", stats.get("running_jobs", 0)),
            ("queued_jobs", stats.get("queued_jobs", 0))]
    if "held_jobs" in stats:
        rows.append(("held_jobs", stats["held_jobs"]))
    rows += [("avg_wait_secs", f1(stats.get("avg_wait_secs"))),
             ("avg_runtime_secs", f1(stats.get("avg_runtime_secs"))),
             ("total_gpu_hours", f"{_zero(stats.get('total_gpu_hours') or 0.0):.2f}"),
             ("jobs_with_gpus", stats.get("jobs_with_gpus", 0)),
             ("avg_gpus_per_job", f"{_zero(stats.get('avg_gpus_per_job') or 0.0):.2f}"),
             ("peak_gpu_usage", stats.get("peak_gpu_usage", 0)),
             ("success_rate", f"{_zero(stats.get('success_rate') or 0.0):.1f}")]
    return "\n".join(["metric,value"] + [f"{k},{v}" for k, v in rows])


def _hms_or_dash(value) -> str:
    return "-" if value is None else render.hms(value)


def render_table(stats: dict, colour: bool) -> str:
    b = lambda s: render.bold(str(s), colour)  # noqa: E731
    d = lambda s: render.dim(str(s), colour)  # noqa: E731

    def kv(label: str, value: str) -> str:
        return "  " + d(f"{label + ':':<16}") + " " + value

    total = stats.get("total_jobs", 0)
    completed = stats.get("completed_jobs", 0)
    failed = stats.get("failed_jobs", 0)
    cancelled = stats.get("cancelled_jobs", 0)
    timeout = stats.get("timeout_jobs", 0)
    running = stats.get("running_jobs", 0)
    queued = stats.get("queued_jobs", 0)
    held = stats.get("held_jobs", 0) or 0
    user = render.safe(stats.get("user") or "all users")
    since = stats.get("since")
    since_text = ("all time" if since is None
                  else time.strftime("%Y-%m-%d %H:%M", time.localtime(since)))
    out = [b("Usage Statistics") + "  " + d(f"user: {user}") + "  " + d(f"since: {since_text}")
           + "  " + d(f"active: {running + queued}"),
           d("─" * 72), "", b("Job Status"), kv("Total Jobs", b(total))]
    terminal = completed + failed + cancelled + timeout

    def pct(n: int, of: int) -> str:
        return f"{b(n)} ({n / of * 100:.0f}%)"

    if terminal > 0:
        out += [kv("Completed", pct(completed, terminal)), kv("Failed", pct(failed, terminal)),
                kv("Cancelled", pct(cancelled, terminal))]
        if timeout > 0:
            out.append(kv("Timeout", pct(timeout, terminal)))
    else:
        out += [kv("Completed", b(completed)), kv("Failed", b(failed)),
                kv("Cancelled", b(cancelled))]
    if running + queued > 0:
        out += [kv("Running", pct(running, total)), kv("Queued", pct(queued, total))]
    if held > 0:
        out.append(kv("Held", pct(held, total)))
    gpu_hours = _zero(stats.get("total_gpu_hours") or 0.0)
    out += ["", b("Efficiency"),
            kv("Avg Wait Time", _hms_or_dash(stats.get("avg_wait_secs"))),
            kv("Avg Runtime", _hms_or_dash(stats.get("avg_runtime_secs"))),
            kv("Total GPU-Hours", f"{gpu_hours:.1f}h"),
            kv("Success Rate", b(f"{_zero(stats.get('success_rate') or 0.0):.1f}%"))]
    with_gpus = stats.get("jobs_with_gpus", 0)
    share = with_gpus / total * 100 if total else 0.0
    out += ["", b("GPU Usage"),
            kv("Jobs with GPUs", f"{b(with_gpus)} ({share:.0f}%)"),
            kv("Avg GPUs/Job", f"{_zero(stats.get('avg_gpus_per_job') or 0.0):.1f}"),
            kv("Peak GPU Usage", str(stats.get("peak_gpu_usage", 0)))]
    if stats.get("jobs_with_gpu_samples"):
        # Ours: what sampling saw (peak memory on one GPU, mean utilisation).
        peak, top_peak = stats.get("avg_gpu_peak_memory_mb"), stats.get("max_gpu_peak_memory_mb")
        util = stats.get("avg_gpu_util_percent")
        if isinstance(peak, (int, float)) and isinstance(top_peak, (int, float)):
            out.append(kv("GPU Memory Peak", f"{render.format_memory(int(peak))} avg, "
                                             f"{render.format_memory(int(top_peak))} max"))
        if isinstance(util, (int, float)):
            out.append(kv("GPU Utilisation", f"{util:.1f}% avg"))
    top = stats.get("top_jobs") or []
    if top:
        runtimes = [render.hms(j.get("runtime_secs") or 0) for j in top]
        rw = max([7] + [len(r) for r in runtimes])
        gw = max([4] + [len(str(j.get("gpus", 0))) for j in top])
        out += ["", b("Top Jobs by Runtime"),
                "  " + b("#".ljust(3)) + " " + b("JOBID".rjust(6)) + "  " + b("NAME".ljust(34))
                + "  " + b("RUNTIME".rjust(rw)) + "  " + b("GPUS".rjust(gw)),
                "  " + d("─" * (50 + rw + gw))]
        for i, (job, rt) in enumerate(zip(top, runtimes), start=1):
            name = render.safe(job.get("name") or "<unnamed>")
            if len(name) > 34:
                name = name[:31] + "..."
            out.append("  " + b(f"{i}.".ljust(3)) + " " + b(str(job.get("id")).rjust(6)) + "  "
                       + name.ljust(34) + "  " + b(rt.rjust(rw)) + "  "
                       + b(str(job.get("gpus", 0)).rjust(gw)))
    return "\n".join(out)


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    done = builtin_subcommand(parser, args)
    if done is not None:
        return done
    fmt = args.output.strip().lower()
    if fmt not in OUTPUTS:
        raise CommandError(f"Invalid output format '{args.output}'. Valid options: "
                           + ", ".join(OUTPUTS))
    query: dict = {}
    user = None if args.all_users else (args.user if args.user is not None else current_user())
    if user is not None and user.strip() in ("all", "*"):
        user = None
    if user is not None:
        query["user"] = user.strip() or current_user()
    if args.since is not None:
        query["since"] = parse_since(args.since, "--since")
    client = client_for(args)
    if args.gpu_hours or args.until is not None:
        from gflow.cli import gstats_hours
        print(gstats_hours.report(client, query.get("since"), None if args.until is None
                                  else parse_since(args.until, "--until"), fmt,
                                  # everyone's unless -u names someone
                                  [query["user"]] if args.user is not None and user else None))
        return 0
    stats = client.call("GET", "/stats", query=query)
    if fmt == "json":
        print(render_json(stats))
    elif fmt == "csv":
        print(render_csv(stats))
    else:
        print(render_table(stats, render.use_colour()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
