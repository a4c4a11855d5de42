"""`gbatch`: submit a command, a script or stdin as one job, an array, or a parameter sweep."""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
import uuid
from typing import Optional

from gflow.cli.common import (
    EXIT_USAGE, CommandError, add_config_arg, current_user, guarded, load_config,
)
from gflow.client import ApiError, Client
from gflow.errors import ParseError

DIRECTIVE = "# GFLOW"
SUBCOMMANDS = ("new", "completion", "help")


def _u32(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("invalid digit found in string") from None
    if not 0 <= value <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..=4294967295")
    return value


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("invalid digit found in string") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..=255")
    return value


def _parsed(fn):
    def convert(text: str):
        try:
            return fn(text)
        except ParseError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = fn.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    from gflow.parsing import parse_memory_mb, parse_time_limit
    p = argparse.ArgumentParser(
        prog="gbatch", description="Submit a job (a command, a script, or a script on stdin).",
        epilog="Subcommands: `gbatch new NAME` writes a job script template.")
    p.add_argument("-c", "--conda-env", help="conda environment to activate")
    p.add_argument("-g", "--gpus", "--gres", type=_u32, metavar="NUMS", help="GPUs to request")
    p.add_argument("--shared", action="store_true", help="share GPUs (needs --gpu-memory)")
    p.add_argument("-p", "--priority", "--nice", type=_priority, help="0-255, higher first")
    deps = p.add_mutually_exclusive_group()
    deps.add_argument("-d", "--depends-on", "--dependency", metavar="ID",
                      help="job id, or @ / @~N for your latest jobs")
    deps.add_argument("--depends-on-all", metavar="IDS", help="comma list: all must finish")
    deps.add_argument("--depends-on-any", metavar="IDS", help="comma list: one must finish")
    p.add_argument("--no-auto-cancel", action="store_true",
                   help="stay queued when a dependency fails")
    p.add_argument("--array", metavar="A-B", help="one job per task id A..B")
    p.add_argument("-t", "--time", "--time-limit", "--timelimit", type=_parsed(parse_time_limit),
                   metavar="TIME", help="time limit: HH:MM:SS, MM:SS or minutes")
    p.add_argument("-m", "--memory", "--max-mem", "--max-memory", type=_parsed(parse_memory_mb),
                   metavar="MEM", help="host memory limit: 512, 1024M, 2G")
    p.add_argument("--gpu-memory", "--max-gpu-mem", "--max-gpu-memory",
                   type=_parsed(parse_memory_mb), metavar="MEM", help="per-GPU memory limit")
    p.add_argument("-n", "--name", "--job-name", "-J", metavar="NAME", help="job name")
    p.add_argument("--auto-close", action="store_true",
                   help="accepted for 0.4.13 compatibility (no tmux session to close)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=SPEC",
                   help="parameter sweep: name=a,b,c or name=start:stop[:step]")
    p.add_argument("--param-file", metavar="CSV", help="one job per CSV row")
    p.add_argument("--name-template", metavar="TEMPLATE", help="job names from {param}s")
    p.add_argument("--max-concurrent", type=_u32, metavar="N",
                   help="at most N jobs of this submission run at once")
    p.add_argument("-P", "--project", help="project code")
    p.add_argument("--dry-run", action="store_true", help="show what would be submitted")
    p.add_argument("--export", choices=["ALL", "NONE"], default="ALL",
                   help="ALL (default): the job gets your environment; NONE: the daemon's")
    add_config_arg(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="SCRIPT_OR_COMMAND",
                   help="a script file, or a command and its arguments")
    return p


# --- building jobs ------------------------------------------------------------------------

def read_directives(path: str) -> list[str]:
    tokens: list[str] = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(DIRECTIVE):
                    tokens.extend(line[len(DIRECTIVE):].strip().split())
    except OSError:
        pass
    return tokens


def apply_directives(args, tokens: list[str]) -> None:
    """Script directives fill what the command line left unset (`--shared` is OR-ed)."""
    if not tokens:
        return
    sub = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    full = build_parser()
    for action in full._actions:
        if action.dest in ("gpus", "shared", "priority", "conda_env", "time", "memory",
                           "gpu_memory", "project"):
            sub._add_action(action)
    try:
        parsed, _unknown = sub.parse_known_args(tokens)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise CommandError(f"Invalid # GFLOW directive in script: {exc}") from None
    for dest in ("gpus", "priority", "conda_env", "time", "memory", "gpu_memory", "project"):
        if getattr(args, dest) is None and getattr(parsed, dest, None) is not None:
            setattr(args, dest, getattr(parsed, dest))
    args.shared = args.shared or bool(getattr(parsed, "shared", False))


def resolve_one(client: Optional[Client], text: str, user: str) -> int:
    text = text.strip()
    if not text:
        raise CommandError("Dependency value cannot be empty")
    if text.startswith("@"):
        if client is None:
            raise CommandError("internal: no client")
        try:
            return client.resolve(user, text)
        except ApiError as exc:
            raise CommandError(f"Failed to resolve dependency '{text}': {exc}") from None
    try:
        value = int(text)
        if not 0 <= value <= 2**32 - 1:
            raise ValueError
        return value
    except ValueError:
        raise CommandError(f"Invalid dependency value: {text}") from None


def resolve_list(client, text: str, user: str) -> list[int]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise CommandError("Dependency list cannot be empty")
    out = []
    for item in items:
        if item.startswith("@"):
            out.append(resolve_one(client, item, user))
        else:
            try:
                out.append(int(item))
            except ValueError:
                raise CommandError(f"Invalid dependency ID: {item}") from None
    return out


def param_combinations(args) -> list[dict]:
    from gflow.parsing import parse_param
    rows: list[dict] = [{}]
    if args.param_file:
        try:
            with open(args.param_file, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None:
                    raise CommandError("CSV file must have a header row")
                header = [h.strip() for h in header]
                rows = []
                for n, record in enumerate(reader, start=2):
                    if not record:
                        continue
                    if len(record) != len(header):
                        raise CommandError(f"CSV error: line {n} has {len(record)} fields, "
                                           f"the header has {len(header)}")
                    rows.append({h: v.strip() for h, v in zip(header, record)})
                if not rows:
                    raise CommandError("CSV file contains no data rows")
        except OSError as exc:
            raise CommandError(f"Failed to read parameter file: {exc.strerror}: "
                               f"{args.param_file}") from None
    cli = [parse_param(spec) for spec in args.param]
    names = [name for name, _ in cli]
    combos = [dict(zip(names, values)) for values in itertools.product(*[v for _, v in cli])]
    return [{**row, **combo} for row in rows for combo in combos]


def render_name(template: str, params: dict) -> str:
    out = template
    for key, value in params.items():
        out = out.replace("{" + key + "}", value.replace(" ", "_").replace("/", "_"))
    return out


def base_job(args, user: str) -> dict:
    return {
        "id": 0, "script": None, "command": None, "gpus": args.gpus or 0,
        "conda_env": args.conda_env, "run_dir": os.getcwd(),
        "priority": 10 if args.priority is None else args.priority,
        "depends_on": None, "depends_on_ids": [], "dependency_mode": None,
        "auto_cancel_on_dependency_failure": not args.no_auto_cancel, "task_id": None,
        "gpu_sharing_mode": "Shared" if args.shared else "Exclusive",
        "gpu_memory_limit_mb": args.gpu_memory,
        "time_limit": None if args.time is None else {"secs": args.time, "nanos": 0},
        "memory_limit_mb": args.memory, "submitted_by": user, "redone_from": None,
        "auto_close_tmux": bool(args.auto_close), "parameters": {}, "group_id": None,
        "max_concurrent": None, "run_name": args.name, "project": args.project,
        "state": "Queued", "gpu_ids": None, "submitted_at": None, "started_at": None,
        "finished_at": None, "reason": None,
    }


def write_stdin_script(content: str) -> str:
    tmpdir = os.environ.get("TMPDIR") or "/tmp"
    path = os.path.join(tmpdir, f"gflow_stdin_{int(time.time() * 1e6)}.sh")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return path


def split_target(args) -> tuple[Optional[str], Optional[str]]:
    """(script path, command) from the positionals and stdin, as 0.4.13 decides."""
    from gflow.parsing import shell_join
    words = list(args.command)
    if words and words[0] == "--":
        words = words[1:]
    if words == ["-"] or (not words and not sys.stdin.isatty() and not args.param
                          and not args.param_file):
        content = sys.stdin.read()
        if not content.strip():
            raise CommandError("No content provided via stdin")
        return write_stdin_script(content), None
    if not words:
        if args.param or args.param_file:
            return None, ""
        raise CommandError(
            "The following required arguments were not provided:\n  <SCRIPT_OR_COMMAND>...\n\n"
            "Usage: gbatch <SCRIPT_OR_COMMAND>...\n       gbatch < script.sh\n       gbatch -\n\n"
            "For more information, try 'gbatch --help'", code=EXIT_USAGE)
    first = words[0]
    if len(words) == 1 and os.path.isfile(first):
        return os.path.join(os.getcwd(), first), None
    if ("/" in first or first.endswith(".sh")) and not os.path.exists(first) \
            and not _on_path(first):
        raise CommandError(f"Script not found: {first} (no such file; to run a command, "
                           "check its spelling)")
    return None, shell_join(words)


def _on_path(word: str) -> bool:
    if "/" in word:
        return os.access(word, os.X_OK)
    return any(os.access(os.path.join(d, word), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep) if d)


def describe(job: dict, params: Optional[dict] = None) -> str:
    shown = job["script"] if job["script"] else (job["command"] or "")
    if params:
        for k, v in params.items():
            shown = shown.replace("{" + k + "}", v)
    extra = f"GPUs: {job['gpus']}"
    if job.get("task_id") is not None:
        extra += f", task_id: {job['task_id']}"
    return f"{shown} ({extra})"


def new_script(name: str) -> int:
    from gflow.cli.templates import JOB_SCRIPT_TEMPLATE
    path = name if name.endswith(".sh") else name + ".sh"
    if os.path.exists(path):
        raise CommandError(f"File '{path}' already exists.")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    with os.fdopen(fd, "w") as f:
        f.write(JOB_SCRIPT_TEMPLATE)
    return 0


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command and args.command[0] in SUBCOMMANDS:
        sub = args.command[0]
        rest = args.command[1:]
        if sub == "new":
            if len(rest) != 1:
                parser.error("usage: gbatch new NAME")
            return new_script(rest[0])
        if sub == "completion":
            from gflow.cli.completion import print_completion
            return print_completion(parser, rest)
        parser.print_help()
        return 0
    if (args.param or args.param_file) and args.array:
        which = "--param" if args.param else "--param-file"
        raise CommandError(f"Cannot use both {which} and --array together")
    script, command = split_target(args)
    if script:
        apply_directives(args, read_directives(script))
    elif args.conda_env is None and os.environ.get("CONDA_DEFAULT_ENV"):
        args.conda_env = os.environ["CONDA_DEFAULT_ENV"]
    if args.shared and args.gpu_memory is None:
        raise CommandError("Shared jobs must set a GPU memory limit. Use --gpu-memory "
                           "(alias: --max-gpu-mem) with --shared.")
    if args.project is not None:
        args.project = args.project.strip() or None
    config = load_config(args.config)
    user = current_user()
    client = Client.from_config(config)
    job = base_job(args, user)
    job["script"], job["command"] = script, command
    if args.export == "ALL":
        job["env"] = dict(os.environ)
    if not args.dry_run:
        check_project(config, job["project"])

    def with_dependencies(j: dict) -> dict:
        if args.depends_on is not None:
            ids, mode = [resolve_one(client, args.depends_on, user)], "All"
        elif args.depends_on_all is not None:
            ids, mode = resolve_list(client, args.depends_on_all, user), "All"
        elif args.depends_on_any is not None:
            ids, mode = resolve_list(client, args.depends_on_any, user), "Any"
        else:
            return j
        j["depends_on_ids"] = ids
        j["dependency_mode"] = mode
        j["depends_on"] = ids[0] if len(ids) == 1 else None
        return j

    jobs: list[dict] = []
    shown_params: list[Optional[dict]] = []
    if args.array:
        from gflow.parsing import parse_array
        start, end = parse_array(args.array)
        for task in range(start, end + 1):
            j = with_dependencies(dict(job, task_id=task))
            jobs.append(j)
            shown_params.append(None)
        kind = "array job(s)"
    elif args.param or args.param_file:
        for params in param_combinations(args):
            j = with_dependencies(dict(job, parameters=params))
            if args.name_template:
                j["run_name"] = render_name(args.name_template, params)
            jobs.append(j)
            shown_params.append(params)
        kind = "batch job(s)"
    else:
        jobs.append(with_dependencies(job))
        shown_params.append(None)
        kind = "batch job"
    if args.dry_run:
        print(f"Would submit {len(jobs)} {kind}:")
        for n, (j, params) in enumerate(zip(jobs, shown_params), start=1):
            print(f"  [{n}] {describe(j, params)}")
        return 0
    if len(jobs) == 1 and not (args.array or args.param or args.param_file):
        try:
            reply = client.submit(jobs[0])
        except ApiError as exc:
            raise CommandError(f"Failed to add job: {exc}") from None
        print(f"Submitted batch job {reply['id']} ({reply['run_name']})")
        return 0
    if args.max_concurrent is not None:
        group = str(uuid.uuid4())
        for j in jobs:
            j["group_id"] = group
            j["max_concurrent"] = args.max_concurrent
    try:
        replies = client.submit_batch(jobs)
    except ApiError as exc:
        raise CommandError(f"Failed to add batch jobs: {exc}") from None
    if args.max_concurrent is not None and replies:
        print(f"Submitted {len(replies)} batch jobs with group_id: {jobs[0]['group_id']}")
        print(f"  (You can update the limit with: gctl set-limit {replies[0]['id']} <N>)")
    for reply in replies:
        print(f"Submitted batch job {reply['id']} ({reply['run_name']})")
    return 0


def check_project(config, project: Optional[str]) -> None:
    policy = config.projects
    if project is None:
        if policy.require_project:
            raise CommandError("Project is required by configuration. Provide --project (CLI) "
                               "or a non-empty `project` field.")
        return
    if len(project.encode()) > 64:
        raise CommandError(f"Project name too long (max 64 characters): '{project}'")
    if policy.known_projects and project not in policy.known_projects:
        raise CommandError(f"Unknown project '{project}'. Known projects: "
                           + ", ".join(policy.known_projects))


if __name__ == "__main__":
    sys.exit(main())
