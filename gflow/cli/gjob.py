"""`gjob`: inspect and manage individual jobs (attach, log, hold, release, update, show,
redo, close-sessions).

Deliberate differences from 0.4.13 (spec/cli.md §15): a missing job, a job in the wrong
state and a refused update are errors with exit status 1 (0.4.13 printed them and exited 0);
`--clear-*` flags of `update` really clear (0.4.13 sent null, which its daemon ignored);
contradicting flags (`-e` with `--clear-conda-env`, `-d` with `--depends-on-any`, ...) are
usage errors; jobs run without tmux, so `show` prints no `TmuxSession=` line, `attach`
follows the live output and forwards Ctrl-C to the job as SIGINT (a second Ctrl-C
within two seconds detaches), and `close-sessions` refuses (exit status 1, 2 without a
filter) and points to `gjob log`; `@` / `@~N` work wherever an id does; `redo`
is done by the daemon in one step (POST /jobs/{id}/redo) and keeps the run name, project,
all dependencies and the auto-cancel setting.
"""

from __future__ import annotations

import argparse
import sys
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli import gjob_more, render
from gflow.cli.gjob_show import cmd_show
from gflow.cli.common import (
    EXIT_USAGE, CommandError, Parser, add_completion_parser, add_config_arg, add_verbosity,
    add_version, api_text, client_for, current_user, guarded, builtin_subcommand, limit_type,
    priority_type, resolve_job_ids, u32,
)

ALIASES = {"a": "attach", "l": "log", "h": "hold", "r": "release", "u": "update", "s": "show",
           "close": "close-sessions"}


def _id_list_type(text: str) -> list[int]:
    """clap's `Vec<u32>` with `,` as delimiter (gjob update -d)."""
    out = []
    for item in text.split(","):
        out.append(u32(item))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gjob", description="Inspect and manage jobs.")
    add_verbosity(p)
    add_config_arg(p)
    add_version(p, "gjob")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)

    def command(name: str, aliases: list[str], text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, aliases=aliases, help=text, description=text)
        add_verbosity(sp, sub=True)
        add_config_arg(sp, sub=True)
        return sp

    a = command("attach", ["a"], "follow a running job's output live; Ctrl-C is forwarded to "
                                 "the job as SIGINT, a second Ctrl-C within 2 s detaches")
    a.add_argument("--no-forward", action="store_true",
                   help="Ctrl-C only detaches (the job keeps running)")
    a.add_argument("job", metavar="JOB", help="job id, @ (your latest job) or @~N")
    lg = command("log", ["l"], "print a job's output")
    lg.add_argument("job", metavar="JOB", help="job id, @ (your latest job) or @~N")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="keep printing new output until the job ends")
    gjob_more.extend_log(lg)                    # --first, --last, --attempt
    h = command("hold", ["h"], "hold queued jobs")
    h.add_argument("job", metavar="JOB", help="job ids: 3, 1-5, 2,4, @ or @~N")
    r = command("release", ["r"], "release held jobs back to the queue")
    r.add_argument("job", metavar="JOB", help="job ids: 3, 1-5, 2,4, @ or @~N")
    gjob_more.extend_release(r)                 # --at

    u = command("update", ["u"], "change queued or held jobs")
    u.add_argument("job", metavar="JOB", help="job ids: 3, 1-5, 2,4, @ or @~N")
    u.add_argument("-c", "--command", metavar="CMD", help="new command")
    u.add_argument("-s", "--script", metavar="PATH", help="new script")
    u.add_argument("-g", "--gpus", type=u32, metavar="N", help="GPUs to request")
    g = u.add_mutually_exclusive_group()
    g.add_argument("-e", "--conda-env", metavar="ENV", help="conda environment")
    g.add_argument("--clear-conda-env", action="store_true", help="no conda environment")
    u.add_argument("-p", "--priority", type=priority_type, metavar="PRIORITY", help="0-255")
    g = u.add_mutually_exclusive_group()
    g.add_argument("-t", "--time-limit", metavar="TIME",
                   help="time limit: HH:MM:SS, MM:SS or minutes")
    g.add_argument("--clear-time-limit", action="store_true", help="no time limit")
    g = u.add_mutually_exclusive_group()
    g.add_argument("-m", "--memory-limit", metavar="MEM", help="memory limit: 512, 1024M, 2G")
    g.add_argument("--clear-memory-limit", action="store_true", help="no memory limit")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--gpu-memory", "--max-gpu-mem", metavar="MEM",
                   help="per-GPU memory limit")
    g.add_argument("--clear-gpu-memory-limit", action="store_true",
                   help="no per-GPU memory limit")
    g = u.add_mutually_exclusive_group()
    g.add_argument("-d", "--depends-on", type=_id_list_type, metavar="IDS",
                   help="comma list of job ids (all must finish)")
    g.add_argument("--depends-on-all", type=_id_list_type, metavar="IDS",
                   help="comma list of job ids: all must finish")
    g.add_argument("--depends-on-any", type=_id_list_type, metavar="IDS",
                   help="comma list of job ids: one must finish")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--auto-cancel-on-dep-failure", action="store_true",
                   help="cancel the job when a dependency fails")
    g.add_argument("--no-auto-cancel-on-dep-failure", action="store_true",
                   help="keep the job queued when a dependency fails")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--max-concurrent", type=limit_type(2**64 - 1, "usize"), metavar="N",
                   help="at most N jobs of the job's group run at once")
    g.add_argument("--clear-max-concurrent", action="store_true",
                   help="no limit for the job's group")
    u.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="parameter (repeatable; replaces all parameters)")

    s = command("show", ["s"], "show the details of jobs")
    s.add_argument("job", metavar="JOB", help="job ids: 3, 1-5, 2,4, @ or @~N")

    rd = command("redo", [], "submit a finished job again")
    rd.add_argument("job", metavar="JOB", help="job id, @ (your latest job) or @~N")
    rd.add_argument("-g", "--gpus", type=u32, metavar="N", help="GPUs to request")
    rd.add_argument("-p", "--priority", type=priority_type, metavar="PRIORITY", help="0-255")
    g = rd.add_mutually_exclusive_group()
    g.add_argument("-d", "--depends-on", metavar="ID", help="depend on this job (id, @, @~N)")
    g.add_argument("--clear-deps", action="store_true", help="drop the dependencies")
    rd.add_argument("-t", "--time", metavar="TIME", help="time limit: HH:MM:SS, MM:SS or minutes")
    rd.add_argument("-m", "--memory", metavar="MEM", help="memory limit: 512, 1024M, 2G")
    rd.add_argument("--gpu-memory", "--max-gpu-mem", metavar="MEM", help="per-GPU memory limit")
    rd.add_argument("-e", "--conda-env", metavar="ENV", help="conda environment")
    rd.add_argument("--cascade", action="store_true",
                    help="also redo the jobs that were cancelled because this one failed")

    c = command("close-sessions", ["close"],
                "accepted for 0.4.13 compatibility and refused: jobs run without tmux, so "
                "there are no sessions to close (read output with `gjob log`)")
    c.add_argument("-j", "--jobs", metavar="IDS", help="job ids")
    c.add_argument("-s", "--state", metavar="STATE", help="comma list of states")
    c.add_argument("-p", "--pattern", metavar="PATTERN", help="session name substring")
    c.add_argument("-a", "--all", action="store_true", help="all sessions")

    gjob_more.add_commands(command)             # wait, suspend, resume
    add_completion_parser(sub)
    return p


# --- helpers ---------------------------------------------------------------------------------

def _runtime_parse(fn_name: str, text: str, flag: str):
    from gflow import parsing
    from gflow.cli.common import parse_value
    return parse_value(getattr(parsing, fn_name), text, flag)


def resolve_ref(client, text: str) -> int:
    """A single job reference: an id, `@` or `@~N` (resolved by the daemon)."""
    from gflow.errors import ParseError
    from gflow.parsing import parse_job_ref
    try:
        ref = parse_job_ref(text)
    except ParseError as exc:
        raise CommandError(f"Error: {exc}") from None
    if isinstance(ref, int):
        return ref
    from gflow.client import ApiError
    try:
        return client.resolve(current_user(), ref)
    except ApiError as exc:
        raise CommandError(f"Error: Failed to resolve job ID '{text.strip()}': {exc}") from None


def id_list(text: str) -> list[int]:
    return _runtime_parse("parse_id_list", text, "JOB")


def get_job(client, job_id: int) -> dict:
    job = client.get_job(job_id)
    if job is None:
        raise CommandError(f"Error: Job {job_id} not found")
    return job


# --- log and attach --------------------------------------------------------------------------

def log_path(client, job_id: int) -> str:
    status, path = client.request("GET", f"/jobs/{job_id}/log")
    if status == 200 and isinstance(path, str):
        return path
    if status == 404 and client.get_job(job_id) is None:
        raise CommandError(f"Error: Job {job_id} not found")
    if status == 404:
        raise CommandError(f"Log for job {job_id} is not available.")
    raise CommandError(f"Error: {api_text(status, path)}")


def copy_log(client, job_id: int, path: str, follow: bool,
             position: Optional[list] = None) -> int:
    """Copy the log to stdout (following a running job); `position[0]` is the byte offset
    to start from and is kept current, so an interrupted copy can resume."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CommandError(f"Error: Failed to open log file '{path}' for job {job_id}: "
                           f"{exc.strerror}") from None
    out = sys.stdout.buffer
    if position:
        f.seek(position[0])
    with f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                if position is not None:
                    position[0] += len(chunk)
                continue
            out.flush()
            if not follow:
                return 0
            job = client.get_job(job_id)
            if job is None or job.get("state") not in render.ACTIVE:
                out.write(f.read())
                out.flush()
                return 0
            time.sleep(0.25)


def cmd_log(client, args) -> int:
    job_id = resolve_ref(client, args.job)
    if args.follow:
        # a queued job has no log yet: wait for it to start
        told = False
        while True:
            job = get_job(client, job_id)
            status, path = client.request("GET", f"/jobs/{job_id}/log")
            if status == 200 and isinstance(path, str):
                break
            if job.get("state") not in ("Queued", "Hold"):
                return copy_log(client, job_id, log_path(client, job_id), True)
            if not told:
                print(f"Job {job_id} is {job.get('state')}; waiting for it to start "
                      "(Ctrl-C to stop).", file=sys.stderr)
                told = True
            time.sleep(0.5)
        return copy_log(client, job_id, path, True)
    return copy_log(client, job_id, log_path(client, job_id), False)


FORWARD_WINDOW_SECS = 2.0


def cmd_attach(client, args) -> int:
    job_id = resolve_ref(client, args.job)
    job = get_job(client, job_id)
    state = job.get("state")
    if state != "Running":
        hint = (f"use `gjob log -f {job_id}` to wait for its output" if state in ("Queued", "Hold")
                else f"use `gjob log {job_id}` to see its output")
        raise CommandError(f"Error: Job {job_id} is not running (state {state}); {hint}")
    name = render.safe(job.get("run_name") or f"gflow-job-{job_id}")
    forward = not getattr(args, "no_forward", False)
    path = log_path(client, job_id)
    last_interrupt = 0.0
    position = [0]
    banner = (f"Attaching to job {job_id} ({name}): following its output; Ctrl-C "
              + ("sends SIGINT to the job, twice detaches." if forward else "detaches.")
              + " The job keeps running after you detach.")
    while True:
        try:
            if banner:   # inside the try: a Ctrl-C right after it is handled below
                print(banner, file=sys.stderr, flush=True)
                banner = ""
            return copy_log(client, job_id, path, True, position)
        except KeyboardInterrupt:
            sys.stdout.flush()
            now = time.monotonic()
            if not forward or now - last_interrupt < FORWARD_WINDOW_SECS:
                print(f"\nDetached from job {job_id}; it keeps running.", file=sys.stderr)
                return 0
            last_interrupt = now
            status, body = client.request("POST", f"/jobs/{job_id}/signal",
                                          {"signal": "SIGINT"})
            if status == 200:
                print(f"\n[sent SIGINT to job {job_id}; Ctrl-C again to detach]",
                      file=sys.stderr)
            else:
                from gflow.client import error_text
                print(f"\n[could not signal job {job_id}: {error_text(status, body)}]",
                      file=sys.stderr)
                return 0


# --- hold / release --------------------------------------------------------------------------

def cmd_hold_release(client, args, hold: bool) -> int:
    rc = 0
    want, action = ("Queued", "hold") if hold else ("Hold", "release")
    for job_id in resolve_job_ids(client, args.job):
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
            print(f"Error: {api_text(status, body)}", file=sys.stderr)
            rc = 1
            continue
        print(f"Job {job_id} put on hold." if hold else f"Job {job_id} released back to queue.")
    return rc


# --- update ----------------------------------------------------------------------------------

def update_body(args) -> dict:
    import os
    body: dict = {}
    if args.command is not None:
        body["command"] = args.command
    if args.script is not None:
        path = os.path.abspath(args.script)
        if not os.path.isfile(path):
            raise CommandError(f"Error: invalid value '{args.script}' for --script: "
                               "no such file")
        body["script"] = path
    if args.gpus is not None:
        body["gpus"] = args.gpus
    if args.conda_env is not None:
        body["conda_env"] = args.conda_env
    elif args.clear_conda_env:
        body["conda_env"] = None
    if args.priority is not None:
        body["priority"] = args.priority
    if args.param is not None:
        params = {}
        for item in args.param:
            if "=" not in item:
                raise CommandError(f"Invalid parameter format '{item}'. Expected KEY=VALUE")
            key, value = item.split("=", 1)
            params[key] = value
        body["parameters"] = params
    if args.time_limit is not None:
        secs = _runtime_parse("parse_job_time_limit", args.time_limit, "--time-limit")
        body["time_limit"] = {"secs": secs, "nanos": 0}
    elif args.clear_time_limit:
        body["time_limit"] = None
    if args.memory_limit is not None:
        body["memory_limit_mb"] = _runtime_parse("parse_job_memory_mb", args.memory_limit,
                                                 "--memory-limit")
    elif args.clear_memory_limit:
        body["memory_limit_mb"] = None
    if args.gpu_memory is not None:
        body["gpu_memory_limit_mb"] = _runtime_parse("parse_job_memory_mb", args.gpu_memory,
                                                     "--gpu-memory")
    elif args.clear_gpu_memory_limit:
        body["gpu_memory_limit_mb"] = None
    for ids, mode in ((args.depends_on_all, "All"), (args.depends_on_any, "Any"),
                      (args.depends_on, "All")):
        if ids is not None:
            body["depends_on_ids"] = sorted(set(ids), key=ids.index)
            body["dependency_mode"] = mode
            break
    if args.auto_cancel_on_dep_failure:
        body["auto_cancel_on_dependency_failure"] = True
    elif args.no_auto_cancel_on_dep_failure:
        body["auto_cancel_on_dependency_failure"] = False
    if args.max_concurrent is not None:
        body["max_concurrent"] = args.max_concurrent
    elif args.clear_max_concurrent:
        body["max_concurrent"] = None
    return body


def cmd_update(client, args) -> int:
    body = update_body(args)
    if not body:
        raise CommandError("No updates specified. Use --help to see available options.")
    rc = 0
    for job_id in resolve_job_ids(client, args.job):
        status, reply = client.request("PATCH", f"/jobs/{job_id}", body)
        if status != 200:
            print(f"Error updating job {job_id}: Failed to update job: "
                  f"{api_text(status, reply)}", file=sys.stderr)
            rc = 1
            continue
        print(f"Job {job_id} updated successfully.")
        fields = reply.get("updated_fields") if isinstance(reply, dict) else None
        if fields:
            print("  UpdatedFields=" + ", ".join(fields))
    return rc


# --- redo ------------------------------------------------------------------------------------

def cmd_redo(client, args) -> int:
    job_id = resolve_ref(client, args.job)
    overrides: dict = {}
    if args.gpus is not None:
        overrides["gpus"] = args.gpus
    if args.priority is not None:
        overrides["priority"] = args.priority
    if args.time is not None:
        overrides["time_limit"] = {"secs": _runtime_parse("parse_job_time_limit", args.time,
                                                          "--time"), "nanos": 0}
    if args.memory is not None:
        overrides["memory_limit_mb"] = _runtime_parse("parse_job_memory_mb", args.memory, "--memory")
    if args.gpu_memory is not None:
        overrides["gpu_memory_limit_mb"] = _runtime_parse("parse_job_memory_mb", args.gpu_memory,
                                                          "--gpu-memory")
    if args.conda_env is not None:
        overrides["conda_env"] = args.conda_env
    if args.clear_deps:
        overrides["clear_deps"] = True
    elif args.depends_on is not None:
        overrides["depends_on"] = resolve_ref(client, args.depends_on)
    job = client.get_job(job_id)
    if job is None:
        raise CommandError(f"Job {job_id} not found.")
    state = job.get("state")
    if state == "Running":
        raise CommandError(f"Job {job_id} is still running. Wait for it to finish or cancel "
                           "it first.")
    if state in ("Queued", "Hold"):
        raise CommandError(f"Job {job_id} is still in {state} state. Use `gjob update` to "
                           "modify its parameters.")
    status, reply = client.request("POST", f"/jobs/{job_id}/redo",
                                   {"overrides": overrides, "cascade": bool(args.cascade),
                                    "submitted_by": current_user()})
    if status not in (200, 201) or not isinstance(reply, dict):
        raise CommandError(f"Error: Failed to resubmit job {job_id}: {api_text(status, reply)}")
    lines = [f"Resubmitting job {job_id} with parameters:"]
    if job.get("script"):
        lines.append(f"  Script={job['script']}")
    if job.get("command"):
        lines.append(f"  Command={job['command']}")
    lines.append(f"  GPUs={overrides.get('gpus', job.get('gpus', 0))}")
    if job.get("gpu_sharing_mode") == "Shared":
        lines.append("  GPUSharing=shared")
    lines.append(f"  Priority={overrides.get('priority', job.get('priority', 10))}")
    conda = overrides.get("conda_env", job.get("conda_env"))
    if conda:
        lines.append(f"  CondaEnv={conda}")
    limit = (overrides["time_limit"]["secs"] if "time_limit" in overrides
             else render.wire_duration(job.get("time_limit")))
    if limit is not None:
        lines.append(f"  TimeLimit={render.hms(limit)}")
    mem = overrides.get("memory_limit_mb", job.get("memory_limit_mb"))
    if mem is not None:
        lines.append(f"  MemoryLimit={render.format_memory(mem)}")
    gmem = overrides.get("gpu_memory_limit_mb", job.get("gpu_memory_limit_mb"))
    if gmem is not None:
        lines.append(f"  GPUMemoryLimit={render.format_memory(gmem)}")
    if args.clear_deps:
        lines.append("  Dependencies=(cleared)")
    elif "depends_on" in overrides:
        lines.append(f"  DependsOn={overrides['depends_on']}")
    else:
        deps = list(job.get("depends_on_ids") or [])
        if job.get("depends_on") is not None and job["depends_on"] not in deps:
            deps.append(job["depends_on"])
        if deps:
            lines.append("  DependsOn=" + ",".join(map(str, deps)))
    params = job.get("parameters") or {}
    if params:
        lines.append("  Parameters:")
        lines.extend(f"  {k}={params[k]}" for k in sorted(params))
    lines += ["", f"Submitted batch job {reply['id']} ({reply.get('run_name')})"]
    if args.cascade:
        cascaded = reply.get("cascaded") or []
        if cascaded:
            lines += ["", f"Cascading to {len(cascaded)} dependent job(s)..."]
            lines += [f"  Job {c['from']} → Job {c['id']} ({c.get('run_name')})"
                      for c in cascaded]
            lines += ["", "Cascade complete."]
        else:
            lines += ["", "No dependent jobs to cascade."]
    print("\n".join(map(render.safe, lines)))
    return 0


# --- close-sessions --------------------------------------------------------------------------

def cmd_close_sessions(client, args) -> int:
    if args.state is not None:
        for item in args.state.split(","):
            try:
                render.parse_state(item)
            except ValueError:
                raise CommandError(f"gjob close-sessions: error: invalid value '{item}' for "
                                   f"--state (use {render.STATE_HELP})", EXIT_USAGE) from None
    if args.jobs is not None:
        id_list(args.jobs)
    if args.jobs is None and args.state is None and args.pattern is None and not args.all:
        raise CommandError("gjob close-sessions: no filters specified: give -j, -s, -p or -a "
                           "(see gjob close-sessions --help)", EXIT_USAGE)
    # Refused, not a silent success: a script that closes sessions to reach the output
    # learns where the output is (docs/migrating.md).
    raise CommandError("gjob close-sessions: jobs run without tmux here, so there are no "
                       "sessions to close; read a job's output with `gjob log ID` (or follow "
                       "it with `gjob log -f ID`)")


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd = ALIASES.get(args.cmd, args.cmd)
    if cmd is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    done = builtin_subcommand(parser, args, cmd)
    if done is not None:
        return done
    if cmd == "close-sessions":
        return cmd_close_sessions(None, args)
    client = client_for(args)
    handler = {"show": cmd_show, "log": cmd_log, "attach": cmd_attach, "update": cmd_update,
               "redo": cmd_redo, "wait": gjob_more.cmd_wait}.get(cmd)
    if cmd == "log" and gjob_more.wants_log_more(args):
        handler = gjob_more.cmd_log
    elif cmd in ("suspend", "resume"):
        return gjob_more.cmd_suspend_resume(client, args, cmd)
    elif cmd == "release" and args.at is not None:
        return gjob_more.cmd_release_at(client, args)
    if handler is not None:
        return handler(client, args)
    if cmd in ("hold", "release"):
        return cmd_hold_release(client, args, hold=cmd == "hold")
    raise CommandError(f"unknown command {cmd}", code=EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
