"""`gbatch`: submit a command, a script or stdin as one job, an array, or a parameter sweep.

Deliberate differences from 0.4.13 (spec/cli.md §15): an unknown option before the command
is a usage error (0.4.13 swallowed `--foo echo` as the command, which then hung); a first
word that contains `/` or ends in `.sh` but names no file and no program is refused
(`gbatch nvidia-smi` stays a command); a single argument with spaces (`gbatch "echo a &&
echo b"`) is run as the command line it is (0.4.13 quoted it as one word, so the job failed
with "command not found"); `# GFLOW --depends-on` in a script is honoured (the
`gbatch new` template advertises it); other ignored or unknown directives are reported as a
warning instead of silently swallowing the directives after them; `--auto-close` is
accepted but there is no tmux session to close; the job gets the submitter's environment
unless `--export=NONE` (DESIGN.md §2b); a script read from stdin is saved in the private
`<data dir>/stdin/` (0.4.13: a predictable name in `$TMPDIR`, mode 0755); more than 10000
array tasks or sweep jobs, a command over 1 MiB and an environment over 1 MiB are refused
before anything is built. Input that can never work is refused (`--max-concurrent 0`,
`-t 0`, `-t 25:99:99`, `-m -5G`, unknown `{placeholders}` in a sweep, `--shared` without
`--gpus`, a script with DOS line breaks) and what may not work is warned about (more GPUs
than the daemon has, `--conda-env` without conda): see submit_checks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli.common import (
    EXIT_RUNTIME, U32_MAX, CommandError, Once, Parser, add_config_arg, add_version,
    current_user, _fast_address, guarded, limit_type, load_config, parse_value, priority_type,
    special_command, u32,
)
from gflow.cli import gbatch_more
from gflow.client import ApiError, Client

DIRECTIVE = "# GFLOW"
SUBCOMMANDS = ("new", "completion", "help")
# Limits checked before anything is built: `--array 1-10000000` once grew the client to
# 22 GB. The daemon takes at most 1000 jobs per batch (spec/api.md) and caps sizes too;
# these keep a typo from eating the submitter's memory first.
MAX_JOBS_PER_SUBMISSION = 10_000      # array tasks, or --param/--param-file combinations
MAX_COMMAND_BYTES = 1 << 20           # 1 MiB
MAX_ENV_BYTES = 1 << 20               # the captured environment (--export=ALL), 1 MiB
STDIN_DIR = "stdin"                   # scripts read from stdin: <data dir>/stdin, mode 0700
DIRECTIVE_DESTS = ("gpus", "shared", "priority", "conda_env", "time", "memory", "gpu_memory",
                   "project", "depends_on", "begin")


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--conda-env", metavar="CONDA_ENV", help="conda environment to activate")
    p.add_argument("-g", "--gpus", "--gres", type=u32, metavar="NUMS",
                   help="number of GPUs to request (default 0)")
    p.add_argument("--shared", action="store_true",
                   help="share GPUs with other shared jobs (needs --gpus and --gpu-memory)")
    p.add_argument("-p", "--priority", "--nice", type=priority_type, metavar="PRIORITY",
                   help="0-255, higher runs first (default 10)")
    deps = p.add_mutually_exclusive_group()
    deps.add_argument("-d", "--depends-on", "--dependency", metavar="DEPENDS_ON",
                      help="job id, or @ / @~N for your latest jobs")
    deps.add_argument("--depends-on-all", metavar="DEPENDS_ON_ALL",
                      help="comma list of ids (or @, @~N): all must finish")
    deps.add_argument("--depends-on-any", metavar="DEPENDS_ON_ANY",
                      help="comma list of ids (or @, @~N): one must finish")
    p.add_argument("--no-auto-cancel", action="store_true",
                   help="stay queued when a dependency fails (default: cancel)")
    p.add_argument("--array", metavar="ARRAY", help="one job per task id: 1-10")
    p.add_argument("-t", "--time", "--time-limit", "--timelimit", metavar="TIME",
                   help="time limit: HH:MM:SS, MM:SS or MM (a single number is minutes)")
    p.add_argument("-m", "--memory", "--max-mem", "--max-memory", metavar="MEMORY",
                   help="host memory limit: 100G, 1024M or 512 (MB)")
    p.add_argument("--gpu-memory", "--max-gpu-mem", "--max-gpu-memory", metavar="GPU_MEMORY",
                   help="per-GPU memory limit: 24G, 4096M or 512 (MB)")
    p.add_argument("-n", "--name", "--job-name", action=Once, metavar="NAME",
                   help="job name (default gflow-job-<id>)")
    p.add_argument("-J", action=Once, dest="name", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--auto-close", action="store_true",
                   help="accepted for 0.4.13 compatibility; jobs run without tmux, so there "
                        "is no session to close")
    p.add_argument("--param", action="append", default=[], metavar="PARAM",
                   help="parameter sweep, repeatable: name=a,b,c or name=start:stop[:step]; "
                        "{name} in the command is replaced")
    p.add_argument("--dry-run", action="store_true", help="show what would be submitted")
    p.add_argument("--max-concurrent", type=limit_type(U32_MAX), metavar="MAX_CONCURRENT",
                   help="at most N jobs of this array/sweep run at once")
    p.add_argument("--param-file", metavar="PARAM_FILE",
                   help="CSV file with a header row: one job per row")
    p.add_argument("--name-template", metavar="NAME_TEMPLATE",
                   help="job names for sweeps, e.g. lr_{lr}")
    p.add_argument("-P", "--project", metavar="PROJECT", help="project code")
    p.add_argument("--export", choices=["ALL", "NONE"], type=str.upper, default="ALL",
                   help="ALL (default): the job gets your environment; NONE: the daemon's")
    gbatch_more.add_options(p)       # --begin, --max-retries


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="gbatch", usage="gbatch [OPTIONS] [SCRIPT_OR_COMMAND]...",
        description="Submit a job: a script, a command, or a script on stdin.",
        epilog="Subcommands:\n"
               "  gbatch new NAME               write a job script template NAME.sh\n"
               "  gbatch completion SHELL       print a bash/zsh/fish completion script\n"
               "Script directives: lines `# GFLOW --gpus=1` set --gpus, --shared, --priority,"
               "\n  --conda-env, --time, --memory, --gpu-memory, --project, --depends-on\n"
               "  (command-line values win).")
    _add_options(p)
    add_config_arg(p)
    add_version(p, "gbatch")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="SCRIPT_OR_COMMAND",
                   help="a script file, or a command and its arguments; - reads a script "
                        "from stdin")
    return p


# --- building jobs ------------------------------------------------------------------------

def read_directives(path: str) -> list[str]:
    """The whitespace-split tokens of every line that starts exactly with `# GFLOW`."""
    tokens: list[str] = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(DIRECTIVE):
                    tokens.extend(line[len(DIRECTIVE):].strip().split())
    except OSError:
        pass
    return tokens


class _DirectiveParser(Parser):
    def error(self, message: str):  # type: ignore[override]
        raise CommandError(f"Error: invalid # GFLOW directive in {self.prog}: {message}")


def apply_directives(args, tokens: list[str], script: str) -> None:
    """Script directives fill what the command line left unset (`--shared` is OR-ed)."""
    if not tokens:
        return
    full = Parser(prog=script, add_help=False)
    _add_options(full)
    sub = _DirectiveParser(prog=script, add_help=False)
    for action in full._actions:
        if action.dest in DIRECTIVE_DESTS:
            sub._add_action(action)
    parsed, extra = sub.parse_known_args(tokens)
    if extra:
        print(f"Warning: ignoring `# GFLOW {' '.join(extra)}` in {script}: only --gpus, "
              "--shared, --priority, --conda-env, --time, --memory, --gpu-memory, --project, "
              "--depends-on and --begin are read from scripts", file=sys.stderr)
    for dest in DIRECTIVE_DESTS:
        if dest == "shared":
            continue
        if getattr(args, dest) is None and getattr(parsed, dest, None) is not None:
            if dest == "depends_on" and (args.depends_on_all or args.depends_on_any):
                continue
            setattr(args, dest, getattr(parsed, dest))
    args.shared = args.shared or bool(getattr(parsed, "shared", False))


def resolve_one(client: Optional[Client], text: str, user: str) -> int:
    value = text.strip()
    if not value:
        raise CommandError("Error: Dependency value cannot be empty")
    if value.startswith("@"):
        try:
            return client.resolve(user, value)
        except ApiError as exc:
            raise CommandError(f"Error: Failed to resolve dependency '{value}': {exc}") from None
    try:
        number = int(value)
        if not 0 <= number <= 2**32 - 1 or not value.isdigit():
            raise ValueError
        return number
    except ValueError:
        raise CommandError(f"Error: Invalid dependency value: {value}") from None


def resolve_list(client, text: str, user: str, flag: str) -> list[int]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise CommandError(f"Error: invalid value '{text}' for {flag}: "
                           "Dependency list cannot be empty")
    out = []
    for item in items:
        if item.startswith("@"):
            out.append(resolve_one(client, item, user))
        elif item.isdigit() and int(item) <= 2**32 - 1:
            out.append(int(item))
        else:
            raise CommandError(f"Error: Invalid dependency ID: {item}")
    return out


def param_combinations(args) -> list[dict]:
    """Rows of --param-file (outer loop) × the cartesian product of the --params."""
    import itertools
    from gflow.parsing import parse_param
    rows: list[dict] = [{}]
    if args.param_file:
        import csv
        try:
            with open(args.param_file, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None:
                    raise CommandError("Error: CSV file must have a header row: "
                                       f"{args.param_file}")
                header = [h.strip() for h in header]
                rows = []
                for record in reader:
                    if not record:
                        continue
                    if len(rows) == MAX_JOBS_PER_SUBMISSION:
                        raise CommandError(
                            f"Error: {args.param_file} has more than {MAX_JOBS_PER_SUBMISSION}"
                            f" rows; at most {MAX_JOBS_PER_SUBMISSION} jobs per submission")
                    if len(record) != len(header):
                        raise CommandError(
                            f"Error: CSV error in {args.param_file}, line {reader.line_num}: "
                            f"found a record with {len(record)} fields, but the header has "
                            f"{len(header)}")
                    rows.append({h: v.strip() for h, v in zip(header, record)})
                if not rows:
                    raise CommandError(f"Error: CSV file contains no data rows: "
                                       f"{args.param_file}")
        except OSError as exc:
            raise CommandError(f"Error: Failed to read parameter file '{args.param_file}': "
                               f"{exc.strerror}") from None
        except csv.Error as exc:
            raise CommandError(f"Error: CSV error in {args.param_file}: {exc}") from None
    cli = [parse_value(parse_param, spec, "--param") for spec in args.param]
    count = len(rows)
    for _, values in cli:
        count *= len(values)
    if count > MAX_JOBS_PER_SUBMISSION:  # counted before the product is built
        what = " and ".join(flag for flag, given in (("--param-file", args.param_file),
                                                     ("--param", args.param)) if given)
        raise CommandError(f"Error: {what} give {count} jobs; at most "
                           f"{MAX_JOBS_PER_SUBMISSION} per submission")
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
        "gpu_memory_limit_mb": args.gpu_memory_mb,
        "time_limit": None if args.time_secs is None else {"secs": args.time_secs, "nanos": 0},
        "memory_limit_mb": args.memory_mb, "submitted_by": user, "redone_from": None,
        "auto_close_tmux": bool(args.auto_close), "parameters": {}, "group_id": None,
        "max_concurrent": None, "run_name": args.name, "project": args.project,
        "state": "Queued", "gpu_ids": None, "submitted_at": None, "started_at": None,
        "finished_at": None, "reason": None,
        # Ours: a root daemon runs the job as its submitter, with the submitter's umask.
        "umask": gbatch_more.current_umask(),
    }


def write_stdin_script(content: str) -> str:
    """Save a script read from stdin where only the submitter can reach it.

    0.4.13 wrote $TMPDIR/gflow_stdin_<micros>.sh (mostly /tmp), mode 0755: a predictable
    name in a world-writable directory, so another user could plant a symlink there first,
    swap the script before the job ran, or read it. Here: <data dir>/stdin/ (mode 0700,
    ours), a fresh random name created with O_EXCL|O_NOFOLLOW, mode 0600 (0700 with a `#!`
    line, which the launcher then runs directly; others it runs with bash). The job runs
    as its submitter, who owns the directory, so it can read the script.
    """
    from gflow.paths import Paths
    directory = os.path.join(Paths.from_env().data_dir, STDIN_DIR)
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        os.makedirs(os.path.dirname(directory), 0o700, exist_ok=True)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | flags)
    except OSError as exc:
        raise CommandError(f"Error: cannot use {directory} for the script read from stdin: "
                           f"{exc.strerror}") from None
    try:
        st = os.fstat(dir_fd)
        if st.st_uid != os.geteuid():
            raise CommandError(f"Error: refusing to write the script read from stdin into "
                               f"{directory}: it belongs to uid {st.st_uid}, not to you")
        if st.st_mode & 0o077:
            os.fchmod(dir_fd, 0o700)  # ours, so tightening is safe (a umask, a stray chmod)
        mode = 0o700 if content.startswith("#!") else 0o600
        name = f"gflow_stdin_{int(time.time() * 1e6)}_{os.urandom(4).hex()}.sh"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, mode, dir_fd=dir_fd)
        os.fchmod(fd, mode)  # the umask must not take the owner's own bits away
    except OSError as exc:
        raise CommandError(f"Error: cannot write the script read from stdin into "
                           f"{directory}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return os.path.join(directory, name)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def split_target(args) -> tuple[Optional[str], Optional[str]]:
    """(script path, command) from the positionals and stdin, as 0.4.13 decides."""
    from gflow.parsing import shell_join
    words = list(args.command)
    if words and words[0] == "--":
        words = words[1:]
    sweep = bool(args.param or args.param_file)
    if words == ["-"] or (not words and not sweep and sys.stdin is not None
                          and not _stdin_is_tty()):
        content = sys.stdin.read() if sys.stdin is not None else ""
        if not content.strip():
            raise CommandError("Error: No content provided via stdin")
        if "\r\n" in content:
            from gflow.cli.submit_checks import crlf_message
            raise CommandError(crlf_message("the script read from stdin"))
        return write_stdin_script(content), None
    if not words:
        if sweep:
            return None, ""
        raise CommandError(
            "Error: no script or command given. Usage: gbatch [OPTIONS] <SCRIPT_OR_COMMAND>..."
            " | gbatch < script.sh | gbatch - (see gbatch --help)", code=EXIT_RUNTIME)
    first = words[0]
    if len(words) == 1 and os.path.isfile(first):
        from gflow.cli.submit_checks import check_crlf_file
        check_crlf_file(first, first)
        return os.path.join(os.getcwd(), first), None
    line = len(words) == 1 and any(ch.isspace() for ch in first.strip()) \
        and not os.path.exists(first)
    head = first.split()[0] if line else first
    if ("/" in head or head.endswith(".sh")) and not os.path.exists(head) \
            and not _on_path(head):
        raise CommandError(f"Error: script '{head}' not found: no such file (a command "
                           "must name a program on PATH)")
    if line:
        # `gbatch "echo a && echo b"`: a whole command line in one argument runs as written
        # (0.4.13 quoted it as one word, so bash looked for a program named "echo a && ...")
        return None, first.strip()
    return None, shell_join(words)


def _on_path(word: str) -> bool:
    if "/" in word:
        return os.access(word, os.X_OK)
    return any(os.access(os.path.join(d, word), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep) if d)


def env_bytes(env: dict) -> int:
    """The size of an environment as `env` prints it (NAME=value and a newline each)."""
    return sum(len(f"{k}={v}\n".encode(errors="surrogateescape")) for k, v in env.items())


def describe(job: dict, params: Optional[dict] = None) -> str:
    shown = job["script"] if job["script"] else (job["command"] or "")
    if params:
        for k, v in params.items():
            shown = shown.replace("{" + k + "}", v)
    extra = f"GPUs: {job['gpus']}"
    if job.get("task_id") is not None:
        extra += f", task_id: {job['task_id']}"
    return f"{shown} ({extra}{settings_text(job)})"


def settings_text(job: dict) -> str:
    """What a dry run adds to 0.4.13's line: the settings given (defaults stay unsaid, so a
    plain dry run reads as 0.4.13's did)."""
    from gflow.parsing import format_duration, format_memory
    parts = []
    if job.get("run_name"):
        parts.append(f"name: {job['run_name']}")
    if job.get("time_limit"):
        parts.append(f"time: {format_duration(job['time_limit']['secs'])}")
    if job.get("memory_limit_mb") is not None:
        parts.append(f"memory: {format_memory(job['memory_limit_mb'])}")
    if job.get("gpu_memory_limit_mb") is not None:
        parts.append(f"GPU memory: {format_memory(job['gpu_memory_limit_mb'])}")
    if job.get("gpu_sharing_mode") == "Shared":
        parts.append("shared")
    if job.get("priority", 10) != 10:
        parts.append(f"priority: {job['priority']}")
    if job.get("conda_env"):
        parts.append(f"conda: {job['conda_env']}")
    if job.get("project"):
        parts.append(f"project: {job['project']}")
    return "".join(", " + p for p in parts)


def new_script(name: str) -> int:
    from gflow.cli.templates import JOB_SCRIPT_TEMPLATE
    path = name if name.endswith(".sh") else name + ".sh"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    except FileExistsError:
        raise CommandError(f"File '{path}' already exists.") from None
    except OSError as exc:
        raise CommandError(f"Error: cannot create '{path}': {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(JOB_SCRIPT_TEMPLATE)
    os.chmod(path, 0o755)
    print(f"Created {path}: a job script template; edit it, then submit it with "
          f"`gbatch {path}`.")
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


@gbatch_more.as_command          # the installed command exits without the teardown
@guarded
def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    early = gbatch_more.prefetch_dependency(argv, current_user(), Client)  # see there
    parser = build_parser()
    special = special_command(parser, argv)
    if special is not None:
        return special
    from gflow.cli import submit_checks as checks
    args = parser.parse_args(checks.join_negative_values(parser, argv))
    gbatch_more.refuse_misused(args.command)
    if args.command and args.command[0] in SUBCOMMANDS:
        sub, rest = args.command[0], args.command[1:]
        if sub == "new":
            if len(rest) != 1:
                parser.error("usage: gbatch new NAME")
            return new_script(rest[0])
        special = special_command(parser, args.command)
        if special is not None:
            return special
        parser.error(f"unexpected arguments after '{sub}'")
    if (args.param or args.param_file) and args.array:
        which = "--param" if args.param else "--param-file"
        raise CommandError(f"Error: Cannot use both {which} and --array together")
    script, command = split_target(args)
    size = len(command.encode(errors="surrogateescape")) if command else 0
    if size > MAX_COMMAND_BYTES:
        raise CommandError(f"Error: the command is {size} bytes; at most {MAX_COMMAND_BYTES} "
                           "(1 MiB) per job")
    if script:
        apply_directives(args, read_directives(script), script)
    conda_given = args.conda_env
    if not script and args.conda_env is None and os.environ.get("CONDA_DEFAULT_ENV"):
        args.conda_env = os.environ["CONDA_DEFAULT_ENV"]   # an active conda: it exists
    from gflow.parsing import parse_job_memory_mb, parse_job_time_limit
    args.time_secs = None if args.time is None else parse_value(parse_job_time_limit,
                                                                 args.time, "--time")
    args.memory_mb = None if args.memory is None else parse_value(
        parse_job_memory_mb, args.memory, "--memory")
    args.gpu_memory_mb = None if args.gpu_memory is None else parse_value(
        parse_job_memory_mb, args.gpu_memory, "--gpu-memory")
    if args.shared and args.gpu_memory_mb is None:
        raise CommandError("Shared jobs must set a GPU memory limit. Use --gpu-memory "
                           "(alias: --max-gpu-mem) with --shared.")
    if args.shared and not args.gpus:
        # Refused rather than implying --gpus 1: how many GPUs to share is the user's call.
        raise CommandError("Error: --shared needs --gpus N (the GPUs to share); without it "
                           "the job would run with no GPU at all")
    if args.project is not None:
        args.project = args.project.strip() or None
    # Without a config file the project policy is the default one (none), so the
    # config module need not be loaded (~12 ms); the daemon checks the policy anyway.
    address = None if args.config else _fast_address()
    if address is not None:
        config, client = None, early or Client.from_env(*address)
    else:
        config = load_config(args.config)
        client = Client.from_config(config)
    user = current_user()
    job = base_job(args, user)
    job["script"], job["command"] = script, command
    gbatch_more.apply(args, job, config)
    if args.export == "ALL":
        job["env"] = dict(os.environ)
        size = env_bytes(job["env"])
        if size > MAX_ENV_BYTES:
            raise CommandError(f"Error: your environment is {size} bytes; at most "
                               f"{MAX_ENV_BYTES} (1 MiB) is sent with a job: unset the large "
                               "variables or use --export=NONE")
    if not args.dry_run and config is not None:
        check_project(config, job["project"])

    resolved: dict = {}

    def with_dependencies(j: dict) -> dict:
        if "deps" not in resolved:  # resolve `@` once for the whole submission
            if args.depends_on is not None:       # also Slurm's afterok:ID, afterany:ID
                resolved["deps"] = gbatch_more.depends_on(args, client, user, resolve_one)
            elif args.depends_on_all is not None:
                resolved["deps"] = (resolve_list(client, args.depends_on_all, user,
                                                 "--depends-on-all"), "All")
            elif args.depends_on_any is not None:
                resolved["deps"] = (resolve_list(client, args.depends_on_any, user,
                                                 "--depends-on-any"), "Any")
            else:
                resolved["deps"] = None
        if resolved["deps"] is None:
            return j
        ids, mode = resolved["deps"]
        j["depends_on_ids"] = list(ids)
        j["dependency_mode"] = mode
        j["depends_on"] = ids[0] if len(ids) == 1 else None
        j.update(gbatch_more.condition_fields(args))     # afterany:/afternotok: ids
        return j

    jobs: list[dict] = []
    shown_params: list[Optional[dict]] = []
    if args.array:
        from gflow.parsing import parse_array
        start, end = parse_value(parse_array, args.array, "--array")
        if end - start + 1 > MAX_JOBS_PER_SUBMISSION:  # counted, not expanded
            raise CommandError(f"Error: --array {args.array} has {end - start + 1} tasks; "
                               f"at most {MAX_JOBS_PER_SUBMISSION} per submission")
        for task in range(start, end + 1):
            jobs.append(with_dependencies(dict(job, task_id=task)))
            shown_params.append(None)
        kind = "array job(s)"
    elif args.param or args.param_file:
        combos = param_combinations(args)
        checks.check_placeholders(None if script else command, args.name_template, combos)
        for params in combos:
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
        lines = [f"Would submit {len(jobs)} {kind}:"]
        lines += [f"  [{n}] {describe(j, params)}"
                  for n, (j, params) in enumerate(zip(jobs, shown_params), start=1)]
        print("\n".join(lines))
        return 0
    checks.warn_gpu_count(client, job["gpus"])
    checks.warn_conda(conda_given)
    if len(jobs) == 1 and not (args.array or args.param or args.param_file):
        try:
            reply = client.submit(jobs[0])
        except ApiError as exc:
            raise CommandError(f"Failed to add job: {exc}") from None
        print(f"Submitted batch job {reply['id']} ({reply['run_name']})")
        return 0
    if args.max_concurrent is not None:
        import uuid
        group = str(uuid.uuid4())
        for j in jobs:
            j["group_id"] = group
            j["max_concurrent"] = args.max_concurrent
    try:
        replies = client.submit_batch(jobs)
    except ApiError as exc:
        raise CommandError(f"Failed to add batch jobs: {exc}") from None
    lines = []
    if args.max_concurrent is not None and replies:
        lines.append(f"Submitted {len(replies)} batch jobs with group_id: {jobs[0]['group_id']}")
        lines.append(f"  (You can update the limit with: gctl set-limit {replies[0]['id']} <N>)")
    lines += [f"Submitted batch job {r['id']} ({r['run_name']})" for r in replies]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
