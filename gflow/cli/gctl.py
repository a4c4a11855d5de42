"""`gctl`: administer the scheduler: GPU allow-list, group limits and GPU reservations.

Deliberate differences from 0.4.13 (spec/cli.md §15): `reserve get` of an unknown id is an
error (stderr, exit status 1; 0.4.13 printed `Reservation 99 not found.` and exited 0);
finished and cancelled reservations stay listed (the daemon keeps them) and the timeline
draws them; every reservation time is shown in one zone, `--timezone` > config `timezone` >
the local zone (0.4.13 drew the timeline in UTC but listed in the local zone); `list` and
`get` accept `--timezone` too; `reserve create --user` defaults to you.
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
    EXIT_USAGE, CommandError, Parser, add_completion_parser, add_config_arg, add_version, api_text,
    client_for, current_user, guarded, load_config, parse_value, builtin_subcommand, u32,
)

WIDTH = 80
BAR_OFFSET = 16
FILL = {"Active": "█", "Pending": "░", "Completed": "▓", "Cancelled": "▒"}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gctl", description="Administer the scheduler: GPUs, group limits and "
                                        "GPU reservations.")
    add_config_arg(p)
    add_version(p, "gctl")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)

    def command(parent, name: str, text: str, **kw) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=text, description=text, **kw)
        add_config_arg(sp, sub=True)
        return sp

    sg = command(sub, "set-gpus", "restrict the scheduler to some GPUs (`all` lifts it)")
    sg.add_argument("gpu_spec", metavar="GPU_SPEC", help="all, or GPU indices: 0,2 or 0-3")
    command(sub, "show-gpus", "list the GPUs: available or in use, and restricted ones")
    sl = command(sub, "set-limit", "change how many jobs of a group may run at once")
    sl.add_argument("target", metavar="JOB_OR_GROUP_ID",
                    help="a job id of the group, or the group's UUID")
    sl.add_argument("limit", metavar="LIMIT", type=_limit, help="max concurrent jobs (1 or more)")

    rv = command(sub, "reserve", "reserve GPUs for a user during a time window")
    p.reserve_parser = rv
    rsub = rv.add_subparsers(dest="reserve_cmd", metavar="COMMAND", parser_class=Parser)
    cr = command(rsub, "create", "create a reservation")
    cr.add_argument("--user", metavar="USER", help="who the GPUs are for (default: you)")
    which = cr.add_mutually_exclusive_group()
    which.add_argument("--gpus", type=u32, metavar="GPUS", help="number of GPUs")
    which.add_argument("--gpu-spec", metavar="GPU_SPEC", help="GPU indices: 0,2 or 0-3")
    cr.add_argument("--start", required=True, metavar="START",
                    help="'YYYY-MM-DD HH:MM' (in the time zone) or RFC 3339; on :00 or :30")
    cr.add_argument("--duration", required=True, metavar="DURATION",
                    help="1h, 30m, 2h30m (a multiple of 30 minutes)")
    cr.add_argument("--timezone", metavar="TIMEZONE",
                    help="IANA time zone of --start (default: config `timezone`, else local)")
    ls = command(rsub, "list", "list reservations")
    ls.add_argument("--user", metavar="USER", help="only this user's")
    ls.add_argument("--status", metavar="STATUS",
                    help="pending, active, completed or cancelled")
    ls.add_argument("--active", action="store_true", help="only those active now")
    ls.add_argument("--timeline", action="store_true", help="draw a timeline")
    # `--range -24h`: let values like -24h / -24h:+24h through as values, not options
    import re
    ls._negative_number_matcher = re.compile(r"^-\d+[hHmM]")
    ls.add_argument("--range", metavar="RANGE",
                    help="timeline window: 48h (from now), -24h (until now), -24h:+24h")
    ls.add_argument("--from", dest="from_", metavar="FROM", help="timeline start time")
    ls.add_argument("--to", metavar="TO", help="timeline end time")
    ls.add_argument("--timezone", metavar="TIMEZONE", help="show times in this IANA time zone")
    gt = command(rsub, "get", "show a reservation")
    gt.add_argument("id", type=u32, metavar="ID")
    gt.add_argument("--timezone", metavar="TIMEZONE", help="show times in this IANA time zone")
    cc = command(rsub, "cancel", "cancel a reservation")
    cc.add_argument("id", type=u32, metavar="ID")
    from gflow.cli import gctl_gpu
    gctl_gpu.add_parser(sub, command)           # gpu-process list|ignore|unignore
    from gflow.cli import gctl_quota
    gctl_quota.add_parser(sub, command)         # quota list|set|remove

    add_completion_parser(sub)
    return p


def _limit(text: str) -> int:
    """A group's limit: 0 would keep its queued jobs waiting forever (issue 23)."""
    from gflow.cli.common import limit_type
    return limit_type(2**64 - 1, "usize")(text)


# --- time zones and times --------------------------------------------------------------------

class Zone:
    """The zone reservation times are read and shown in."""

    def __init__(self, name: Optional[str]):
        import datetime as dt
        self.dt = dt
        self.name = name
        if name is None:
            self.tz = _local_zone()
        else:
            import zoneinfo
            try:
                self.tz = zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                raise CommandError(f"Error: Invalid timezone: {name} (expected an IANA name "
                                   "such as Europe/Berlin or UTC)") from None

    def at(self, t: float):
        return self.dt.datetime.fromtimestamp(t, self.tz)

    def fmt(self, t: float, pattern: str) -> str:
        return self.at(t).strftime(pattern)

    def parse(self, text: str, grid: bool = True) -> float:
        """A reservation time: RFC 3339 or `YYYY-MM-DD HH:MM` (in this zone) on the grid."""
        s = text.strip()
        dt = self.dt
        value = None
        import re
        m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})", s)
        try:
            if m:
                value = dt.datetime(*map(int, m.groups()))
            elif "T" in s.upper():
                value = dt.datetime.fromisoformat(s[:-1] + "+00:00" if s[-1:] in "zZ" else s)
        except ValueError:
            value = None
        if value is None:
            raise CommandError(f"Error: Invalid time format: {text}. Use ISO8601 "
                               "(e.g., '2026-01-28T14:00:00Z') or 'YYYY-MM-DD HH:MM'")
        if grid:
            if value.second or value.microsecond:
                raise CommandError(f"Error: Reservation time must not include seconds. "
                                   f"Got: {text}")
            if value.minute not in (0, 30):
                raise CommandError("Error: Reservation time must be on the hour (:00) or "
                                   f"half-hour (:30). Got: {text}")
        if value.tzinfo is not None:
            return value.timestamp()
        first = value.replace(tzinfo=self.tz, fold=0)
        second = value.replace(tzinfo=self.tz, fold=1)
        back = first.astimezone(dt.timezone.utc).astimezone(self.tz).replace(tzinfo=None)
        if first.utcoffset() != second.utcoffset() or back != value:
            raise CommandError(f"Error: Ambiguous or invalid time in timezone "
                               f"{self.label()}: {text}")
        return first.timestamp()

    def label(self, t: Optional[float] = None) -> str:
        if self.name is not None and t is None:
            return self.name
        return self.at(time.time() if t is None else t).strftime("%Z")


def _local_zone():
    import datetime as dt
    import os
    import zoneinfo
    tz = (os.environ.get("TZ") or "").lstrip(":")
    if tz:
        try:
            return zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return dt.datetime.now().astimezone().tzinfo


def zone_for(args) -> Zone:
    name = getattr(args, "timezone", None)
    if name is not None and name.strip().lower() in ("", "local"):
        return Zone(None)
    if name is not None:
        return Zone(name.strip())
    config = load_config(getattr(args, "config", None))
    return Zone(config.timezone)


def wire_secs(value) -> float:
    return render.wire_time(value) or 0.0


def compact_duration(secs: float) -> str:
    secs = int(secs)
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h}h"] if h else []
    if m:
        parts.append(f"{m}m")
    if s:
        parts.append(f"{s}s")
    return " ".join(parts) or "0s"


def gpu_text(spec: dict) -> str:
    if "indices" in spec:
        return ",".join(map(str, spec["indices"]))
    return str(spec.get("count", 0))


def gpu_count(spec: dict) -> int:
    return len(spec["indices"]) if "indices" in spec else int(spec.get("count", 0))


# --- commands ----------------------------------------------------------------------------------

def cmd_set_gpus(client, args) -> int:
    spec = args.gpu_spec.strip()
    if spec.lower() == "all":
        indices = None
    else:
        from gflow.parsing import parse_gpu_spec
        indices = parse_value(parse_gpu_spec, args.gpu_spec, "GPU_SPEC")
    status, body = client.request("POST", "/gpus", {"allowed_indices": indices})
    if status != 200:
        raise CommandError(f"Failed to set GPU configuration: {api_text(status, body)}")
    if indices is None:
        print("GPU restriction removed: all GPUs are now available")
    else:
        print(f"GPU restriction updated: only GPUs [{', '.join(map(str, indices))}] will be used")
    return 0


# Where the allow-list comes from (our daemon's `allowed_gpu_source`).
_GPU_SOURCES = {"cli": "from --gpus", "env": "from GFLOW_DAEMON_GPUS",
                "config": "from gflow.toml", "set-gpus": "from gctl set-gpus"}


def cmd_show_gpus(client, args) -> int:
    """0.4.13's lines (`<index>\\t<available|in_use>[\\trestricted]`), then what our daemon
    adds: the shared jobs on a GPU and the memory they reserved, and one last line saying
    where the allow-list comes from."""
    info = client.call("GET", "/info")
    allowed = info.get("allowed_gpu_indices")
    lines = []
    for gpu in sorted(info.get("gpus") or [], key=lambda g: g.get("index", 0)):
        line = f"{gpu['index']}\t{'available' if gpu.get('available') else 'in_use'}"
        if allowed is not None and gpu["index"] not in allowed:
            line += "\trestricted"
        if isinstance(gpu.get("shared_jobs"), list) and gpu["shared_jobs"]:
            line += "\t" + shared_text(gpu)
        lines.append(line)
    source = info.get("allowed_gpu_source")
    if lines and isinstance(source, str):
        if allowed is None and source == "default":
            lines.append("allowed: all detected GPUs")
        else:
            what = "all" if allowed is None else ",".join(map(str, allowed))
            lines.append(f"allowed: {what} ({_GPU_SOURCES.get(source, render.safe(source))})")
    if lines:
        print("\n".join(lines))
    return 0


def shared_text(gpu: dict) -> str:
    """`shared by jobs 5,6 (8192 of 24576 MB reserved)` for a GPU that shared jobs hold."""
    jobs = ",".join(str(j) for j in gpu["shared_jobs"])
    used, total = gpu.get("shared_memory_mb"), gpu.get("memory_mb")
    memory = f"{used} of {total} MB" if total else f"{used} MB"
    return render.safe(f"shared by job{'s' if ',' in jobs else ''} {jobs} ({memory} reserved)")


def cmd_set_limit(client, args) -> int:
    target = args.target.strip()
    group = target
    if target.isdigit() and int(target) <= 2**32 - 1:
        job = client.get_job(int(target))
        if job is None:
            raise CommandError(f"Job {target} not found")
        if not job.get("group_id"):
            raise CommandError(f"Job {target} is not part of a group")
        group = job["group_id"]
        print(f"Found job {target} in group '{group}'")
    status, body = client.request("POST", f"/groups/{group}/max-concurrency",
                                  {"max_concurrent": args.limit})
    if status != 200:
        raise CommandError("Failed to set group max_concurrency: " + api_text(status, body))
    print(f"Updated max_concurrency to {args.limit} for group '{group}' "
          f"({body.get('updated_jobs', 0)} jobs affected)")
    return 0


def cmd_reserve_create(client, args) -> int:
    if args.gpus is None and args.gpu_spec is None:
        raise CommandError("Must specify either --gpus or --gpu-spec")
    zone = zone_for(args)
    start = zone.parse(args.start)
    from gflow.parsing import parse_duration_spec, parse_gpu_spec
    duration = parse_value(parse_duration_spec, args.duration, "--duration")
    body: dict = {"user": args.user if args.user is not None else current_user(),
                  "start_time": {"secs_since_epoch": int(start), "nanos_since_epoch": 0},
                  "duration_secs": duration}
    if args.gpu_spec is not None:
        body["gpu_indices"] = parse_value(parse_gpu_spec, args.gpu_spec, "--gpu-spec")
    else:
        body["gpu_count"] = args.gpus
    status, reply = client.request("POST", "/reservations", body)
    if status not in (200, 201):
        raise CommandError(f"Failed to create reservation: {api_text(status, reply)}")
    print(f"Reservation created successfully.\n  ReservationID={reply['reservation_id']}")
    return 0


def list_reservations(client, query: Optional[dict] = None) -> list[dict]:
    status, body = client.request("GET", "/reservations", query=query)
    if status != 200:
        raise CommandError(f"Failed to list reservations: {api_text(status, body)}")
    return body if isinstance(body, list) else []


def _usage(message: str) -> CommandError:
    return CommandError(f"gctl reserve list: error: {message}", EXIT_USAGE)


def cmd_reserve_list(client, args) -> int:
    window = [f for f, v in (("--range", args.range), ("--from", args.from_), ("--to", args.to))
              if v is not None]
    if window and not args.timeline:
        raise _usage(f"argument {window[0]}: requires --timeline")
    if args.range is not None and (args.from_ is not None or args.to is not None):
        raise _usage("argument --range: not allowed with argument "
                     + ("--from" if args.from_ is not None else "--to"))
    if (args.from_ is None) != (args.to is None):
        raise _usage("arguments --from and --to: give both or neither")
    zone = zone_for(args)
    query = {"user": args.user, "status": args.status,
             "active_only": "true" if args.active else None}
    reservations = sorted(list_reservations(client, query), key=lambda r: r.get("id", 0))
    if args.timeline:
        now = time.time()
        if args.from_ is not None:
            start, end = zone.parse(args.from_, grid=False), zone.parse(args.to, grid=False)
        elif args.range is not None:
            start, end = parse_range(args.range, now)
        else:
            start, end = now - 12 * 3600, now + 12 * 3600
        if end <= start:
            raise CommandError("Invalid time range: end time must be after start time")
        if not reservations:
            print("No reservations found.")
            return 0
        print(timeline(reservations, zone, start, end, now))
        return 0
    if not reservations:
        print("No reservations found.")
        return 0
    rows = [["ID", "USER", "GPUS", "START", "END", "STATUS"]]
    for r in reservations:
        s = wire_secs(r.get("start_time"))
        e = s + (render.wire_duration(r.get("duration")) or 0)
        rows.append([str(r["id"]), r.get("user", ""), gpu_text(r.get("gpu_spec") or {}),
                     zone.fmt(s, "%Y-%m-%d %H:%M:%S"), zone.fmt(e, "%Y-%m-%d %H:%M:%S"),
                     r.get("status", "")])
    print(render.table(rows))
    return 0


def parse_range(text: str, now: float) -> tuple[float, float]:
    from gflow.parsing import parse_duration_spec

    def offset(part: str) -> float:
        part = part.strip()
        sign = -1 if part.startswith("-") else 1
        body = part.lstrip("+-")
        return sign * parse_value(lambda t: parse_duration_spec(t, half_hours=False), body,
                                  "--range")

    if ":" in text:
        a, b = text.split(":", 1)
        return now + offset(a), now + offset(b)
    delta = offset(text)
    return (now + delta, now) if delta < 0 else (now, now + delta)


def timeline(reservations: list[dict], zone: Zone, start: float, end: float,
             now: float) -> str:
    """0.4.13's 80-column reservation timeline."""
    hours = int(end - start) // 3600
    interval = 2 if hours <= 12 else 4 if hours <= 24 else 6 if hours <= 48 else 12
    first = zone.at(start)
    first = first.replace(hour=first.hour - first.hour % interval, minute=0, second=0,
                          microsecond=0)
    aligned = first.timestamp()
    if aligned < start:
        aligned += interval * 3600
    aligned -= interval * 3600
    span = end - aligned

    def pos(t: float) -> int:
        if t < aligned:
            return 0
        x = (t - aligned) / span * WIDTH
        return int(x + 0.5)  # Rust's f64::round for non-negative values

    markers = []
    t = aligned
    while t <= end:
        markers.append(t)
        t += interval * 3600
    now_pos = pos(now)
    axis = ["─"] * WIDTH
    for m in markers:
        if pos(m) < WIDTH:
            axis[pos(m)] = "┬"
    if now_pos < WIDTH:
        axis[now_pos] = "┃"
    labels = [" "] * WIDTH
    previous_date = None
    for n, m in enumerate(markers):
        date = zone.fmt(m, "%m/%d")
        text = zone.fmt(m, "%m/%d %H:%M" if n == 0 or date != previous_date else "%H:%M")
        previous_date = date
        p = pos(m)
        if abs(p - now_pos) >= 6 and p + len(text) <= WIDTH:
            labels[p:p + len(text)] = list(text)
    if now_pos >= 2 and now_pos + 2 < WIDTH:
        labels[now_pos - 1:now_pos + 2] = list("Now")
    out = ["", f"GPU Reservations Timeline ({zone.fmt(now, '%Y-%m-%d %H:%M:%S %Z')})",
           "═" * WIDTH, "".join(axis), "".join(labels), ""]
    for r in sorted(reservations, key=lambda r: wire_secs(r.get("start_time"))):
        rs = wire_secs(r.get("start_time"))
        re_ = rs + (render.wire_duration(r.get("duration")) or 0)
        if re_ < aligned or rs > end:
            continue
        bar = [" "] * (WIDTH - BAR_OFFSET)
        p0 = pos(max(rs, aligned))
        cells = max(pos(min(re_, end)) - p0, 1)
        fill = FILL.get(r.get("status"), "░")
        for p in range(p0, p0 + cells):
            if BAR_OFFSET <= p < WIDTH:
                bar[p - BAR_OFFSET] = fill
        spec = r.get("gpu_spec") or {}
        if "indices" in spec:
            what = "GPU[" + ",".join(map(str, spec["indices"])) + "]"
        else:
            n = spec.get("count", 0)
            what = f"{n} GPU" + ("s" if n > 1 else "")
        out.append(f"{r.get('user', '') + ' (GPU: ' + what + ')':<15} {''.join(bar)}")
        out.append(f"  └─ {r.get('status')} ({zone.fmt(rs, '%H:%M')}→{zone.fmt(re_, '%H:%M')})")
    active = [r for r in reservations if r.get("status") == "Active"]
    pending = [r for r in reservations if r.get("status") == "Pending"]
    reserved = sum(gpu_count(r.get("gpu_spec") or {}) for r in active)
    out += ["", "─" * WIDTH,
            f"Summary: {len(active)} active, {len(pending)} pending | {reserved} GPUs currently "
            "reserved", "", "Legend: █ Active  ░ Pending"]
    return "\n".join(out)


def cmd_reserve_get(client, args) -> int:
    status, r = client.request("GET", f"/reservations/{args.id}")
    if status == 404:
        raise CommandError(f"Error: Reservation {args.id} not found")
    if status != 200 or not isinstance(r, dict):
        raise CommandError(f"Failed to get reservation: {api_text(status, r)}")
    zone = zone_for(args)
    fmt = "%Y-%m-%d %H:%M:%S %Z"
    s = wire_secs(r.get("start_time"))
    duration = render.wire_duration(r.get("duration")) or 0
    spec = r.get("gpu_spec") or {}
    lines = ["Reservation Details:", f"  ID={r['id']}", f"  User={r.get('user')}"]
    if "indices" in spec:
        lines.append("  GPUIndices=" + ",".join(map(str, spec["indices"])))
    else:
        lines.append(f"  GPUCount={spec.get('count', 0)}")
    lines += [f"  StartTime={zone.fmt(s, fmt)}", f"  EndTime={zone.fmt(s + duration, fmt)}",
              f"  Duration={compact_duration(duration)}", f"  Status={r.get('status')}",
              f"  CreatedAt={zone.fmt(wire_secs(r.get('created_at')), fmt)}"]
    if r.get("cancelled_at"):
        lines.append(f"  CancelledAt={zone.fmt(wire_secs(r['cancelled_at']), fmt)}")
    print("\n".join(lines))
    return 0


def cmd_reserve_cancel(client, args) -> int:
    status, body = client.request("DELETE", f"/reservations/{args.id}")
    if status not in (200, 204):
        raise CommandError(f"Failed to cancel reservation: {api_text(status, body)}")
    print(f"Reservation {args.id} cancelled successfully.")
    return 0


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help(sys.stderr)
        return 2
    done = builtin_subcommand(parser, args, args.cmd)
    if done is not None:
        return done
    if args.cmd == "reserve":
        if args.reserve_cmd is None:
            parser.reserve_parser.print_help(sys.stderr)
            return EXIT_USAGE
        client = client_for(args)
        return {"create": cmd_reserve_create, "list": cmd_reserve_list, "get": cmd_reserve_get,
                "cancel": cmd_reserve_cancel}[args.reserve_cmd](client, args)
    if args.cmd == "quota":
        from gflow.cli import gctl_quota
        return gctl_quota.run(client_for(args), args)
    if args.cmd == "gpu-process":
        from gflow.cli import gctl_gpu
        return gctl_gpu.run(client_for(args), args)
    client = client_for(args)
    return {"set-gpus": cmd_set_gpus, "show-gpus": cmd_show_gpus,
            "set-limit": cmd_set_limit}[args.cmd](client, args)


if __name__ == "__main__":
    sys.exit(main())
