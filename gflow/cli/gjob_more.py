"""`gjob` commands of issue 17: wait, suspend, resume, `log --first/--last/--attempt`, `release --at`, and what `show` adds."""

from __future__ import annotations

import sys
import time

from gflow.cli import render
from gflow.cli.common import CommandError, api_text, resolve_job_ids, u32

FINAL = ("Finished", "Failed", "Cancelled", "Timeout")
POLL_SECS = 0.5


# --- parsers ---------------------------------------------------------------------------------

def add_commands(command) -> None:
    """Register wait, suspend and resume (`command` is gjob's subparser factory)."""
    w = command("wait", [], "block until jobs end; exit 0 if all finished, else with the "
                            "exit code of the first that failed (1 if it has none)")
    w.add_argument("jobs", nargs="+", metavar="JOB", help="job ids: 3, 1-5, 2,4, @ or @~N")
    w.add_argument("--any", action="store_true",
                   help="return when the first of them ends, with its result")
    w.add_argument("--silent", action="store_true",
                   help="print nothing (the exit status says it all)")
    for name, text in (("suspend", "stop running jobs (SIGSTOP to the whole tree); they "
                                   "keep their GPUs"),
                       ("resume", "continue suspended jobs (SIGCONT)")):
        sp = command(name, [], text)
        sp.add_argument("job", metavar="JOB", help="job ids: 3, 1-5, 2,4, @ or @~N")


def extend_log(lg) -> None:
    g = lg.add_mutually_exclusive_group()
    g.add_argument("--first", type=u32, metavar="K", help="only the first K lines")
    g.add_argument("--last", type=u32, metavar="K", help="only the last K lines")
    lg.add_argument("--attempt", type=u32, metavar="N",
                    help="the log of attempt N of a retried job (default: the latest)")


def extend_release(r) -> None:
    r.add_argument("--at", metavar="TIME",
                   help="release now, but start no earlier than TIME (as gbatch --begin)")


# --- wait ------------------------------------------------------------------------------------

def job_result(job: dict) -> int:
    """0 for a finished job; else its exit code when it is one a shell can return, 1
    otherwise (cancelled before it ran, killed by a signal)."""
    if job.get("state") == "Finished":
        return 0
    code = job.get("exit_code")
    return code if isinstance(code, int) and 0 < code < 256 else 1


def ended_text(job: dict) -> str:
    state = job.get("state")
    text = f"Job {job['id']} {state.lower()}"
    if state != "Finished" and job.get("exit_code") is not None:
        text += f" (exit code {job['exit_code']})"
    return text


def cmd_wait(client, args) -> int:
    ids: list[int] = []
    for text in args.jobs:
        for job_id in resolve_job_ids(client, text):
            if job_id not in ids:
                ids.append(job_id)
    pending = set()
    ended: list[dict] = []
    for job_id in ids:
        job = client.get_job(job_id)
        if job is None:
            raise CommandError(f"Error: Job {job_id} not found")
        (ended.append(job) if job.get("state") in FINAL else pending.add(job_id))
    say = (lambda _t: None) if args.silent else print
    for job in ended:
        say(ended_text(job))
    while pending and not (args.any and ended):
        time.sleep(POLL_SECS)
        # One listing of the live jobs per round; only those that left it are fetched.
        live = {j["id"] for j in client.list_jobs(states=["Queued", "Hold", "Running"])}
        for job_id in sorted(pending - live):
            job = client.get_job(job_id)
            if job is None or job.get("state") in FINAL:
                job = job or {"id": job_id, "state": "Cancelled", "exit_code": None}
                pending.discard(job_id)
                ended.append(job)
                say(ended_text(job))
    if args.any:
        return job_result(ended[0])
    failed = [j for j in ended if j.get("state") != "Finished"]
    if not failed:
        return 0
    first = min(failed, key=lambda j: render.wire_time(j.get("finished_at")) or 0.0)
    return job_result(first)


# --- suspend / resume ------------------------------------------------------------------------

def cmd_suspend_resume(client, args, action: str) -> int:
    rc = 0
    for job_id in resolve_job_ids(client, args.job):
        status, body = client.request("POST", f"/jobs/{job_id}/{action}")
        if status != 200:
            print(f"Error: {api_text(status, body)}", file=sys.stderr)
            rc = 1
            continue
        print(f"Job {job_id} suspended; it keeps its GPUs until it is resumed or ends."
              if action == "suspend" else f"Job {job_id} resumed.")
    return rc


# --- log -------------------------------------------------------------------------------------

def wants_log_more(args) -> bool:
    return args.first is not None or args.last is not None or args.attempt is not None


def cmd_log(client, args) -> int:
    """`--first/--last K` are served as line ranges by the daemon; `--attempt N` names an
    earlier attempt's log."""
    from gflow.cli.gjob import copy_log, get_job, resolve_ref
    job_id = resolve_ref(client, args.job)
    query = {"attempt": args.attempt}
    if args.first is None and args.last is None:
        status, path = client.request("GET", f"/jobs/{job_id}/log", query=query)
        if status != 200 or not isinstance(path, str):
            get_job(client, job_id)
            raise CommandError(f"Error: {api_text(status, path)}" if path else
                               f"Log for job {job_id} is not available.")
        return copy_log(client, job_id, path, args.follow and args.attempt is None)
    query.update(first=args.first, last=args.last)
    status, data = client.request("GET", f"/jobs/{job_id}/log/lines", query=query, raw=True)
    if status != 200:
        get_job(client, job_id)
        text = data.decode("utf-8", "replace").strip() if data else ""
        raise CommandError(f"Log for job {job_id} is not available."
                           if status == 404 and not text.strip("null") else
                           f"Error: {api_text(status, _json_or_text(text))}")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def _json_or_text(text: str):
    import json
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- release --at ----------------------------------------------------------------------------

def cmd_release_at(client, args) -> int:
    from gflow.begintime import format_begin, parse_begin
    from gflow.cli.common import load_config
    from gflow.errors import ParseError
    config = load_config(getattr(args, "config", None))
    now = time.time()
    try:
        at = parse_begin(args.at, now, config.timezone)
    except ParseError as exc:
        raise CommandError(f"Error: invalid value '{args.at}' for --at: {exc}") from None
    rc = 0
    for job_id in resolve_job_ids(client, args.job):
        status, body = client.request("POST", f"/jobs/{job_id}/release", {"at": at})
        if status != 200:
            print(f"Error: {api_text(status, body)}", file=sys.stderr)
            rc = 1
            continue
        print(f"Job {job_id} released; it starts no earlier than "
              f"{format_begin(at, now, config.timezone)}.")
    return rc


# --- show ------------------------------------------------------------------------------------

def dependency_text(job: dict, deps: list) -> str:
    """`12,13`, or with Slurm-style conditions `afterany:12,afterok:13`."""
    conds = job.get("dependency_conditions") or {}
    if not conds:
        return ",".join(map(str, deps))
    return ",".join(f"{conds.get(str(d), 'afterok')}:{d}" for d in deps)


def timing_lines(job: dict, now: float) -> list[str]:
    from gflow.cli.gjob_show import local_time
    out = []
    begin = render.wire_time(job.get("scheduled_at"))
    if begin is not None:
        out.append(f"  Begin={local_time(begin)}" + (" (not yet)" if begin > now else ""))
    since = render.wire_time(job.get("suspended_at"))
    if since is not None and job.get("state") == "Running":
        out.append(f"  Suspended={local_time(since)} (for {render.hms(now - since)})")
    return out


def attempt_lines(job: dict, now: float) -> list[str]:
    """Every earlier attempt, then the current one, when the job may be retried."""
    from gflow.cli.gjob_show import local_time
    attempts = job.get("attempts") or []
    if not job.get("max_retries") and not attempts:
        return []
    out = ["", f"Attempts: (max retries {job.get('max_retries') or 0})"]
    for a in attempts:
        started = render.wire_time(a.get("started_at"))
        finished = render.wire_time(a.get("finished_at"))
        line = f"  #{a.get('attempt')} {a.get('state', 'Failed')}"
        if a.get("exit_code") is not None:
            line += f" exit={a['exit_code']}"
        if started is not None:
            line += f" started={local_time(started)}"
        if started is not None and finished is not None:
            line += f" runtime={render.hms(finished - started)}"
        if a.get("detail"):
            line += f" ({a['detail']})"
        out.append(line)
    out.append(f"  #{len(attempts) + 1} {job.get('state')} (current; gjob log {job['id']} "
               f"--attempt N for an earlier one)")
    return out


# --- fair-share ------------------------------------------------------------------------------

def fair_shares(client) -> "dict | None":
    """GET /fair-share when fair-share orders jobs; None when off (or an older daemon)."""
    request = getattr(client, "request", None)      # (stand-in clients of tests lack it)
    if request is None:
        return None
    status, body = request("GET", "/fair-share")
    if status != 200 or not isinstance(body, dict) or not body.get("enabled"):
        return None
    return body.get("users") or {}


def fair_share_lines(job: dict, shares) -> list:
    if shares is None:
        return []
    user = job.get("submitted_by", "")
    row = shares.get(user) or {"factor": 1.0, "usage_gpu_hours": 0.0}
    return ["", "FairShare:", f"  Factor={row['factor']:.3f} ({user}: "
            f"{row['usage_gpu_hours']:.2f} GPU-hours of recent use, decayed)"]
