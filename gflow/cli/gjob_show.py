"""`gjob show`: the details of jobs, 0.4.13's layout; ids, ranges and `@` / `@~N`, with the
missing ones summed up in one line (0.4.13 printed one line per missing id)."""

from __future__ import annotations

import sys
import time

from gflow.cli import gjob_more, render
from gflow.cli.common import resolve_job_ids

# More ids than this are looked up with one GET /jobs instead of one request each
# (`gjob show 150-100000` took a minute and printed 100k lines).
LIST_ALL_ABOVE = 50
SUMMARY_RANGES = 20          # ranges named in the "not found" line before "..."


def local_time(t: float) -> str:
    return time.strftime("%m/%d-%H:%M:%S", time.localtime(t))


def substitute(command: str, params: dict) -> tuple[str, list[str]]:
    import re
    missing: list[str] = []

    def repl(m):
        name = m.group(1)
        if name in params:
            return str(params[name])
        missing.append(name)
        return m.group(0)

    return re.sub(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}", repl, command), missing


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
            actual, missing = substitute(command, params)
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
    out += gpu_usage_lines(job.get("gpu_usage"))
    if job.get("memory_limit_mb") is not None:
        out.append(f"  MemoryLimit={render.format_memory(job['memory_limit_mb'])}")
    if job.get("conda_env"):
        out.append(f"  CondaEnv={job['conda_env']}")
    out += ["", "Execution:", f"  WorkingDir={job.get('run_dir', '.')}"]
    if job.get("executor_id"):              # handed to Slurm (docs/slurm.md)
        out.append(f"  SlurmJobId={job['executor_id']}")
    deps = list(job.get("depends_on_ids") or [])
    if job.get("depends_on") is not None and job["depends_on"] not in deps:
        deps.append(job["depends_on"])
    if deps or job.get("task_id") is not None:
        out += ["", "Dependencies:"]
        if deps:
            out.append("  DependsOn=" + gjob_more.dependency_text(job, deps))
            if job.get("dependency_mode"):
                out.append(f"  Mode={job['dependency_mode']}")
            if job.get("auto_cancel_on_dependency_failure"):
                out.append("  AutoCancel=enabled")
        if job.get("task_id") is not None:
            out.append(f"  TaskID={job['task_id']}")
    out += ["", "Timing:"] + gjob_more.timing_lines(job, now)     # Begin=, Suspended=
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
            out.append(f"  Started={local_time(started)} "
                       f"(running {render.hms(now - started)} so far)")
        else:
            out.append(f"  Started={local_time(started)}")
    if finished is not None:
        line = f"  Finished={local_time(finished)}"
        if started is not None:
            line += f" (runtime {render.hms(finished - started)})"
        out.append(line)
    return out + gjob_more.attempt_lines(job, now)


def gpu_usage_lines(usage) -> list[str]:
    """What sampling saw while it ran (ours): a hint for the next `--gpu-memory`."""
    if not isinstance(usage, dict):
        return []
    out = []
    peak = usage.get("peak_memory_mb")
    if isinstance(peak, (int, float)) and not isinstance(peak, bool):
        out.append(f"  GPUPeakMemory={render.format_memory(int(peak))} (on one GPU)")
    util = usage.get("mean_util_percent")
    if isinstance(util, (int, float)) and not isinstance(util, bool):
        out.append(f"  GPUMeanUtil={util:.1f}%")
    return out


def ranges_text(ids: list[int], limit: int = SUMMARY_RANGES) -> str:
    """`1, 3-5, 9` for sorted ids; past `limit` ranges, `...`."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    return ", ".join(parts) + (", ..." if len(runs) > limit else "")


def cmd_show(client, args) -> int:
    ids = resolve_job_ids(client, args.job)
    if len(ids) > LIST_ALL_ABOVE:
        wanted = set(ids)
        known = {j["id"]: j for j in client.list_jobs() if j.get("id") in wanted}
        fetch = known.get
    else:
        fetch = client.get_job
    missing: list[int] = []
    shown = 0
    shares = gjob_more.fair_shares(client)       # None unless fair-share is on
    for job_id in ids:
        job = fetch(job_id)
        if job is None:
            missing.append(job_id)
            continue
        if shown:
            print("\n" + "=" * 80 + "\n")
        print("\n".join(map(render.safe, show_lines(job, time.time())
                             + gjob_more.fair_share_lines(job, shares))))
        shown += 1
    if not missing:
        return 0
    sys.stdout.flush()
    if len(missing) == 1:
        print(f"Error: Job {missing[0]} not found", file=sys.stderr)
    else:
        print(f"Error: {len(missing)} jobs not found: {ranges_text(missing)}", file=sys.stderr)
    return 1
