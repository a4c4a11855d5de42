"""A session with the installed commands (subprocesses) against one real daemon, compared with
the transcripts of gflow 0.4.13 in spec/cli.md.

Outputs are compared after removing colour codes, the tmux mark `○` and trailing blanks;
running times (`00:00:01`) are normalised where a transcript has them. Tables are checked
byte for byte against 0.4.13's layout rule (tabled Style::blank: `" " + "   ".join(cells
padded to the column width) + " "`). Where we deliberately differ from 0.4.13 the test says
so in a `DIFFERS:` comment with the reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import Daemon, tool_path, wait_for

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HMS = re.compile(r"\b\d\d:\d\d:\d\d\b")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """One daemon for the whole module (2 simulated GPUs); stopped at the end."""
    home = tmp_path_factory.mktemp("cli")
    (home / "tmp").mkdir()
    (home / "work").mkdir()
    daemon = Daemon(home, fake_gpus="2", extra_env={"TMPDIR": str(home / "tmp")})
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


def clean(text: str, times: bool = False) -> str:
    """0.4.13 output as we compare it: no colour, no `○`, no trailing blanks."""
    text = ANSI.sub("", text).replace(" ○", "")
    if times:
        text = HMS.sub("HH:MM:SS", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def layout(rows: list[list[str]], sep: str = "   ") -> str:
    """0.4.13's table layout (spec/cli.md §1.6), written independently of gflow.cli.render."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(" " + sep.join(c.ljust(w) for c, w in zip(r, widths)) + " "
                     for r in rows)


def submit(d: Daemon, *args, cwd=None) -> int:
    out = d.ok("gbatch", *args, cwd=cwd or d.home / "work")
    m = re.fullmatch(r"Submitted batch job (\d+) \((.*)\)\n", out)
    assert m, out
    return int(m.group(1))


def job_count(d: Daemon) -> int:
    status, jobs = d.http("GET", "/jobs")
    assert status == 200
    return len(jobs)


def one_line(res: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip("\n").splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


# --- dry runs (§6.8) -------------------------------------------------------------------------

def test_dry_run_sweeps_match_0413(d):
    before = job_count(d)
    work = d.home / "work"
    (work / "s1.sh").write_text("#!/bin/bash\n# GFLOW --gpus=1\necho hi\n")
    cases = [
        (["--gpus", "2", "echo", "hi"], "Would submit 1 batch job:\n  [1] echo hi (GPUs: 2)\n"),
        (["--array", "1-3", "--gpus", "1", "echo", "task"],
         "Would submit 3 array job(s):\n  [1] echo task (GPUs: 1, task_id: 1)\n"
         "  [2] echo task (GPUs: 1, task_id: 2)\n  [3] echo task (GPUs: 1, task_id: 3)\n"),
        (["--param", "lr=0.1,0.01", "--param", "bs=32,64", "python", "train.py",
          "--lr", "{lr}", "--bs", "{bs}"],
         "Would submit 4 batch job(s):\n"
         "  [1] python train.py --lr '0.1' --bs '32' (GPUs: 0)\n"
         "  [2] python train.py --lr '0.1' --bs '64' (GPUs: 0)\n"
         "  [3] python train.py --lr '0.01' --bs '32' (GPUs: 0)\n"
         "  [4] python train.py --lr '0.01' --bs '64' (GPUs: 0)\n"),
        (["./s1.sh"], f"Would submit 1 batch job:\n  [1] {work}/./s1.sh (GPUs: 1)\n"),
        (["--param", "x=0.1:0.3:0.1", "echo", "{x}"],
         "Would submit 3 batch job(s):\n  [1] echo '0.1' (GPUs: 0)\n"
         "  [2] echo '0.2' (GPUs: 0)\n  [3] echo '0.3' (GPUs: 0)\n"),
        (["--param", "x=3:1", "echo", "{x}"],
         "Would submit 3 batch job(s):\n  [1] echo '3' (GPUs: 0)\n"
         "  [2] echo '2' (GPUs: 0)\n  [3] echo '1' (GPUs: 0)\n"),
        (["--", "-g", "2"], "Would submit 1 batch job:\n  [1] -g 2 (GPUs: 0)\n"),
        (["echo", "-g", "2", "--dry-run"],
         "Would submit 1 batch job:\n  [1] echo -g 2 --dry-run (GPUs: 0)\n"),
        # DIFFERS: 0.4.13 quoted a one-argument command line as one word ('echo a && echo b'),
        # so the job failed with "command not found" (§15.2); we run it as written.
        (["echo a && echo b"], "Would submit 1 batch job:\n  [1] echo a && echo b (GPUs: 0)\n"),
    ]
    for argv, expected in cases:
        res = d.run("gbatch", "--dry-run", *argv, cwd=work)
        assert (res.returncode, res.stdout, res.stderr) == (0, expected, ""), argv
    (work / "p.csv").write_text("lr, bs\n0.1, 32\n0.2,64\n")
    res = d.run("gbatch", "--dry-run", "--param-file", "p.csv", "--param", "s=1,2",
                "--name-template", "run_{lr}_{s}", "echo", "{lr}", "{bs}", "{s}", cwd=work)
    assert res.stdout.splitlines()[0] == "Would submit 4 batch job(s):"
    # DIFFERS: the settings given (here the names) are shown too (issue 23)
    assert res.stdout.splitlines()[1:3] == ["  [1] echo '0.1' '32' '1' (GPUs: 0, name: run_0.1_1)",
                                             "  [2] echo '0.1' '32' '2' (GPUs: 0, name: run_0.1_2)"]
    # stdin mode writes <data dir>/stdin/gflow_stdin_<micros>_<random>.sh (0.4.13: in
    # $TMPDIR, see test_client_hardening.py) and honours its directives
    res = d.run("gbatch", "--dry-run", input="#!/bin/bash\n# GFLOW --gpus=2\necho in\n")
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(r"Would submit 1 batch job:\n  \[1\] (\S+/stdin/gflow_stdin_\d+_[0-9a-f]+"
                     r"\.sh) \(GPUs: 2\)\n", res.stdout)
    assert m and os.path.exists(m.group(1))
    assert job_count(d) == before  # a dry run submits nothing


# --- bad input through the installed commands ------------------------------------------------

BAD = [
    # (tool, argv, exit status, words in the one line)   — clap usage errors are rc 2
    ("gbatch", ["--gpus", "x", "echo"], 2, "'x'"),
    ("gbatch", ["--priority", "256", "echo"], 2, "256 is not in 0..=255"),
    ("gbatch", ["--gpus", "-1", "echo"], 2, "'-1'"),
    ("gbatch", ["--depends-on", "1", "--depends-on-all", "2", "echo"], 2, "--depends-on-all"),
    ("gbatch", ["-n", "a", "-J", "b", "echo"], 2, "cannot be used multiple times"),
    # DIFFERS: 0.4.13 submitted `--foo echo` as a command that hung in Running (§15.3)
    ("gbatch", ["--foo", "echo"], 2, "--foo"),
    ("gqueue", ["--foo"], 2, "--foo"),
    ("gqueue", ["--user"], 2, "--user"),
    ("gjob", ["show"], 2, "JOB"),
    ("gcancel", ["1", "2"], 2, "2"),
    ("gstats", ["-a", "-u", "x"], 2, "-u/--user"),
    # runtime parse errors (0.4.13: anyhow, rc 1)
    ("gbatch", ["-t", "1:2:3:4", "echo"], 1, "Expected formats: HH:MM:SS, MM:SS, or MM"),
    ("gbatch", ["-m", "12X", "echo"], 1, "Invalid memory format"),
    ("gbatch", ["--array", "3-1", "echo"], 1, "Array start index cannot be greater"),
    ("gbatch", ["--param", "x=1:2:0", "echo"], 1, "Step cannot be zero"),
    ("gbatch", ["-d", "@~9", "echo"], 1, "Cannot resolve dependency '@~9' for user 'tester'"),
    ("gbatch", ["-d", "9999", "echo"], 1, "Dependency job 9999 does not exist"),
    ("gbatch", ["--shared", "-g", "1", "echo"], 1, "Shared jobs must set a GPU memory limit"),
    # DIFFERS: a first word with `/` or `.sh` that names no file is refused (0.4.13 submitted
    # it and the job failed); `gbatch nvidia-smi` stays a command
    ("gbatch", ["./missing.sh"], 1, "./missing.sh"),
    ("gbatch", ["train.sh", "--lr", "1"], 1, "train.sh"),
    ("gqueue", ["-o", "xml"], 1, "Invalid output format 'xml'"),
    # DIFFERS: unknown -s names were silently dropped, which could remove the filter (§15.11)
    ("gqueue", ["-s", "Runing"], 1, "Runing"),
    ("gqueue", ["--since", "1x"], 1, "1x"),
    ("gjob", ["show", "@x"], 1, "Invalid job ID: @x"),    # DIFFERS: `gjob show @` works
    ("gjob", ["show", "3-1"], 1, "Start of the range cannot be bigger than the end: 3-1"),
    ("gjob", ["log", "@~0"], 1, "Invalid job ID: @~0"),
    ("gjob", ["log", "@~99"], 1, "Failed to resolve job ID '@~99'"),
    # DIFFERS: a missing job is an error with exit status 1 (0.4.13: message, rc 0)
    ("gjob", ["show", "9999"], 1, "Error: Job 9999 not found"),
    ("gjob", ["hold", "9999"], 1, "Error: Job 9999 not found"),
    ("gjob", ["attach", "9999"], 1, "Error: Job 9999 not found"),
    ("gjob", ["update", "9999", "-p", "1"], 1, "Error updating job 9999"),
    ("gjob", ["redo", "9999"], 1, "Job 9999 not found."),
    # DIFFERS: 0.4.13 printed "Job 9999 cancelled." and exited 0 (§15.8)
    ("gcancel", ["9999"], 1, "Error: Job 9999 not found"),
    ("gcancel", ["--dry-run", "9999"], 1, "Error: Job 9999 not found"),
    ("gctl", ["set-gpus", "7"], 1, "Invalid GPU indices [7] (only 2 GPUs detected)"),
    ("gctl", ["set-gpus", "x"], 1, "Invalid GPU index or range: x"),
    ("gctl", ["set-limit", "not-a-uuid", "5"], 1, "Invalid UUID format: 'not-a-uuid'"),
    ("gctl", ["reserve", "create", "--gpus", "1", "--start", "2030-01-01 10:15",
              "--duration", "1h"], 1, "on the hour (:00) or half-hour (:30)"),
    ("gctl", ["reserve", "create", "--gpus", "1", "--start", "2020-01-01T10:00:00Z",
              "--duration", "1h"], 1, "Start time cannot be in the past"),
    ("gctl", ["reserve", "create", "--gpus", "5", "--start", "2030-01-01T10:00:00Z",
              "--duration", "1h"], 1, "Requested 5 GPUs but only 2 GPUs available"),
    ("gctl", ["reserve", "list", "--status", "bogus"], 1, "Invalid status: bogus"),
    # DIFFERS: 0.4.13 printed "Reservation 99 not found." on stdout with exit status 0
    ("gctl", ["reserve", "get", "99"], 1, "Reservation 99 not found"),
    ("gctl", ["reserve", "cancel", "99"], 1, "Reservation 99 not found"),
    ("gstats", ["-t", "tomorrow"], 1, "tomorrow"),
]


def test_bad_input_is_one_line_with_the_right_exit_status_and_changes_nothing(d):
    status, before = d.http("GET", "/jobs")
    _, reservations = d.http("GET", "/reservations")
    for tool, argv, rc, words in BAD:
        res = d.run(tool, *argv, cwd=d.home / "work", input="")
        assert res.returncode == rc, (tool, argv, res.stdout, res.stderr)
        assert words in one_line(res), (tool, argv, res.stderr)
        assert res.stdout == "", (tool, argv, res.stdout)
    assert d.http("GET", "/jobs")[1] == before
    assert d.http("GET", "/reservations")[1] == reservations
    # a tool whose subcommand is mandatory prints its help on stderr, exit status 2
    for argv in (["gjob"], ["gctl"], ["gctl", "reserve"]):
        res = d.run(*argv)
        assert res.returncode == 2 and res.stdout == "" and res.stderr.startswith("usage:")


# --- a dependency chain with a failure (§8.3, §8.4, §10.6, §11) -------------------------------

def test_dependency_chain_with_a_failure(d):
    work = d.home / "work"
    gate = work / "go"
    wait_gate = "while [ ! -e go ]; do sleep 0.05; done; exit 3"
    p = submit(d, "--name", "parent", "bash", "-c", wait_gate)
    c1 = submit(d, "--name", "child1", "-d", "@", "true")
    c2 = submit(d, "--name", "child2", "--depends-on-any", f"{p},{c1}", "true")
    g = submit(d, "--name", "gchild", "-d", str(c1), "true")
    d.wait_state(p, "Running")
    fmt = "JOBID,NAME,ST,TIME,NODES,NODELIST(REASON)"
    ids = ",".join(map(str, (p, c1, c2, g)))
    assert clean(d.ok("gqueue", "-j", ids), times=True) == clean(layout([
        fmt.split(","),
        [str(p), "parent", "R", "HH:MM:SS", "0", ""],
        [str(c1), "child1", "PD", "-", "0", "(Dependency)"],
        [str(c2), "child2", "PD", "-", "0", "(Dependency)"],
        [str(g), "gchild", "PD", "-", "0", "(Dependency)"]]))
    # gcancel --dry-run (§11): `<id>\t<State>\tok|invalid`, then the jobs it blocks.
    # DIFFERS: 0.4.13 listed only jobs whose legacy single dependency is the id; we list
    # the whole cascade, transitively (gchild through child1), and jobs that wait on it
    # through a dependency list (child2: --depends-on-any, blocked once both are cancelled);
    # each job once, under the first id whose cancellation blocks it.
    assert d.ok("gcancel", "--dry-run", f"{p},{c1}") == (
        f"{p}\tRunning\tok\n{c1}\tQueued\tblocked\t{p}\n{c2}\tQueued\tblocked\t{p}\n"
        f"{g}\tQueued\tblocked\t{c1}\n{c1}\tQueued\tok\n")
    assert d.ok("gcancel", "--dry-run", str(c1)) == (      # child2 can still run after p
        f"{c1}\tQueued\tok\n{g}\tQueued\tblocked\t{c1}\n")
    gate.touch()
    d.wait_state(p, "Failed")
    d.wait_state(g, "Cancelled")
    d.wait_state(c2, "Cancelled")
    # DIFFERS: 0.4.13 cancelled child2 (Any on parent,child1) as soon as the parent failed,
    # with DependencyFailed:<parent>; our daemon waits until no dependency can finish and
    # names the last one that failed (child1).
    assert clean(d.ok("gqueue", "-a", "-j", ids), times=True) == clean(layout([
        fmt.split(","),
        [str(p), "parent", "F", "HH:MM:SS", "0", "-"],
        [str(c1), "child1", "CA", "-", "0", f"(DependencyFailed:{p})"],
        [str(c2), "child2", "CA", "-", "0", f"(DependencyFailed:{c1})"],
        [str(g), "gchild", "CA", "-", "0", f"(DependencyFailed:{c1})"]]))
    show = d.ok("gjob", "show", str(p))
    assert "  State=Failed (F)\n  ExitCode=3\n  Reason=exit code 3\n" in show
    gate.unlink()  # the redone parent waits again
    out = d.ok("gjob", "redo", str(p), "--cascade")
    p2, c12, c22, g2 = range(p + 4, p + 8)
    # DIFFERS: our daemon redoes the chain in one step and keeps the run names (0.4.13 gave
    # the copies default names gflow-job-<id>, §15.20).
    assert out == (f"Resubmitting job {p} with parameters:\n"
                   "  Command=bash -c 'while [ '\\!' -e go ]; do sleep 0.05; done; exit 3'\n"
                   "  GPUs=0\n  Priority=10\n\n"
                   f"Submitted batch job {p2} (parent)\n\n"
                   "Cascading to 3 dependent job(s)...\n"
                   f"  Job {c1} → Job {c12} (child1)\n"
                   f"  Job {c2} → Job {c22} (child2)\n"
                   f"  Job {g} → Job {g2} (gchild)\n\n"
                   "Cascade complete.\n")
    d.wait_state(p2, "Running")
    tree = d.ok("gqueue", "-a", "-t", "-j", f"{ids},{p2},{c12},{c22},{g2}")
    # 0.4.13 (spec §8.4) drew the redone children dashed under their originals. DIFFERS: our
    # copies keep a single dependency as the legacy `depends_on` too (as gbatch does), so
    # child1's copy hangs under the parent's copy (solid) and the originals point to it
    # with `→ see job N` rows, the reference rows 0.4.13 uses for that case.
    assert clean(tree, times=True) == clean(layout([
        fmt.split(","),
        [f"{p}", "parent", "F", "HH:MM:SS", "0", "-"],
        [f"├─{c1}", "child1", "CA", "-", "0", f"(DependencyFailed:{p})"],
        [f"│ ├─{g}", "gchild", "CA", "-", "0", f"(DependencyFailed:{c1})"],
        [f"│ │ ╰┄→ see job {g2}", "-", "-", "-", "-", "-"],
        [f"│ ╰┄→ see job {c12}", "-", "-", "-", "-", "-"],
        [f"╰┄{p2}", "parent", "R", "HH:MM:SS", "0", ""],
        [f"  ╰─{c12}", "child1", "PD", "-", "0", "(Dependency)"],
        [f"    ╰─{g2}", "gchild", "PD", "-", "0", "(Dependency)"],
        [f"{c2}", "child2", "CA", "-", "0", f"(DependencyFailed:{c1})"],
        [f"╰┄{c22}", "child2", "PD", "-", "0", "(Dependency)"]]))
    # redo of a running job, and the end of the chain
    res = d.run("gjob", "redo", str(p2))
    assert res.returncode == 1 and one_line(res) == (
        f"Job {p2} is still running. Wait for it to finish or cancel it first.")
    assert d.ok("gcancel", str(p2)) == f"Job {p2} cancelled.\n"
    d.wait_state(g2, "Cancelled")
    # DIFFERS: cancelling a job that already ended is refused (0.4.13: "cancelled.", rc 0)
    res = d.run("gcancel", str(p2))
    assert res.returncode == 1 and res.stdout == "" and f"Job {p2}" in one_line(res)


# --- queue views: formats, groups, limits, JSON (§8) ------------------------------------------

def test_custom_formats_groups_limits_and_json(d):
    a = submit(d, "--name", "limits", "-t", "0:05", "-m", "2560", "-P", "vision",
               "--gpus", "3", "true")  # 3 GPUs of 2: stays queued
    b = submit(d, "--name", "plain", "true")
    d.wait_state(b, "Finished")
    h = submit(d, "--name", "held", "--gpus", "3", "true")
    assert d.ok("gjob", "hold", str(h)) == f"Job {h} put on hold.\n"
    ids = f"{a},{b},{h}"
    out = d.ok("gqueue", "-u", "*", "-a", "-j", ids,
               "-f", "JOBID,USER,NAME,TIMELIMIT,MEMORY,PROJECT,ST")
    assert clean(out) == clean(layout([
        ["JOBID", "USER", "NAME", "TIMELIMIT", "MEMORY", "PROJECT", "ST"],
        [str(a), "tester", "limits", "00:00:05", "2.5G", "vision", "PD"],
        [str(b), "tester", "plain", "UNLIMITED", "-", "-", "CD"],
        [str(h), "tester", "held", "UNLIMITED", "-", "-", "H"]]))
    # DIFFERS: 0.4.13 printed an empty column FOO; a misspelt column is an error naming it
    res = d.run("gqueue", "-a", "-f", "JOBID,FOO")
    assert res.returncode == 1 and res.stdout == "" and "'FOO'" in one_line(res)
    assert d.ok("gqueue", "-a", "-j", ids, "-P", "vision", "-f", "JOBID,NAME") == \
        layout([["JOBID", "NAME"], [str(a), "limits"]]) + "\n"
    # DIFFERS: 0.4.13's -g dropped held jobs (§15.11)
    out = d.ok("gqueue", "-a", "-g", "-j", ids, "-f", "JOBID,NAME,ST")
    assert clean(out) == clean("\n".join([
        "Queued (1)", "─" * 60, layout([["JOBID", "NAME", "ST"], [str(a), "limits", "PD"]]), "",
        "Hold (1)", "─" * 60, layout([["JOBID", "NAME", "ST"], [str(h), "held", "H"]]), "",
        "Finished (1)", "─" * 60, layout([["JOBID", "NAME", "ST"], [str(b), "plain", "CD"]])]))
    # DIFFERS: 0.4.13's -a switched -n off (§15.11)
    out = d.ok("gqueue", "-a", "-j", ids, "-n", "-2", "-f", "JOBID")
    assert out == ("Showing last 2 of 3 jobs (use -n 0 to show all)\n\n"
                   + layout([["JOBID"], [str(b)], [str(h)]]) + "\n")
    out = d.ok("gqueue", "-j", ids, "-n", "1", "-f", "JOBID")
    assert out.startswith("Showing first 1 of 2 jobs (use --all or -n 0 to show all)\n\n")
    assert d.ok("gqueue", "-a", "-j", ids, "-r", "priority", "-N", "held,plain",
                "-f", "NAME") == layout([["NAME"], ["plain"], ["held"]]) + "\n"
    doc = json.loads(d.ok("gqueue", "-a", "-j", ids, "-o", "json"))
    assert doc["total"] == 3 and [j["id"] for j in doc["jobs"]] == [a, b, h]
    first = doc["jobs"][0]
    assert list(first)[:6] == ["id", "name", "state", "time", "gpus", "user"]
    assert first["project"] == "vision" and first["memory_mb"] == 2560
    assert first["time_limit"] == "00:00:05" and first["reason"] == "Resources"
    assert doc["jobs"][1]["exit_code"] == 0  # ours: the exit status
    assert doc["jobs"][2]["reason"] == "JobHeldUser"
    csv_lines = d.ok("gqueue", "-a", "-j", ids, "-o", "csv").splitlines()
    assert csv_lines[0] == "id,name,state,time,gpus,user,submitted_at,reason"
    assert csv_lines[2].startswith(f"{b},plain,Finished,") and csv_lines[2].endswith(",-")
    assert d.ok("gqueue", "-a", "-j", ids, "-o", "yaml").endswith("\n\n")
    assert d.ok("gqueue", "-j", "99999") == "No jobs found.\n"
    assert d.ok("gjob", "release", str(h)) == f"Job {h} released back to queue.\n"
    res = d.run("gjob", "release", str(h))
    assert res.returncode == 1 and one_line(res) == (
        f"Error: Job {h} is in state 'Queued' and cannot be released. Only Hold jobs can be "
        "released.")
    d.ok("gcancel", f"{a},{h}")


# --- gjob show / update / log / attach (§10) -------------------------------------------------

def test_show_update_log_and_attach(d):
    ids = [int(n) for n in re.findall(r"Submitted batch job (\d+)", d.ok(
        "gbatch", "--array", "1-2", "--max-concurrent", "1", "--name", "arr", "--gpus", "3",
        "bash", "-c", "echo T=$GFLOW_ARRAY_TASK_ID", cwd=d.home / "work"))]
    assert len(ids) == 2
    show = clean(d.ok("gjob", "show", str(ids[1])), times=True)
    group = d.job(ids[1])["group_id"]
    assert show.splitlines()[:-1] == [
        "Job Details:", f"  ID={ids[1]}", "  State=Queued (PD)",
        # ours: the daemon's one-sentence reason (DESIGN §2b)
        "  Reason=can never run here: needs 3 GPUs; this machine has 2", "  Priority=10",
        "  SubmittedBy=tester", f"  GroupID={group}",
        "  Command=bash -c 'echo T=$GFLOW_ARRAY_TASK_ID'", "", "Resources:", "  GPUs=3",
        "  GPUSharing=exclusive", "", "Execution:", f"  WorkingDir={d.home / 'work'}",
        "", "Dependencies:", "  TaskID=2", "", "Timing:"]
    assert re.fullmatch(r"  Submitted=\d\d/\d\d-HH:MM:SS", show.splitlines()[-1])
    two = d.ok("gjob", "show", f"{ids[0]},{ids[1]}")
    assert "\n\n" + "=" * 80 + "\n\n" in two and "TmuxSession" not in two
    # update: every field, in 0.4.13's order of UpdatedFields
    out = d.ok("gjob", "update", str(ids[0]), "-c", "echo updated", "-g", "2", "-e", "myenv",
               "-p", "99", "--param", "b=2", "--param", "a=1", "-t", "1:30:00", "-m", "4G",
               "--gpu-memory", "8G", "--depends-on-any", str(ids[1]),
               "--no-auto-cancel-on-dep-failure", "--max-concurrent", "3")
    assert out == (f"Job {ids[0]} updated successfully.\n  UpdatedFields=command, gpus, "
                   "conda_env, priority, parameters, time_limit, memory_limit_mb, "
                   "gpu_memory_limit_mb, depends_on_ids, dependency_mode, "
                   "auto_cancel_on_dependency_failure, max_concurrent\n")
    job = d.job(ids[0])
    assert (job["conda_env"], job["time_limit"], job["memory_limit_mb"]) == \
        ("myenv", {"secs": 5400, "nanos": 0}, 4096)
    # DIFFERS: the --clear-* flags were no-ops in 0.4.13 (§15.9); they clear now
    out = d.ok("gjob", "update", str(ids[0]), "--clear-conda-env", "--clear-time-limit",
               "--clear-memory-limit", "--clear-gpu-memory-limit", "--clear-max-concurrent")
    assert out == (f"Job {ids[0]} updated successfully.\n  UpdatedFields=conda_env, time_limit, "
                   "memory_limit_mb, gpu_memory_limit_mb, max_concurrent\n")
    job = d.job(ids[0])
    assert [job[k] for k in ("conda_env", "time_limit", "memory_limit_mb",
                             "gpu_memory_limit_mb", "max_concurrent")] == [None] * 5
    res = d.run("gjob", "update", str(ids[0]), "-d", str(ids[0]))
    assert res.returncode == 1 and "Circular dependency detected" in one_line(res)
    d.ok("gcancel", f"{ids[0]},{ids[1]}")
    res = d.run("gjob", "update", str(ids[0]), "-p", "1")
    assert res.returncode == 1 and one_line(res) == (
        f"Error updating job {ids[0]}: Failed to update job: Job {ids[0]} is in state "
        "'Cancelled' and cannot be updated. Only queued or held jobs can be updated.")
    # log and attach
    done = submit(d, "--name", "hello", "bash", "-c", "echo hello; echo world")
    d.wait_state(done, "Finished")
    assert d.ok("gjob", "log", str(done)) == "hello\nworld\n"
    assert d.ok("gjob", "l", "@") == "hello\nworld\n"
    res = d.run("gjob", "attach", str(done))
    assert res.returncode == 1 and "is not running" in one_line(res)
    live = submit(d, "--name", "talker", "bash", "-c",
                  "echo first; while [ ! -e stop ]; do sleep 0.05; done; echo last")
    d.wait_state(live, "Running")
    talk_err = d.home / "talk.err"
    with open(talk_err, "w") as err_out:
        proc = subprocess.Popen([tool_path("gjob"), "attach", str(live)], env=d.env,
                                stdout=subprocess.PIPE, stderr=err_out, text=True)
        wait_for(lambda: "Ctrl-C" in talk_err.read_text(), what="attach following")
        (d.home / "work" / "stop").touch()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == "first\nlast\n", talk_err.read_text()
    # With --no-forward, Ctrl-C detaches and leaves the job running (forwarding Ctrl-C to
    # the job is tested in tests/integration/test_attach.py)
    sleeper = submit(d, "--name", "sleeper", "sleep", "60")
    d.wait_state(sleeper, "Running")
    errfile = d.home / "attach.err"
    with open(errfile, "w") as err_out:
        proc = subprocess.Popen([tool_path("gjob"), "attach", "--no-forward", str(sleeper)],
                                env=d.env,
                                stdout=subprocess.PIPE, stderr=err_out, text=True)
        wait_for(lambda: "Ctrl-C" in errfile.read_text(), what="attach following")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Detached from job" in errfile.read_text()
    assert d.job(sleeper)["state"] == "Running"
    # DIFFERS: refused, pointing to `gjob log` (0.4.13 closed tmux sessions; docs/migrating.md)
    res = d.run("gjob", "close-sessions", "-a")
    assert res.returncode == 1 and "no sessions to close" in one_line(res)
    assert "gjob log" in res.stderr
    d.ok("gcancel", str(sleeper))


# --- gctl and reservations (§12) ---------------------------------------------------------------

def test_gpus_groups_and_reservations(d):
    assert d.ok("gctl", "set-gpus", "1,1") == "GPU restriction updated: only GPUs [1] will be used\n"
    assert d.ok("gctl", "show-gpus") == ("0\tavailable\trestricted\n1\tavailable\n"
                                         "allowed: 1 (from gctl set-gpus)\n")
    assert d.ok("gctl", "set-gpus", "all") == "GPU restriction removed: all GPUs are now available\n"
    out = d.ok("gbatch", "--array", "1-3", "--max-concurrent", "1", "--gpus", "3", "true")
    first = int(re.search(r"Submitted batch job (\d+)", out).group(1))
    group = re.search(r"group_id: (\S+)", out).group(1)
    assert out.splitlines()[1] == f"  (You can update the limit with: gctl set-limit {first} <N>)"
    assert d.ok("gctl", "set-limit", str(first), "5") == (
        f"Found job {first} in group '{group}'\n"
        f"Updated max_concurrency to 5 for group '{group}' (3 jobs affected)\n")
    d.ok("gcancel", f"{first}-{first + 2}")
    tz = ["--timezone", "UTC"]
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 2 * 86400))
    assert d.ok("gctl", "reserve", "create", "--user", "alice", "--gpus", "2", "--start",
                f"{day} 07:00", "--duration", "2h", *tz) == \
        "Reservation created successfully.\n  ReservationID=1\n"
    assert d.ok("gctl", "reserve", "create", "--user", "bob", "--gpu-spec", "1", "--start",
                f"{day}T09:30:00Z", "--duration", "1h30m") == \
        "Reservation created successfully.\n  ReservationID=2\n"
    res = d.run("gctl", "reserve", "create", "--gpus", "1", "--start", f"{day} 07:30",
                "--duration", "30m", *tz)
    assert res.returncode == 1 and one_line(res) == (
        "Failed to create reservation: Reservation conflicts: 0 GPUs explicitly reserved, "
        "2 GPUs reserved by count, cannot reserve 1 more (available: 2)")
    assert d.ok("gctl", "reserve", "cancel", "2") == "Reservation 2 cancelled successfully.\n"
    res = d.run("gctl", "reserve", "cancel", "2")
    assert res.returncode == 1 and one_line(res) == (
        "Failed to cancel reservation: Reservation already cancelled")
    d.ok("gbatch", "true")  # a scheduling pass: 0.4.13 then forgot cancelled reservations
    # DIFFERS: cancelled reservations stay listed (0.4.13 purged them, §15.17)
    assert d.ok("gctl", "reserve", "list", *tz) == layout([
        ["ID", "USER", "GPUS", "START", "END", "STATUS"],
        ["1", "alice", "2", f"{day} 07:00:00", f"{day} 09:00:00", "Pending"],
        ["2", "bob", "1", f"{day} 09:30:00", f"{day} 11:00:00", "Cancelled"]]) + "\n"
    assert d.ok("gctl", "reserve", "list", "--status", "PENDING", "--user", "alice",
                *tz).count("\n") == 2
    assert d.ok("gctl", "reserve", "list", "--active") == "No reservations found.\n"
    got = d.ok("gctl", "reserve", "get", "2", *tz)
    assert re.fullmatch(
        "Reservation Details:\n  ID=2\n  User=bob\n  GPUIndices=1\n"
        f"  StartTime={day} 09:30:00 UTC\n  EndTime={day} 11:00:00 UTC\n"
        "  Duration=1h 30m\n  Status=Cancelled\n"
        r"  CreatedAt=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n"
        r"  CancelledAt=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", got), got
    timeline = d.ok("gctl", "reserve", "list", "--timeline", "--from", f"{day} 06:00",
                    "--to", f"{day} 12:00", *tz).splitlines()
    # 06:00-12:00 is a 2-hour grid starting one step early (04:00); "now" lies before it
    assert re.fullmatch(r"GPU Reservations Timeline \(.* UTC\)", timeline[1])
    assert timeline[2:5] == [
        "═" * 80,
        "┃" + "─" * 19 + "┬" + "─" * 19 + "┬" + "─" * 19 + "┬" + "─" * 19,
        " " * 20 + "06:00" + " " * 15 + "08:00" + " " * 15 + "10:00" + " " * 15]
    assert timeline[6] == "alice (GPU: 2 GPUs) " + " " * 14 + "░" * 20 + " " * 30
    assert timeline[7] == "  └─ Pending (07:00→09:00)"
    # DIFFERS: a cancelled reservation is still drawn (0.4.13 had purged it)
    assert timeline[8] == "bob (GPU: GPU[1]) " + " " * 39 + "▒" * 15 + " " * 10
    assert timeline[9] == "  └─ Cancelled (09:30→11:00)"
    assert timeline[-3:] == ["Summary: 0 active, 1 pending | 0 GPUs currently reserved", "",
                             "Legend: █ Active  ░ Pending"]
    # alice's reservation holds both GPUs in two days: until then, GPU jobs without a time
    # limit wait for it (issue 23), and the later tests of this module submit such jobs.
    job = submit(d, "--gpus", "1", "true")
    time.sleep(0.3)
    assert "GPUs reserved for alice from " in d.job(job)["reason_detail"]
    d.ok("gctl", "reserve", "cancel", "1")
    d.wait_state(job, "Finished")


# --- ginfo and gstats (§9, §14) -------------------------------------------------------------

def test_info_and_stats(d):
    sleeper = submit(d, "--name", "busytest", "--gpus", "1", "sleep", "60")
    d.wait_state(sleeper, "Running")
    # 0.4.13's table first, exactly; our per-GPU table (issue 18) follows it.
    out = d.ok("ginfo")
    assert out.startswith(layout([
        ["PARTITION", "GPUS", "NODES", "STATE", "JOB(REASON)"],
        ["gpu", "1", "1", "idle", ""],
        ["gpu", "1", "0", "allocated", f"{sleeper} (busytest)"]], sep="  ") + "\n\n"), out
    assert f"gflow job {sleeper} of tester" in out, out
    d.ok("gcancel", str(sleeper))
    idle = layout([["PARTITION", "GPUS", "NODES", "STATE", "JOB(REASON)"],
                   ["gpu", "2", "0,1", "idle", ""]], sep="  ") + "\n\n"
    wait_for(lambda: d.ok("ginfo").startswith(idle), what="GPU 0 idle again")
    csv = d.ok("gstats", "-o", "csv").splitlines()
    assert csv[0] == "metric,value" and csv[1].startswith("total_jobs,")
    assert [line.split(",")[0] for line in csv[1:]] == [
        "total_jobs", "completed_jobs", "failed_jobs", "cancelled_jobs", "timeout_jobs",
        "running_jobs", "queued_jobs", "held_jobs", "avg_wait_secs", "avg_runtime_secs",
        "total_gpu_hours", "jobs_with_gpus", "avg_gpus_per_job", "peak_gpu_usage",
        "success_rate"]
    doc = json.loads(d.ok("gstats", "-o", "json", "-a", "-t", "1d"))
    assert doc["user"] is None and isinstance(doc["since"], int) and doc["failed_jobs"] >= 1
    table = d.ok("gstats")
    assert table.startswith("Usage Statistics  user: tester  since: all time  active: ")
    assert "\x1b" not in table and "\nTop Jobs by Runtime\n" in table
    empty = d.ok("gstats", "-u", "nobody")
    assert "  Total GPU-Hours: 0.0h\n" in empty  # DIFFERS: 0.4.13 printed -0.0h (§15.12)


# --- terminals, pipes and an absent daemon ---------------------------------------------------

def test_colour_only_on_a_terminal_and_never_with_no_color(d):
    import pexpect  # a test extra
    j = submit(d, "--name", "colours", "true")
    d.wait_state(j, "Finished")
    for extra, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        child = pexpect.spawn(tool_path("gqueue"), ["-a", "-j", str(j)],
                              env={**d.env, **extra}, encoding="utf-8", timeout=30)
        child.expect(pexpect.EOF)
        assert ("\x1b[2mCD\x1b[0m" in child.before) is coloured
    # DIFFERS: 0.4.13 coloured piped output too (§15.21)
    assert "\x1b" not in d.ok("gqueue", "-a", "-j", str(j))


def test_a_closed_pipe_and_an_absent_daemon_are_quiet(d):
    ids = ",".join(str(i) for i in range(1, 12))
    proc = subprocess.Popen([tool_path("gjob"), "show", ids], env=d.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=30)
    assert "Traceback" not in err and "Broken pipe" not in err
    env = dict(d.env, GFLOW_DAEMON_PORT="1")
    for argv in (["gqueue"], ["gbatch", "true"], ["gjob", "show", "1"], ["gcancel", "1"],
                 ["ginfo"], ["gctl", "show-gpus"], ["gstats"]):
        res = d.run(*argv, env=env)
        assert res.returncode == 1, argv
        assert "Could not connect to gflowd server. Is the server running?" in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) <= 2
