"""The commands in-process: every 0.4.13 flag and alias parses, bad input gives one clear
line and the right exit status (2 usage, 1 runtime), requests carry what 0.4.13 sends (with
our fixes), and no client module imports server-side code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gflow.cli import gbatch, gcancel, gctl, ginfo, gjob, gqueue, gstats

TOOLS = {"gbatch": gbatch, "gqueue": gqueue, "gjob": gjob, "gcancel": gcancel,
         "ginfo": ginfo, "gctl": gctl, "gstats": gstats}


class FakeClient:
    """Answers requests from a table; records every request."""

    def __init__(self, jobs=None, routes=None):
        self.jobs = {j["id"]: j for j in (jobs or [])}
        self.routes = routes or {}
        self.requests: list = []

    def request(self, method, path, body=None, query=None):
        self.requests.append((method, path, body, query))
        key = (method, path)
        if key in self.routes:
            answer = self.routes[key]
            return answer(body, query) if callable(answer) else answer
        if method == "GET" and path.startswith("/jobs/") and path.count("/") == 2:
            job = self.jobs.get(int(path.rsplit("/", 1)[1]))
            return (200, job) if job else (404, None)
        if method == "POST" and path.startswith("/jobs/"):
            _, _, jid, action = path.split("/")
            job = self.jobs.get(int(jid))
            if job is None:
                return 404, None
            if action == "cancel" and job["state"] not in ("Queued", "Hold", "Running"):
                return 409, {"error": f"Job {jid} is {job['state']}: cannot cancel it"}
            return 200, None
        return 404, None

    def call(self, method, path, body=None, query=None, ok=(200, 201)):
        status, body = self.request(method, path, body, query)
        assert status in ok, (status, body)
        return body

    def get_job(self, job_id):
        status, body = self.request("GET", f"/jobs/{job_id}")
        return body if status == 200 else None

    def list_jobs(self, *, states=None, users=None, created_after=None, limit=None,
                  offset=None):
        self.requests.append(("LIST", states, users, created_after))
        return [j for j in self.jobs.values()
                if (states is None or j["state"] in states)
                and (users is None or j.get("submitted_by") in users)]

    def action(self, job_id, action):
        return self.request("POST", f"/jobs/{job_id}/{action}")

    def resolve(self, user, shorthand):
        return max(self.jobs)


def job(id, state="Queued", **kw):
    j = {"id": id, "state": state, "run_name": f"gflow-job-{id}", "gpus": 0, "priority": 10,
         "submitted_by": "tester", "depends_on": None, "depends_on_ids": [],
         "dependency_mode": None, "auto_cancel_on_dependency_failure": True, "reason": None,
         "script": None, "command": "echo hi", "conda_env": None, "time_limit": None,
         "memory_limit_mb": None, "gpu_memory_limit_mb": None, "gpu_sharing_mode": "Exclusive",
         "parameters": {}, "gpu_ids": None, "run_dir": "/tmp", "task_id": None,
         "submitted_at": None, "started_at": None, "finished_at": None, "redone_from": None,
         "project": None, "group_id": None}
    j.update(kw)
    return j


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USER", "tester")
    for var in ("XDG_CONFIG_HOME", "GFLOW_DAEMON_HOST", "GFLOW_DAEMON_PORT",
                "GFLOW_TIMEZONE", "CONDA_DEFAULT_ENV", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake(monkeypatch):
    client = FakeClient()
    for mod in (gqueue, gjob, gcancel, ginfo, gctl, gstats):
        monkeypatch.setattr(mod, "client_for", lambda args, c=client: c)
    return client


def run(capsys, tool, *argv):
    rc = TOOLS[tool].main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- every flag and alias --------------------------------------------------------------------

PARSES = [
    ("gbatch", ["-c", "env", "-g", "1", "--shared", "-p", "5", "-d", "@", "--no-auto-cancel",
                "-t", "1:00", "-m", "2G", "--gpu-memory", "1G", "-n", "x", "--auto-close",
                "--dry-run", "-P", "proj", "echo"]),
    ("gbatch", ["--conda-env", "e", "--gres", "2", "--nice", "3", "--dependency", "4",
                "--time-limit", "5", "--max-mem", "1G", "--max-gpu-mem", "1G", "--job-name", "y",
                "echo"]),
    ("gbatch", ["--gpus", "1", "--priority", "1", "--depends-on-all", "1,2", "--timelimit", "5",
                "--max-memory", "1G", "--max-gpu-memory", "1G", "-J", "z", "--array", "1-3",
                "--max-concurrent", "2", "echo"]),
    ("gbatch", ["--depends-on-any", "1,2", "--param", "a=1,2", "--param-file", "p.csv",
                "--name-template", "n_{a}", "--time", "1", "--memory", "1", "--name", "w",
                "--project", "p", "--config", "/x.toml", "--export", "none", "echo"]),
    ("gqueue", ["-u", "a,b", "-n", "-3", "-a", "--since", "1h", "-r", "state", "-s", "R,PD",
                "-j", "1,2", "-N", "x", "-P", "p", "-f", "JOBID", "-g", "-t", "-T", "-o", "json",
                "-w", "--interval", "5", "--config", "/x"]),
    ("gqueue", ["--users", "a", "--limit", "2", "--completed", "--sort", "id", "--job", "3",
                "--names", "x", "--project", "p", "--format", "ST", "--group", "--tree",
                "--tmux", "--output", "csv", "--watch"]),
    ("gqueue", ["--user", "a", "--all", "--states", "CD", "--jobs", "1-3"]),
    ("gcancel", ["--dry-run", "1-3", "--cancel", "--config", "/x"]),
    ("gcancel", ["--kill", "--finish", "3"]),
    ("gcancel", ["--fail", "3"]),
    ("ginfo", ["-vvv", "--config", "/x"]),
    ("ginfo", ["-q"]),
    ("gstats", ["-u", "bob", "-t", "7d", "-o", "csv", "--config", "/x"]),
    ("gstats", ["--all-users", "--since", "today", "--output", "json"]),
    ("gstats", ["--user", "x"]),
]
for sub, extra in (("attach", ["1"]), ("a", ["@"]), ("log", ["1", "-f"]), ("l", ["@~2"]),
                   ("hold", ["1-3"]), ("h", ["1"]), ("release", ["1,2"]), ("r", ["1"]),
                   ("show", ["1"]), ("s", ["1"]), ("redo", ["@", "-g", "1", "-p", "3", "-d",
                                                          "@~2", "-t", "1:00", "-m", "1G",
                                                          "--gpu-memory", "2G", "-e", "env",
                                                          "--cascade"]),
                   ("redo", ["4", "--clear-deps", "--max-gpu-mem", "1G"]),
                   ("close-sessions", ["-j", "1", "-s", "R", "-p", "x", "-a"]),
                   ("close", []),
                   ("update", ["1", "-c", "x", "-s", "s.sh", "-g", "2", "-e", "e", "-p", "9",
                               "-t", "10", "-m", "1G", "--gpu-memory", "1G", "-d", "1,2",
                               "--auto-cancel-on-dep-failure", "--max-concurrent", "3",
                               "--param", "a=1", "--param", "b=2"]),
                   ("u", ["1", "--clear-conda-env", "--clear-time-limit", "--clear-memory-limit",
                          "--clear-gpu-memory-limit", "--clear-max-concurrent",
                          "--no-auto-cancel-on-dep-failure", "--depends-on-any", "3"]),
                   ("u", ["1", "--max-gpu-mem", "1G"]),
                   ("update", ["1", "--depends-on-all", "2,3", "--config", "/x", "-vv"])):
    PARSES.append(("gjob", ["-v", sub] + extra))
for argv in (["set-gpus", "0-2"], ["show-gpus"], ["set-limit", "3", "5"],
             ["reserve", "create", "--user", "u", "--gpus", "1", "--start", "2030-01-01 10:00",
              "--duration", "1h", "--timezone", "UTC"],
             ["reserve", "create", "--gpu-spec", "0,1", "--start", "x", "--duration", "1h"],
             ["reserve", "list", "--user", "u", "--status", "pending", "--active"],
             ["reserve", "list", "--timeline", "--range", "-24h:+24h"],
             ["reserve", "list", "--timeline", "--range", "-24h"],
             ["reserve", "list", "--timeline", "--from", "2030-01-01 10:00", "--to", "x"],
             ["reserve", "get", "1"], ["reserve", "cancel", "1", "--config", "/x"]):
    PARSES.append(("gctl", argv))


@pytest.mark.parametrize("tool,argv", PARSES, ids=[f"{t}-{i}" for i, (t, _) in
                                                    enumerate(PARSES)])
def test_every_0413_flag_and_alias_parses(tool, argv):
    from test_cli_aliases import check_values   # spec/cli.md's option tables, written out
    args = TOOLS[tool].build_parser().parse_args(argv)
    check_values(tool, argv, args)              # each flag and alias set what it should


def test_gbatch_command_swallows_everything_after_it():
    args = gbatch.build_parser().parse_args(["--dry-run", "echo", "-g", "2", "--dry-run"])
    assert args.command == ["echo", "-g", "2", "--dry-run"] and args.gpus is None


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_version_and_help(tool, capsys):
    rc, out, _ = run(capsys, tool, "-V")
    assert rc == 0 and out.startswith(f"{tool} ") and "0.4.13" in out
    rc, out, _ = run(capsys, tool, "--help")
    assert rc == 0 and out.startswith("usage:")


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(tool, shell, capsys):
    rc, out, err = run(capsys, tool, "completion", shell)
    assert rc == 0 and err == ""
    assert tool in out and len(out.splitlines()) > 10
    if shell == "bash":
        assert subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0


def test_completion_lists_subcommands_and_flags(capsys):
    _, out, _ = run(capsys, "gjob", "completion", "bash")
    for word in ("attach", "close-sessions", "redo", "--clear-time-limit", "--cascade"):
        assert word in out
    _, out, _ = run(capsys, "gqueue", "completion", "fish")
    assert "--since" in out or "since" in out
    rc, _, err = run(capsys, "gqueue", "completion", "cmd")
    assert rc == 2 and "cmd" in one_line_error(err)


# --- usage errors: one line, exit status 2, nothing sent --------------------------------------

USAGE_ERRORS = [
    ("gbatch", ["--gpus", "x", "echo"], "'x'"),
    ("gbatch", ["--gpus", "-1", "echo"], "'-1'"),
    ("gbatch", ["--priority", "256", "echo"], "256 is not in 0..=255"),
    ("gbatch", ["--depends-on", "1", "--depends-on-all", "2", "echo"], "--depends-on-all"),
    ("gbatch", ["--depends-on-any", "1", "--depends-on-all", "2", "echo"], "--depends-on-all"),
    ("gbatch", ["-n", "a", "-J", "b", "echo"], "cannot be used multiple times"),
    ("gbatch", ["--name", "a", "--job-name", "b", "echo"], "cannot be used multiple times"),
    ("gbatch", ["--foo", "echo"], "--foo"),                      # §15.3: not a command
    ("gbatch", ["--dry"], "--dry"),                              # no abbreviations
    ("gbatch", ["--max-concurrent", "x", "echo"], "'x'"),
    ("gqueue", ["--foo"], "--foo"),
    ("gqueue", ["--user"], "--user"),
    ("gqueue", ["-n", "x"], "'x'"),
    ("gqueue", ["-n", "99999999999"], "99999999999"),
    ("gqueue", ["-a", "-c"], "-c/--completed"),
    ("gqueue", ["-c", "-s", "R"], "-s/--states"),
    ("gqueue", ["--interval", "3"], "--watch"),
    ("gqueue", ["--interval", "x", "-w"], "'x'"),
    ("gqueue", ["bogus"], "bogus"),
    ("gjob", ["show"], "JOB"),
    ("gjob", ["bogus"], "bogus"),
    ("gjob", ["update", "1", "-g", "x"], "'x'"),
    ("gjob", ["update", "1", "-p", "300"], "300"),
    ("gjob", ["update", "1", "-d", "1,x"], "'x'"),
    ("gjob", ["update", "1", "-e", "a", "--clear-conda-env"], "--clear-conda-env"),
    ("gjob", ["update", "1", "-t", "1", "--clear-time-limit"], "--clear-time-limit"),
    ("gjob", ["update", "1", "-d", "1", "--depends-on-any", "2"], "--depends-on-any"),
    ("gjob", ["redo", "1", "-d", "2", "--clear-deps"], "--clear-deps"),
    ("gjob", ["redo"], "JOB"),
    ("gjob", ["close-sessions", "-s", "bogus"], "bogus"),
    ("gcancel", ["1", "2"], "2"),
    ("gcancel", ["--finish", "x"], "'x'"),
    ("gctl", ["set-limit", "3", "x"], "'x'"),
    ("gctl", ["set-limit", "3"], "LIMIT"),
    ("gctl", ["reserve", "create", "--gpus", "1", "--gpu-spec", "0", "--start", "x",
              "--duration", "1h"], "--gpu-spec"),
    ("gctl", ["reserve", "create", "--gpus", "1", "--duration", "1h"], "--start"),
    ("gctl", ["reserve", "list", "--range", "4h"], "--timeline"),
    ("gctl", ["reserve", "list", "--timeline", "--from", "x"], "--to"),
    ("gctl", ["reserve", "list", "--timeline", "--range", "4h", "--to", "x", "--from", "y"],
     "--range"),
    ("gctl", ["reserve", "get", "x"], "'x'"),
    ("gctl", ["bogus"], "bogus"),
    ("gstats", ["-a", "-u", "x"], "-u/--user"),
    ("gstats", ["-o"], "-o/--output"),
    ("ginfo", ["--foo"], "--foo"),
]


@pytest.mark.parametrize("tool,argv,words", USAGE_ERRORS,
                         ids=[f"{t}-{'_'.join(a)}" for t, a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_and_exit_2(tool, argv, words, capsys, fake):
    rc, out, err = run(capsys, tool, *argv)
    assert rc == 2, (out, err)
    line = one_line_error(err)
    assert "error" in line and words in line, line
    assert out == ""
    assert not [r for r in fake.requests if r[0] != "GET"]  # no state change


@pytest.mark.parametrize("argv", [[], ["reserve"]])
def test_missing_subcommand_prints_help_on_stderr(argv, capsys):
    rc, out, err = run(capsys, "gctl", *argv)
    assert rc == 2 and out == "" and err.startswith("usage: gctl")
    rc, out, err = run(capsys, "gjob")
    assert rc == 2 and out == "" and err.startswith("usage: gjob")


# --- runtime errors: one line, exit status 1 -------------------------------------------------

RUNTIME_ERRORS = [
    # §4.1 time limits
    (["--time", "abc"], "Invalid time format. Expected number of minutes"),
    (["--time", ""], "Invalid time format. Expected number of minutes"),
    (["-t", "x:10"], "Invalid minutes in MM:SS format"),
    (["-t", "1:x"], "Invalid seconds in MM:SS format"),
    (["-t", "x:1:1"], "Invalid hours in HH:MM:SS format"),
    (["-t", "1:x:1"], "Invalid minutes in HH:MM:SS format"),
    (["-t", "1:1:x"], "Invalid seconds in HH:MM:SS format"),
    (["-t", "1:2:3:4"], "Expected formats: HH:MM:SS, MM:SS, or MM"),
    # §4.2 memory
    (["-m", " "], "Memory limit cannot be empty"),
    (["-m", "xG"], "Invalid memory value in GB format"),
    (["-m", "1.5G"], "Invalid memory value in GB format"),
    (["-m", "xM"], "Invalid memory value in MB format"),
    (["--gpu-memory", "lots", "--shared"], "Invalid memory format. Expected formats"),
    # §4.7 arrays
    (["--array", "5"], "Invalid array format. Expected format like '1-10'."),
    (["--array", "x-3"], "Invalid array start index"),
    (["--array", " 1-2"], "Invalid array start index"),
    (["--array", "1-x"], "Invalid array end index"),
    (["--array", "3-1"], "Array start index cannot be greater than end index"),
    # §4.8 params
    (["--param", "novalue"], "Invalid param format. Expected 'name=val1,val2,...'"),
    (["--param", " =1"], "Parameter name cannot be empty"),
    (["--param", "x=,,"], "Parameter must have at least one value"),
    (["--param", "x=1:2:0"], "Step cannot be zero"),
    (["--param", "x=1:3:-1"], "Step direction doesn't match start/stop"),
    (["--param", "x=a:b"], "invalid float literal"),
    (["--param", "x=0:20000"], "Range too large (max 10000 values)"),
    (["--param", "x=1", "--array", "1-2"], "Cannot use both --param and --array together"),
    (["--param-file", "missing.csv"], "Failed to read parameter file"),
    # §6.5 dependencies
    (["-d", " "], "Dependency value cannot be empty"),
    (["-d", "abc"], "Invalid dependency value: abc"),
    (["--depends-on-all", "1,x"], "Invalid dependency ID: x"),
    (["--depends-on-any", ","], "Dependency list cannot be empty"),
    # §6.7 shared without a GPU memory limit
    (["--shared", "-g", "1"], "Shared jobs must set a GPU memory limit"),
]


@pytest.mark.parametrize("argv,words", RUNTIME_ERRORS,
                         ids=[" ".join(a) for a, _ in RUNTIME_ERRORS])
def test_gbatch_value_errors_exit_1(argv, words, capsys, monkeypatch):
    monkeypatch.setattr(gbatch.Client, "submit", lambda *a: pytest.fail("submitted"))
    monkeypatch.setattr(gbatch.Client, "submit_batch", lambda *a: pytest.fail("submitted"))
    rc, out, err = run(capsys, "gbatch", "--dry-run", *argv, "echo", "{x}")
    assert rc == 1, (out, err)
    assert words in one_line_error(err)
    assert out == ""


def test_gbatch_param_file_errors(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b\n")
    (tmp_path / "ragged.csv").write_text("a,b\n1\n")
    for name, words in (("empty.csv", "CSV file must have a header row"),
                        ("header.csv", "CSV file contains no data rows"),
                        ("ragged.csv", "found a record with 1 fields, but the header has 2")):
        rc, out, err = run(capsys, "gbatch", "--dry-run", "--param-file", name, "echo")
        assert rc == 1 and words in one_line_error(err), err


def test_gbatch_refuses_a_missing_script_but_not_a_program(capsys):
    rc, out, err = run(capsys, "gbatch", "--dry-run", "train.sh")
    assert rc == 1 and "train.sh" in one_line_error(err)
    rc, out, err = run(capsys, "gbatch", "--dry-run", "./run", "--x")
    assert rc == 1 and "./run" in one_line_error(err)
    rc, out, err = run(capsys, "gbatch", "--dry-run", "sh", "-c", "true")
    assert rc == 0 and "[1] sh -c true (GPUs: 0)" in out


def test_gbatch_dry_runs_match_0413(capsys, tmp_path):
    cases = [
        (["--gpus", "2", "echo", "hi"], "Would submit 1 batch job:\n  [1] echo hi (GPUs: 2)\n"),
        (["--array", "1-3", "--gpus", "1", "echo", "task"],
         "Would submit 3 array job(s):\n  [1] echo task (GPUs: 1, task_id: 1)\n"
         "  [2] echo task (GPUs: 1, task_id: 2)\n  [3] echo task (GPUs: 1, task_id: 3)\n"),
        (["--param", "lr=0.1,0.01", "--param", "bs=32,64", "python", "train.py", "--lr", "{lr}",
          "--bs", "{bs}"],
         "Would submit 4 batch job(s):\n"
         "  [1] python train.py --lr '0.1' --bs '32' (GPUs: 0)\n"
         "  [2] python train.py --lr '0.1' --bs '64' (GPUs: 0)\n"
         "  [3] python train.py --lr '0.01' --bs '32' (GPUs: 0)\n"
         "  [4] python train.py --lr '0.01' --bs '64' (GPUs: 0)\n"),
        (["echo", "it's", "a!b", "x:y", "a@b", "a%b", "~", "*", "a=b", "a,b", "a.b", "a+b",
          "a-b", "a_b", "a/b", "é", "{lr}", "[x]", "a;b", "a|b", "$X", "tab\tx"],
         "Would submit 1 batch job:\n  [1] echo 'it'\\''s' 'a'\\!'b' 'x:y' 'a@b' 'a%b' '~' "
         "'*' a=b a,b a.b a+b a-b a_b a/b 'é' '{lr}' '[x]' 'a;b' 'a|b' '$X' 'tab\tx' "
         "(GPUs: 0)\n"),
        (["--param", "x=0:1:0.25", "echo", "{x}"],
         "Would submit 5 batch job(s):\n  [1] echo '0' (GPUs: 0)\n  [2] echo '0.25' (GPUs: 0)\n"
         "  [3] echo '0.50' (GPUs: 0)\n  [4] echo '0.75' (GPUs: 0)\n  [5] echo '1' (GPUs: 0)\n"),
    ]
    for argv, expected in cases:
        rc, out, err = run(capsys, "gbatch", "--dry-run", *argv)
        assert (rc, out, err) == (0, expected, "")
    (tmp_path / "s1.sh").write_text("#!/bin/bash\n# GFLOW --gpus=1\necho hi\n")
    rc, out, err = run(capsys, "gbatch", "--dry-run", "s1.sh")
    assert out == f"Would submit 1 batch job:\n  [1] {tmp_path}/s1.sh (GPUs: 1)\n"


def test_gbatch_directives(tmp_path, capsys):
    (tmp_path / "d.sh").write_text("#!/bin/bash\n# GFLOW --bogus\n# GFLOW --gpus=2 --priority 50"
                                   "\n  # GFLOW --gpus=3\n#GFLOW --gpus=4\necho\n")
    args = gbatch.build_parser().parse_args(["d.sh"])
    gbatch.apply_directives(args, gbatch.read_directives("d.sh"), "d.sh")
    assert (args.gpus, args.priority) == (2, 50)  # 0.4.13: --bogus swallowed the rest
    assert "--bogus" in capsys.readouterr().err
    args = gbatch.build_parser().parse_args(["-g", "1", "d.sh"])
    gbatch.apply_directives(args, gbatch.read_directives("d.sh"), "d.sh")
    assert args.gpus == 1  # the command line wins
    capsys.readouterr()
    (tmp_path / "bad.sh").write_text("# GFLOW --gpus=abc\n")
    rc, out, err = run(capsys, "gbatch", "--dry-run", "bad.sh")
    assert rc == 1 and "abc" in one_line_error(err)
    (tmp_path / "dep.sh").write_text("# GFLOW --depends-on=7 --name=x\n")
    args = gbatch.build_parser().parse_args(["dep.sh"])
    gbatch.apply_directives(args, gbatch.read_directives("dep.sh"), "dep.sh")
    assert args.depends_on == "7" and args.name is None


# spec/cli.md §6.9, the exact content of `gbatch new` (written out here, not imported from
# gflow.cli.templates, so that a change there cannot change what is expected).
# DIFFERS: 0.4.13 called a bare --time number "seconds as number"; it is minutes (issue 23).
SPEC_JOB_SCRIPT = """\
#!/bin/bash
#
# =========================================  gflow  =========================================
#  ██████╗ ███████╗██╗      ██████╗ ██╗    ██╗
# ██╔════╝ ██╔════╝██║     ██╔═══██╗██║    ██║
# ██║  ███╗█████╗  ██║     ██║   ██║██║ █╗ ██║
# ██║   ██║██╔══╝  ██║     ██║   ██║██║███╗██║
# ╚██████╔╝██║     ███████╗╚██████╔╝╚███╔███╔╝
#  ╚═════╝ ╚═╝     ╚══════╝ ╚═════╝  ╚══╝╚══╝
#
# A lightweight, single-node GPU job scheduler
# ==========================================================================================
#
# Job Configuration
# -----------------
# Use GFLOW directives to configure your job. These settings can be overridden by
# command-line arguments when submitting the job.
#
# To activate a directive: change ## to # on the GFLOW line.
# Example: ## GFLOW --gpus=1  becomes  # GFLOW --gpus=1
#
# NOTE: Only the directives shown below are honored when parsed from script files.
# Other options (--array, --param, --name, etc.) must be passed via command line.
#

## GFLOW --conda-env=myenv
# The conda environment to use (default: none)

## GFLOW --gpus=1
# The GPU count to request (default: 0)

## GFLOW --priority=50
# The priority of the job (default: 10)

## GFLOW --depends-on=123
# Job dependency; accepts a job ID or shorthand like "@" / "@~N" (default: none)

## GFLOW --time=1:30:00
# Time limit for the job (formats: "HH:MM:SS", "MM:SS", or a number of minutes "MM") (default: unlimited)

## GFLOW --memory=4G
# Memory limit for the job (formats: "100G", "1024M", or "512" for MB) (default: unlimited)


# --- Your script starts here ---
echo "Starting gflow job..."
echo "Running on node: $HOSTNAME"

# Add your commands here
# Example:
# python train.py --epochs 100

echo "Job finished successfully."
"""


def test_gbatch_new_writes_the_template(tmp_path, capsys):
    rc, out, err = run(capsys, "gbatch", "new", "myjob")
    # DIFFERS: 0.4.13 printed nothing
    assert (rc, out, err) == (0, "Created myjob.sh: a job script template; edit it, then "
                                 "submit it with `gbatch myjob.sh`.\n", "")
    assert (tmp_path / "myjob.sh").read_text() == SPEC_JOB_SCRIPT
    assert (tmp_path / "myjob.sh").stat().st_mode & 0o777 == 0o755
    rc, out, err = run(capsys, "gbatch", "new", "myjob.sh")
    assert rc == 1 and one_line_error(err) == "File 'myjob.sh' already exists."


# --- what the commands send and print (fake daemon) ------------------------------------------

def test_gqueue_query_and_fixes(capsys, fake):
    fake.jobs = {i: job(i, state=s) for i, s in ((1, "Queued"), (2, "Hold"), (3, "Running"),
                                                  (4, "Finished"))}
    run(capsys, "gqueue")
    assert fake.requests[-1] == ("LIST", ["Queued", "Hold", "Running"], ["tester"], None)
    run(capsys, "gqueue", "-c", "-u", "all")
    assert fake.requests[-1] == ("LIST", ["Finished", "Failed", "Cancelled", "Timeout"], None,
                                 None)
    run(capsys, "gqueue", "-s", "r,PD,running", "-u", " ")
    assert fake.requests[-1][1:3] == (["Running", "Queued"], ["tester"])
    rc, out, err = run(capsys, "gqueue", "-s", "R,bogus")
    assert rc == 1 and "bogus" in one_line_error(err)  # 0.4.13 dropped it silently
    rc, out, err = run(capsys, "gqueue", "-a", "-j", "2-3", "-f", "JOBID")
    assert out.split() == ["JOBID", "2", "3"]  # ranges work (§15.11)
    rc, out, err = run(capsys, "gqueue", "-j", "1,x")
    assert rc == 1 and "x" in one_line_error(err)
    rc, out, err = run(capsys, "gqueue", "-T", "-f", "JOBID")
    assert out.split() == ["JOBID", "3"]
    rc, out, err = run(capsys, "gqueue", "-o", "xml")
    assert rc == 1 and one_line_error(err) == ("Invalid output format 'xml'. Valid options: "
                                               "table, json, csv, yaml")
    rc, out, err = run(capsys, "gqueue", "--since", "2026-01-28")
    assert rc == 0 and isinstance(fake.requests[-1][3], int)
    rc, out, err = run(capsys, "gqueue", "--since", "1x")
    assert rc == 1 and "1x" in one_line_error(err)
    rc, out, err = run(capsys, "gqueue", "-r", "bogus")
    assert rc == 0 and err == "Warning: Unknown sort field 'bogus', using default 'id'\n"
    fake.jobs = {}
    rc, out, err = run(capsys, "gqueue")
    assert (rc, out) == (0, "No jobs found.\n")
    rc, out, err = run(capsys, "gqueue", "-o", "json")
    assert json.loads(out)["jobs"] == []


def test_gcancel_reports_unknown_and_final_jobs(capsys, fake):
    fake.jobs = {1: job(1), 2: job(2, state="Finished")}
    rc, out, err = run(capsys, "gcancel", "1-2,999")
    assert rc == 1
    assert out == "Job 1 cancelled.\n"  # 0.4.13: "Job 999 cancelled." too
    assert err.splitlines() == ["Error: Job 2 is Finished: cannot cancel it",
                                "Error: Job 999 not found"]
    rc, out, err = run(capsys, "gcancel")
    assert rc == 1 and one_line_error(err).startswith("No command specified.")
    rc, out, err = run(capsys, "gcancel", "x")
    assert rc == 1 and "Invalid job ID or range: x" in one_line_error(err)
    rc, out, err = run(capsys, "gcancel", "3-1")
    assert rc == 1 and "Start of the range cannot be bigger than the end" in err
    assert not [r for r in fake.requests if r[0] == "POST" and r[1].endswith("/3/cancel")]


def test_gcancel_dry_run_matches_0413(capsys, fake):
    fake.jobs = {20: job(20, state="Running"), 21: job(21, depends_on=20, depends_on_ids=[20]),
                 1: job(1, state="Cancelled")}
    rc, out, err = run(capsys, "gcancel", "--dry-run", "20,21")
    assert (rc, out) == (0, "20\tRunning\tok\n21\tQueued\tblocked\t20\n21\tQueued\tok\n")
    rc, out, err = run(capsys, "gcancel", "--dry-run", "1")
    assert (rc, out) == (0, "1\tCancelled\tinvalid\n")
    rc, out, err = run(capsys, "gcancel", "--dry-run", "999")
    assert rc == 1 and one_line_error(err) == "Error: Job 999 not found"
    assert not [r for r in fake.requests if r[0] == "POST"]


def test_gjob_update_clear_flags_send_null(capsys, fake):
    sent = {}

    def patch(body, query):
        sent.update(body)
        return 200, {"job": {}, "updated_fields": list(body)}

    fake.routes[("PATCH", "/jobs/5")] = patch
    rc, out, err = run(capsys, "gjob", "update", "5", "--clear-conda-env", "--clear-time-limit",
                       "--clear-memory-limit", "--clear-gpu-memory-limit",
                       "--clear-max-concurrent")
    assert rc == 0
    assert sent == {"conda_env": None, "time_limit": None, "memory_limit_mb": None,
                    "gpu_memory_limit_mb": None, "max_concurrent": None}
    assert out == ("Job 5 updated successfully.\n  UpdatedFields=conda_env, time_limit, "
                   "memory_limit_mb, gpu_memory_limit_mb, max_concurrent\n")
    sent.clear()
    run(capsys, "gjob", "update", "5", "-t", "1:30:00", "-m", "4G", "-d", "2,3", "--param",
        "b=2", "--param", "a=1", "-p", "99")
    assert sent == {"priority": 99, "parameters": {"b": "2", "a": "1"},
                    "time_limit": {"secs": 5400, "nanos": 0}, "memory_limit_mb": 4096,
                    "depends_on_ids": [2, 3], "dependency_mode": "All"}
    rc, out, err = run(capsys, "gjob", "update", "5")
    assert rc == 1 and one_line_error(err) == ("No updates specified. Use --help to see "
                                               "available options.")
    rc, out, err = run(capsys, "gjob", "update", "5", "--param", "bad")
    assert rc == 1 and one_line_error(err) == "Invalid parameter format 'bad'. Expected KEY=VALUE"
    rc, out, err = run(capsys, "gjob", "update", "5", "-t", "x")
    assert rc == 1 and "Invalid time format" in one_line_error(err)
    fake.routes[("PATCH", "/jobs/6")] = (409, {"error": "Job 6 is in state 'Running' and "
                                                "cannot be updated. Only queued or held jobs "
                                                "can be updated."})
    rc, out, err = run(capsys, "gjob", "update", "6", "-p", "1")
    assert rc == 1 and one_line_error(err) == (
        "Error updating job 6: Failed to update job: Job 6 is in state 'Running' and cannot be "
        "updated. Only queued or held jobs can be updated.")


def test_gjob_redo_prints_0413_layout(capsys, fake):
    fake.jobs = {4: job(4, state="Failed", command="'echo a && echo b'", gpus=1, priority=7,
                        conda_env="envz", time_limit={"secs": 600, "nanos": 0},
                        memory_limit_mb=1024, parameters={"b": "2", "a": "1"})}
    fake.jobs[2] = job(2, state="Finished")
    sent = {}

    def redo(body, query):
        sent.update(body)
        return 201, {"id": 49, "run_name": "gflow-job-49",
                     "cascaded": [{"from": 21, "id": 50, "run_name": "gflow-job-50"}]}

    fake.routes[("POST", "/jobs/4/redo")] = redo
    rc, out, err = run(capsys, "gjob", "redo", "4", "-d", "2", "--cascade")
    assert rc == 0, err
    assert out == ("Resubmitting job 4 with parameters:\n  Command='echo a && echo b'\n  GPUs=1\n"
                   "  Priority=7\n  CondaEnv=envz\n  TimeLimit=00:10:00\n  MemoryLimit=1G\n"
                   "  DependsOn=2\n  Parameters:\n  a=1\n  b=2\n\n"
                   "Submitted batch job 49 (gflow-job-49)\n\n"
                   "Cascading to 1 dependent job(s)...\n  Job 21 → Job 50 (gflow-job-50)\n\n"
                   "Cascade complete.\n")
    assert sent == {"overrides": {"depends_on": 2}, "cascade": True, "submitted_by": "tester"}
    fake.jobs[5] = job(5, state="Hold")
    rc, out, err = run(capsys, "gjob", "redo", "5")
    assert rc == 1 and one_line_error(err) == ("Job 5 is still in Hold state. Use `gjob update` "
                                               "to modify its parameters.")
    rc, out, err = run(capsys, "gjob", "redo", "48")
    assert rc == 1 and one_line_error(err) == "Job 48 not found."
    rc, out, err = run(capsys, "gjob", "redo", "@x")
    assert rc == 1 and "Invalid job ID: @x" in one_line_error(err)


def test_gjob_missing_jobs_are_errors(capsys, fake):
    fake.jobs = {1: job(1, state="Running"), 2: job(2)}
    # DIFFERS: the missing ids are summed up in one line after the jobs found, and the
    # separator stands only between jobs (0.4.13: one per id, missing ones included)
    rc, out, err = run(capsys, "gjob", "show", "1,2,999")
    assert rc == 1 and one_line_error(err) == "Error: Job 999 not found"
    assert out.startswith("Job Details:\n  ID=1\n") and "\n\n" + "=" * 80 + "\n\n" in out
    assert out.count("=" * 80) == 1 and "TmuxSession" not in out
    # DIFFERS: `@` works wherever an id does (0.4.13: "Invalid job ID or range: @")
    rc, out, err = run(capsys, "gjob", "show", "@")
    assert rc == 0 and out.startswith("Job Details:\n  ID=2\n")
    rc, out, err = run(capsys, "gjob", "show", "@x")
    assert rc == 1 and "Invalid job ID: @x" in one_line_error(err)
    rc, out, err = run(capsys, "gjob", "hold", "1")
    assert rc == 1 and one_line_error(err) == ("Error: Job 1 is in state 'Running' and cannot "
                                               "be held. Only Queued jobs can be held.")
    rc, out, err = run(capsys, "gjob", "release", "999")
    assert rc == 1 and one_line_error(err) == "Error: Job 999 not found"
    rc, out, err = run(capsys, "gjob", "log", "999")
    assert rc == 1 and one_line_error(err) == "Error: Job 999 not found"
    rc, out, err = run(capsys, "gjob", "log", "1")
    assert rc == 1 and one_line_error(err) == "Log for job 1 is not available."
    rc, out, err = run(capsys, "gjob", "attach", "999")
    assert rc == 1 and one_line_error(err) == "Error: Job 999 not found"
    # DIFFERS: refused, pointing to `gjob log` (docs/migrating.md)
    rc, out, err = run(capsys, "gjob", "close-sessions", "-s", "running")
    assert rc == 1 and "no sessions to close" in one_line_error(err) and "gjob log" in err


def test_gctl_and_ginfo_and_gstats_requests(capsys, fake):
    fake.routes[("GET", "/info")] = (200, {"gpus": [], "allowed_gpu_indices": None,
                                           "gpu_allocation_strategy": "sequential"})
    rc, out, err = run(capsys, "ginfo")
    assert (rc, out) == (0, "No GPUs detected.\n")  # 0.4.13 printed nothing
    rc, out, err = run(capsys, "gctl", "show-gpus")
    assert (rc, out) == (0, "")
    fake.routes[("GET", "/info")] = (200, {"gpus": [{"index": i, "available": i == 3}
                                                    for i in range(4)],
                                           "allowed_gpu_indices": [0, 1, 2]})
    rc, out, err = run(capsys, "gctl", "show-gpus")
    assert out == "0\tin_use\n1\tin_use\n2\tin_use\n3\tavailable\trestricted\n"
    fake.routes[("POST", "/gpus")] = lambda body, q: (200, body)
    rc, out, err = run(capsys, "gctl", "set-gpus", "3,1,1")
    assert out == "GPU restriction updated: only GPUs [1, 3] will be used\n"
    assert fake.requests[-1][2] == {"allowed_indices": [1, 3]}
    rc, out, err = run(capsys, "gctl", "set-gpus", "ALL")
    assert out == "GPU restriction removed: all GPUs are now available\n"
    assert fake.requests[-1][2] == {"allowed_indices": None}
    rc, out, err = run(capsys, "gctl", "set-gpus", "3-1")
    assert rc == 1 and "Start of the range cannot be bigger than the end: 3-1" in err
    fake.jobs = {17: job(17, group_id="72a2f0f7-34f4-4b19-88df-33eb510b7285"), 2: job(2)}
    fake.routes[("POST", "/groups/72a2f0f7-34f4-4b19-88df-33eb510b7285/max-concurrency")] = \
        (200, {"updated_jobs": 3})
    rc, out, err = run(capsys, "gctl", "set-limit", "17", "5")
    assert out == ("Found job 17 in group '72a2f0f7-34f4-4b19-88df-33eb510b7285'\n"
                   "Updated max_concurrency to 5 for group "
                   "'72a2f0f7-34f4-4b19-88df-33eb510b7285' (3 jobs affected)\n")
    rc, out, err = run(capsys, "gctl", "set-limit", "2", "5")
    assert rc == 1 and one_line_error(err) == "Job 2 is not part of a group"
    rc, out, err = run(capsys, "gctl", "set-limit", "9999", "5")
    assert rc == 1 and one_line_error(err) == "Job 9999 not found"
    rc, out, err = run(capsys, "gctl", "reserve", "create", "--start", "2030-01-01 10:00",
                       "--duration", "1h")
    assert rc == 1 and one_line_error(err) == "Must specify either --gpus or --gpu-spec"
    for bad, words in (("90s", "Seconds are not allowed"), ("1d", "Invalid character in "
                       "duration: d"), ("1", "Duration must end with a unit (h or m)"),
                       ("0h", "Duration must be greater than 0"),
                       ("45m", "must be a multiple of 30 minutes")):
        rc, out, err = run(capsys, "gctl", "reserve", "create", "--gpus", "1", "--start",
                           "2030-01-01 10:00", "--duration", bad, "--timezone", "UTC")
        assert rc == 1 and words in one_line_error(err), err
    rc, out, err = run(capsys, "gctl", "reserve", "create", "--gpus", "1", "--start",
                       "2030-01-01 10:00", "--duration", "1h", "--timezone", "Mars/X")
    assert rc == 1 and "Invalid timezone: Mars/X" in one_line_error(err)
    assert not [r for r in fake.requests if r[1] == "/reservations"]
    stats = {"user": None, "since": None, "total_jobs": 0, "top_jobs": []}
    fake.routes[("GET", "/stats")] = lambda body, q: (200, dict(stats, user=q.get("user")))
    run(capsys, "gstats", "-u", "all")
    assert fake.requests[-1][3] == {}  # everyone (0.4.13: a user called "all")
    run(capsys, "gstats")
    assert fake.requests[-1][3] == {"user": "tester"}
    rc, out, err = run(capsys, "gstats", "-o", "xml")
    assert rc == 1 and "Invalid output format 'xml'" in one_line_error(err)
    rc, out, err = run(capsys, "gstats", "-t", "soon")
    assert rc == 1 and "soon" in one_line_error(err)


def test_colour_only_on_a_terminal(capsys, fake, monkeypatch):
    fake.jobs = {1: job(1, state="Running")}
    run(capsys, "gqueue")
    assert "\x1b[" not in capsys.readouterr().out
    from gflow.cli import render

    class Tty:
        def isatty(self):
            return True

    assert render.use_colour(Tty()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert render.use_colour(Tty()) is False


# --- layering and start-up cost ----------------------------------------------------------------

def test_client_modules_import_nothing_server_side():
    code = ("import sys\nimport gflow.cli.gbatch, gflow.cli.gqueue, gflow.cli.gjob, "
            "gflow.cli.gcancel, gflow.cli.ginfo, gflow.cli.gctl, gflow.cli.gstats, "
            "gflow.cli.completion\n"
            "print('\\n'.join(sorted(sys.modules)))")
    mods = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()
    banned = ("flask", "waitress", "psutil", "apscheduler", "msgpack", "werkzeug",
              "gflow.scheduler", "gflow.api", "gflow.launcher", "gflow.daemon", "gflow.store",
              "gflow.reservations", "gflow.notify", "gflow.models", "shtab", "zoneinfo",
              "csv", "uuid", "decimal", "tomllib")
    assert [m for m in mods if m.startswith(banned)] == []


# --- gbatch submissions (fake daemon) ---------------------------------------------------------

class Recorder:
    def __init__(self):
        self.single: list = []
        self.batches: list = []
        self.next_id = 17

    def submit(self, job):
        self.single.append(job)
        return {"id": self.next_id, "run_name": job["run_name"] or f"gflow-job-{self.next_id}"}

    def submit_batch(self, jobs):
        self.batches.append(jobs)
        return [{"id": self.next_id + i, "run_name": j["run_name"] or f"gflow-job-{i}"}
                for i, j in enumerate(jobs)]

    def resolve(self, user, shorthand):
        return 5

    def prefetch(self, path, query=None):     # gbatch -d @ asks ahead; resolve() answers
        pass

    def request(self, method, path, body=None, query=None):
        assert (method, path) == ("GET", "/info")   # gbatch's GPU count check (issue 23)
        return 200, {"gpus": [{"index": i} for i in range(4)], "allowed_gpu_indices": None}


@pytest.fixture
def daemon_rec(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(gbatch.Client, "from_config", classmethod(lambda cls, config: rec))
    # Without a config file gbatch skips the config module and builds its client from
    # the address alone: route that path to the recorder too.
    monkeypatch.setattr(gbatch, "Client", type("RecClient", (gbatch.Client,), {
        "__new__": lambda cls, *a, **k: rec}))
    return rec


def test_gbatch_submits_what_0413_sends(capsys, daemon_rec, monkeypatch, tmp_path):
    monkeypatch.setenv("CONDA_DEFAULT_ENV", "base")
    rc, out, err = run(capsys, "gbatch", "-g", "1", "-p", "7", "-d", "@", "-t", "90",
                       "-m", "1G", "--no-auto-cancel", "-n", "one", "echo", "hi")
    assert (rc, out, err) == (0, "Submitted batch job 17 (one)\n", "")
    job = daemon_rec.single[-1]
    assert (job["command"], job["gpus"], job["priority"], job["conda_env"]) == \
        ("echo hi", 1, 7, "base")  # conda auto-detected in command mode
    assert (job["depends_on"], job["depends_on_ids"], job["dependency_mode"]) == (5, [5], "All")
    assert job["time_limit"] == {"secs": 5400, "nanos": 0} and job["memory_limit_mb"] == 1024
    assert job["auto_cancel_on_dependency_failure"] is False and job["submitted_by"] == "tester"
    assert job["env"]["CONDA_DEFAULT_ENV"] == "base" and job["run_dir"] == str(tmp_path)
    run(capsys, "gbatch", "--export", "NONE", "--depends-on-any", "3,@", "true")
    job = daemon_rec.single[-1]
    assert "env" not in job
    assert (job["depends_on"], job["depends_on_ids"], job["dependency_mode"]) == \
        (None, [3, 5], "Any")
    (tmp_path / "s.sh").write_text("# GFLOW --conda-env=envx --time=10 --memory=2G\n")
    run(capsys, "gbatch", "s.sh")
    job = daemon_rec.single[-1]
    assert job["script"] == str(tmp_path / "s.sh") and job["command"] is None
    assert (job["conda_env"], job["time_limit"]["secs"], job["memory_limit_mb"]) == \
        ("envx", 600, 2048)  # directives, not CONDA_DEFAULT_ENV (script mode)
    rc, out, err = run(capsys, "gbatch", "--array", "1-3", "--max-concurrent", "2", "-n", "arr",
                       "true")
    lines = out.splitlines()
    assert lines[0].startswith("Submitted 3 batch jobs with group_id: ")
    assert lines[1] == "  (You can update the limit with: gctl set-limit 17 <N>)"
    assert lines[2:] == ["Submitted batch job 17 (arr)", "Submitted batch job 18 (arr)",
                         "Submitted batch job 19 (arr)"]
    batch = daemon_rec.batches[-1]
    assert [j["task_id"] for j in batch] == [1, 2, 3]
    assert len({j["group_id"] for j in batch}) == 1 and batch[0]["max_concurrent"] == 2
    run(capsys, "gbatch", "--param", "lr=a b,c/d", "--name-template", "lr_{lr}_x", "echo",
        "{lr}")
    batch = daemon_rec.batches[-1]
    assert [j["run_name"] for j in batch] == ["lr_a_b_x", "lr_c_d_x"]
    assert [j["parameters"] for j in batch] == [{"lr": "a b"}, {"lr": "c/d"}]
    assert batch[0]["command"] == "echo '{lr}'"  # the daemon substitutes at run time


def test_gbatch_reads_a_script_from_stdin(capsys, daemon_rec, monkeypatch, tmp_path):
    import io
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("# GFLOW --gpus=2\necho from stdin\n"))
    rc, out, err = run(capsys, "gbatch", "-")
    assert rc == 0
    job = daemon_rec.single[-1]
    # in the private <data dir>/stdin/, not $TMPDIR (tests/unit/test_client_hardening.py)
    assert job["script"].startswith(str(tmp_path) + "/.local/share/gflow/stdin/gflow_stdin_")
    assert job["gpus"] == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    rc, out, err = run(capsys, "gbatch")
    assert rc == 1 and one_line_error(err) == "Error: No content provided via stdin"


def test_gbatch_project_policy_from_the_config(capsys, daemon_rec, tmp_path):
    config = tmp_path / ".config" / "gflow"
    config.mkdir(parents=True)
    (config / "gflow.toml").write_text('[projects]\nknown_projects = ["alpha", "beta"]\n'
                                       "require_project = true\n")
    rc, out, err = run(capsys, "gbatch", "true")
    assert rc == 1 and one_line_error(err) == (
        "Project is required by configuration. Provide --project (CLI) or a non-empty "
        "`project` field.")
    rc, out, err = run(capsys, "gbatch", "-P", "gamma", "true")
    assert rc == 1 and one_line_error(err) == "Unknown project 'gamma'. Known projects: alpha, beta"
    rc, out, err = run(capsys, "gbatch", "-P", "x" * 65, "true")
    assert rc == 1 and "Project name too long (max 64 characters)" in one_line_error(err)
    rc, out, err = run(capsys, "gbatch", "--dry-run", "true")  # no policy check in a dry run
    assert rc == 0
    rc, out, err = run(capsys, "gbatch", "-P", " alpha ", "true")
    assert rc == 0 and daemon_rec.single[-1]["project"] == "alpha"
    assert not [j for j in daemon_rec.single if j["project"] != "alpha"]
