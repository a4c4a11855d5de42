"""`gjob`: inspect and manage individual jobs (show, log, hold, release)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from gflow.cli import render
from gflow.cli.common import (
    CommandError, add_config_arg, client_for, current_user, guarded,
)
from gflow.errors import ParseError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gjob", description="Inspect and manage jobs.")
    add_config_arg(p)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    s = sub.add_parser("show", aliases=["s"], help="show a job's details")
    s.add_argument("job", metavar="JOB", help="job ids: 3, 1-5, 2,4")
    lg = sub.add_parser("log", aliases=["l"], help="print a job's output")
    lg.add_argument("job", metavar="JOB", help="job id, @ or @~N")
    lg.add_argument("-f", "--follow", action="store_true", help="follow a running job's log")
    h = sub.add_parser("hold", aliases=["h"], help="hold queued jobs")
    h.add_argument("job", metavar="JOB")
    r = sub.add_parser("release", aliases=["r"], help="release held jobs")
    r.add_argument("job", metavar="JOB")
    for sp in (s, lg, h, r):
        add_config_arg(sp)
    return p


def resolve_ref(client, text: str) -> int:
    from gflow.parsing import parse_job_ref
    try:
        ref = parse_job_ref(text)
    except ParseError as exc:
        raise CommandError(f"Error: {exc}") from None
    if isinstance(ref, int):
        return ref
    try:
        return client.resolve(current_user(), ref)
    except Exception as exc:
        raise CommandError(f"Failed to resolve job ID '{text}': {exc}") from None


def id_list(text: str) -> list[int]:
    from gflow.parsing import parse_id_list
    try:
        return parse_id_list(text)
    except ParseError as exc:
        raise CommandError(f"Error: {exc}") from None


def local_time(t: float) -> str:
    return time.strftime("%m/%d-%H:%M:%S", time.localtime(t))


def show_lines(job: dict, now: float) -> list[str]:
    state = job.get("state", "Queued")
    out = ["Job Details:", f"  ID={job['id']}",
           f"  State={state} ({render.STATE_SHORT.get(state, state)})"]
    if job.get("exit_code") is not None:
        out.append(f"  ExitCode={job['exit_code']}")
    if job.get("reason_detail"):
        out.append(f"  Reason={job['reason_detail']}")
    out += [f"  Priority={job.get('priority', 10)}",
            f"  SubmittedBy={job.get('submitted_by', 'unknown')}"]
    if job.get("group_id"):
        out.append(f"  GroupID={job['group_id']}")
    if job.get("script"):
        out.append(f"  Script={job['script']}")
    command = job.get("command")
    params = job.get("parameters") or {}
    if command is not None:
        if "{" in command and params:
            out.append(f"  Command(template)={command}")
            actual = command
            missing = []
            import re
            for name in re.findall(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}", command):
                if name in params:
                    actual = actual.replace("{" + name + "}", params[name])
                else:
                    missing.append(name)
            out.append(f"  Command(actual)={actual}" if not missing else
                       f"  Command(actual)=Error: Missing parameter values: {', '.join(missing)}")
        else:
            out.append(f"  Command={command}")
    if params:
        out += ["", "Parameters:"] + [f"  {k}={params[k]}" for k in sorted(params)]
    out += ["", "Resources:", f"  GPUs={job.get('gpus', 0)}",
            f"  GPUSharing={'shared' if job.get('gpu_sharing_mode') == 'Shared' else 'exclusive'}"]
    if job.get("gpu_memory_limit_mb") is not None:
        out.append(f"  GPUMemoryLimit={render.format_memory(job['gpu_memory_limit_mb'])}")
    if job.get("gpu_ids") is not None:
        out.append("  GPUIDs=" + ",".join(str(i) for i in job["gpu_ids"]))
    if job.get("memory_limit_mb") is not None:
        out.append(f"  MemoryLimit={render.format_memory(job['memory_limit_mb'])}")
    if job.get("conda_env"):
        out.append(f"  CondaEnv={job['conda_env']}")
    out += ["", "Execution:", f"  WorkingDir={job.get('run_dir', '.')}"]
    deps = list(job.get("depends_on_ids") or [])
    if job.get("depends_on") is not None and job["depends_on"] not in deps:
        deps.append(job["depends_on"])
    if deps or job.get("task_id") is not None:
        out += ["", "Dependencies:"]
        if deps:
            out.append("  DependsOn=" + ",".join(map(str, deps)))
            if job.get("dependency_mode"):
                out.append(f"  Mode={job['dependency_mode']}")
            if job.get("auto_cancel_on_dependency_failure"):
                out.append("  AutoCancel=enabled")
        if job.get("task_id") is not None:
            out.append(f"  TaskID={job['task_id']}")
    out += ["", "Timing:"]
    limit = render.wire_duration(job.get("time_limit"))
    if limit is not None:
        out.append(f"  TimeLimit={render.hms(limit)}")
    submitted = render.wire_time(job.get("submitted_at"))
    started = render.wire_time(job.get("started_at"))
    finished = render.wire_time(job.get("finished_at"))
    if submitted is not None:
        line = f"  Submitted={local_time(submitted)}"
        if started is not None:
            line += f" (waited {render.hms(started - submitted)})"
        out.append(line)
    if started is not None:
        if finished is None:
            out.append(f"  Started={local_time(started)} (running {render.hms(now - started)} so far)")
        else:
            out.append(f"  Started={local_time(started)}")
    if finished is not None:
        line = f"  Finished={local_time(finished)}"
        if started is not None:
            line += f" (runtime {render.hms(finished - started)})"
        out.append(line)
    return out


def cmd_show(client, args) -> int:
    rc = 0
    for n, job_id in enumerate(id_list(args.job)):
        if n:
            print("\n" + "=" * 80 + "\n")
        job = client.get_job(job_id)
        if job is None:
            print(f"Error: Job {job_id} not found", file=sys.stderr)
            rc = 1
            continue
        print("\n".join(show_lines(job, time.time())))
    return rc


def cmd_log(client, args) -> int:
    job_id = resolve_ref(client, args.job)
    status, path = client.request("GET", f"/jobs/{job_id}/log")
    if status != 200 or not isinstance(path, str):
        print(f"Log for job {job_id} is not available.", file=sys.stderr)
        return 1
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CommandError(f"Failed to open log file '{path}' for job {job_id}: "
                           f"{exc.strerror}") from None
    out = sys.stdout.buffer
    with f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                continue
            out.flush()
            if not args.follow:
                return 0
            job = client.get_job(job_id)
            if job is None or job.get("state") not in ("Running", "Queued", "Hold"):
                rest = f.read()
                out.write(rest)
                out.flush()
                return 0
            time.sleep(0.25)


def cmd_hold_release(client, args, hold: bool) -> int:
    rc = 0
    want, action = ("Queued", "hold") if hold else ("Hold", "release")
    for job_id in id_list(args.job):
        job = client.get_job(job_id)
        if job is None:
            print(f"Error: Job {job_id} not found", file=sys.stderr)
            rc = 1
            continue
        if job.get("state") != want:
            verb = "held" if hold else "released"
            only = "Only Queued jobs can be held." if hold else "Only Hold jobs can be released."
            print(f"Error: Job {job_id} is in state '{job.get('state')}' and cannot be {verb}. "
                  f"{only}", file=sys.stderr)
            rc = 1
            continue
        status, body = client.action(job_id, action)
        if status != 200:
            from gflow.client import error_text
            print(f"Error: {error_text(status, body)}", file=sys.stderr)
            rc = 1
            continue
        print(f"Job {job_id} put on hold." if hold else f"Job {job_id} released back to queue.")
    return rc


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    client = client_for(args)
    cmd = args.cmd
    if cmd in ("show", "s"):
        return cmd_show(client, args)
    if cmd in ("log", "l"):
        return cmd_log(client, args)
    if cmd in ("hold", "h"):
        return cmd_hold_release(client, args, hold=True)
    if cmd in ("release", "r"):
        return cmd_hold_release(client, args, hold=False)
    raise CommandError(f"unknown command {cmd}", code=2)


if __name__ == "__main__":
    sys.exit(main())
