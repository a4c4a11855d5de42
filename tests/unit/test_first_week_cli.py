"""Issue 23, client side: what a lab noticed in its first week (cascades through gcancel,
input that can never work refused at submit, sharp edges of gjob/gqueue/gflowd/the shell,
and texts), each against a fake daemon, in process."""

from __future__ import annotations

import io
import json
import os

import pytest

from gflow.cli import gbatch, gcancel, gctl, gflowd, gjob, gqueue


# --- a fake daemon ---------------------------------------------------------------------------

class Daemon:
    """Jobs in memory; `cancel` cascades to auto-cancel dependents as the scheduler does."""

    def __init__(self, jobs=(), gpus=4):
        self.jobs = {j["id"]: j for j in jobs}
        self.gpus = gpus
        self.requests: list = []
        self.submitted: list = []

    # the Client surface the commands use
    def request(self, method, path, body=None, query=None):
        self.requests.append((method, path, body, query))
        if (method, path) == ("GET", "/info"):
            return 200, {"gpus": [{"index": i, "available": True} for i in range(self.gpus)],
                         "allowed_gpu_indices": None}
        if method == "GET" and path.startswith("/jobs/") and path.count("/") == 2:
            found = self.jobs.get(int(path.rsplit("/", 1)[1]))
            return (200, found) if found else (404, None)
        if method == "POST" and path.endswith("/cancel"):
            jid = int(path.split("/")[2])
            found = self.jobs.get(jid)
            if found is None:
                return 404, None
            if found["state"] not in ("Queued", "Hold", "Running"):
                return 409, {"error": f"Job {jid} is {found['state']}: cannot cancel it"}
            found.update(state="Cancelled", reason="CancelledByUser")
            self._cascade(jid)
            return 200, None
        return 404, None

    def _cascade(self, parent):
        for child in sorted(self.jobs.values(), key=lambda j: j["id"]):
            deps = set(child.get("depends_on_ids") or [])
            if parent in deps and child["state"] in ("Queued", "Hold") \
                    and child.get("auto_cancel_on_dependency_failure", True):
                child.update(state="Cancelled", reason={"DependencyFailed": parent})
                self._cascade(child["id"])

    def call(self, method, path, body=None, query=None, ok=(200, 201)):
        status, answer = self.request(method, path, body, query)
        assert status in ok, (status, answer)
        return answer

    def get_job(self, job_id):
        status, body = self.request("GET", f"/jobs/{job_id}")
        return body if status == 200 else None

    def list_jobs(self, *, states=None, users=None, created_after=None, limit=None,
                  offset=None):
        self.requests.append(("LIST", states, users))
        return [j for _, j in sorted(self.jobs.items())
                if states is None or j["state"] in states]

    def action(self, job_id, action):
        return self.request("POST", f"/jobs/{job_id}/{action}")

    def resolve(self, user, shorthand):
        return max(self.jobs)

    def submit(self, job):
        self.submitted.append(job)
        return {"id": 41, "run_name": job["run_name"] or "gflow-job-41"}

    def submit_batch(self, jobs):
        self.submitted.extend(jobs)
        return [{"id": 41 + n, "run_name": j["run_name"] or f"gflow-job-{41 + n}"}
                for n, j in enumerate(jobs)]


def job(id, state="Queued", deps=(), **kw):
    j = {"id": id, "state": state, "run_name": f"gflow-job-{id}", "gpus": 0, "priority": 10,
         "submitted_by": "tester", "depends_on": deps[0] if len(deps) == 1 else None,
         "depends_on_ids": list(deps), "dependency_mode": "All" if deps else None,
         "auto_cancel_on_dependency_failure": True, "reason": None, "script": None,
         "command": "echo hi", "conda_env": None, "time_limit": None, "memory_limit_mb": None,
         "gpu_memory_limit_mb": None, "gpu_sharing_mode": "Exclusive", "parameters": {},
         "gpu_ids": None, "run_dir": "/tmp", "task_id": None, "submitted_at": None,
         "started_at": None, "finished_at": None, "redone_from": None, "project": None,
         "group_id": None}
    j.update(kw)
    return j


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USER", "tester")
    for var in list(os.environ):
        if var.startswith(("GFLOW_", "XDG_")) or var in ("CONDA_DEFAULT_ENV", "CONDA_EXE",
                                                         "NO_COLOR"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def daemon(monkeypatch):
    d = Daemon()
    for mod in (gqueue, gjob, gcancel, gctl):
        monkeypatch.setattr(mod, "client_for", lambda args, c=d: c)
    monkeypatch.setattr(gbatch, "Client", type("FakeClient", (gbatch.Client,), {
        "__new__": lambda cls, *a, **k: d}))
    monkeypatch.setattr(gbatch.Client, "from_config", classmethod(lambda cls, config: d))
    return d


TOOLS = {"gbatch": gbatch, "gcancel": gcancel, "gctl": gctl, "gjob": gjob, "gqueue": gqueue,
         "gflowd": gflowd}


def run(capsys, tool, *argv):
    rc = TOOLS[tool].main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- gcancel over a dependency chain -----------------------------------------------------------

def chain(daemon):
    """5 runs; 6 is unrelated; 7 waits on 5 and 8 on 7 (both auto-cancel)."""
    daemon.jobs = {5: job(5, "Running"), 6: job(6), 7: job(7, deps=[5]), 8: job(8, deps=[7])}


@pytest.mark.parametrize("ids", ["5-8", "7,5", "8,5"])
def test_gcancel_counts_what_its_own_cascade_cancelled(capsys, daemon, ids):
    chain(daemon)
    rc, out, err = run(capsys, "gcancel", ids)
    assert (rc, err) == (0, ""), (out, err)
    lines = out.splitlines()
    assert lines[0] == "Job 5 cancelled."
    wanted = [int(i) for i in ids.replace("5-8", "5,6,7,8").split(",")]
    for jid in (7, 8):
        if jid in wanted:
            assert any(line.startswith(f"Job {jid} cancelled") for line in lines), out


def test_gcancel_still_refuses_jobs_that_ended_before(capsys, daemon):
    daemon.jobs = {5: job(5, "Cancelled", reason="CancelledByUser"),
                   7: job(7, "Cancelled", deps=[5], reason={"DependencyFailed": 5}),
                   9: job(9, "Finished")}
    rc, out, err = run(capsys, "gcancel", "5,7,9")
    assert rc == 1 and out == ""
    assert err.splitlines() == ["Error: Job 5 is Cancelled: cannot cancel it",
                                "Error: Job 7 is Cancelled: cannot cancel it",
                                "Error: Job 9 is Finished: cannot cancel it"]


def test_gcancel_dry_run_shows_the_whole_cascade(capsys, daemon):
    chain(daemon)
    daemon.jobs[9] = job(9, deps=[8], auto_cancel_on_dependency_failure=False)
    rc, out, err = run(capsys, "gcancel", "--dry-run", "5")
    assert (rc, err) == (0, "")
    assert out == "5\tRunning\tok\n7\tQueued\tblocked\t5\n8\tQueued\tblocked\t7\n" \
                  "9\tQueued\tblocked\t8\n"
    assert all(j["state"] != "Cancelled" for j in daemon.jobs.values())


def test_bare_gcancel_does_not_advertise_the_hidden_flags(capsys, daemon):
    rc, out, err = run(capsys, "gcancel")
    line = one_line(err)
    assert rc == 1 and "--finish" not in line and "--fail" not in line and "IDS" in line


# --- input that can never work -----------------------------------------------------------------

@pytest.mark.parametrize("argv,rc,words", [
    (["--array", "1-3", "--max-concurrent", "0", "true"], 2, "--max-concurrent"),
    (["--param", "lr=1", "echo", "{lrr}"], 1, "{lrr}"),
    (["--param", "lr=1", "--name-template", "{nope}", "echo", "{lr}"], 1, "{nope}"),
    (["--shared", "--gpu-memory", "1G", "true"], 1, "--gpus"),
    (["-t", "0", "true"], 1, "at least"),
    (["-t", "25:99:99", "true"], 1, "59"),
    (["-t", "5:60", "true"], 1, "59"),
    (["-m", "-5G", "true"], 1, "memory must be positive"),
    (["--memory", "-5G", "true"], 1, "memory must be positive"),
    (["-m", "0", "true"], 1, "memory must be positive"),
])
def test_gbatch_refuses_what_can_never_run(capsys, daemon, argv, rc, words):
    got, out, err = run(capsys, "gbatch", *argv)
    assert got == rc, (out, err)
    assert words in one_line(err)
    assert daemon.submitted == [] and out == ""


def test_gbatch_still_takes_long_minutes_and_hours(capsys, daemon):
    rc, out, err = run(capsys, "gbatch", "-t", "90:30", "true")
    assert rc == 0 and daemon.submitted[-1]["time_limit"]["secs"] == 90 * 60 + 30
    rc, out, err = run(capsys, "gbatch", "-t", "25:59:59", "true")
    assert rc == 0 and daemon.submitted[-1]["time_limit"]["secs"] == 25 * 3600 + 59 * 60 + 59
    rc, out, err = run(capsys, "gbatch", "--param", "lr=1", "echo", "{lr}", "a{1}", "{ x}")
    assert rc == 0, err
    # the launcher substitutes every {name} of a sweep's command: ${HOME} would fail the job
    rc, out, err = run(capsys, "gbatch", "--param", "lr=1", "echo", "{lr}", "${HOME}")
    assert rc == 1 and "{HOME}" in one_line(err)


def test_gctl_set_limit_zero_is_refused(capsys, daemon):
    rc, out, err = run(capsys, "gctl", "set-limit", "3", "0")
    assert rc == 2 and "0" in one_line(err) and "never" in one_line(err)
    assert daemon.requests == []


def test_gbatch_warns_about_more_gpus_than_the_machine_has(capsys, daemon):
    rc, out, err = run(capsys, "gbatch", "--gpus", "99", "true")
    assert rc == 0 and out == "Submitted batch job 41 (gflow-job-41)\n"
    assert "99 GPUs" in one_line(err) and "4" in one_line(err)
    rc, out, err = run(capsys, "gbatch", "--gpus", "4", "true")
    assert (rc, err) == (0, "")


def test_gbatch_refuses_a_script_with_dos_line_breaks(capsys, daemon, tmp_path):
    (tmp_path / "dos.sh").write_bytes(b"#!/bin/bash\r\necho hi\r\n")
    rc, out, err = run(capsys, "gbatch", "dos.sh")
    assert rc == 1 and "DOS line breaks (\\r\\n)" in one_line(err)
    assert daemon.submitted == []


def test_gbatch_warns_when_conda_is_missing(capsys, daemon, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    rc, out, err = run(capsys, "gbatch", "--conda-env", "torch", "/bin/true")
    assert rc == 0 and "conda" in one_line(err) and "torch" in one_line(err)
    (tmp_path / "conda").write_text("#!/bin/sh\n")
    (tmp_path / "conda").chmod(0o755)
    rc, out, err = run(capsys, "gbatch", "--conda-env", "torch", "/bin/true")
    assert (rc, err) == (0, "")


# --- gjob ----------------------------------------------------------------------------------------

def test_gjob_show_takes_at_shorthands(capsys, daemon):
    daemon.jobs = {3: job(3, "Finished"), 4: job(4)}
    rc, out, err = run(capsys, "gjob", "show", "@")
    assert (rc, err) == (0, "") and out.startswith("Job Details:\n  ID=4\n")


def test_gjob_show_of_a_huge_range_summarises_the_missing(capsys, daemon):
    daemon.jobs = {150: job(150), 152: job(152, "Finished")}
    rc, out, err = run(capsys, "gjob", "show", "150-100000")
    assert rc == 1
    assert out.count("Job Details:") == 2
    line = one_line(err)
    assert "151" in line and "153-100000" in line and "99849 jobs not found" in line
    assert len([r for r in daemon.requests if r[0] == "GET"]) < 10


def test_gjob_close_sessions_refuses_and_points_to_the_log(capsys, daemon):
    rc, out, err = run(capsys, "gjob", "close-sessions", "-a")
    assert rc == 1 and "gjob log" in one_line(err)
    rc, out, err = run(capsys, "gjob", "close-sessions")
    assert rc == 2 and "no filters" in one_line(err)


def test_gjob_attach_to_a_finished_job_points_to_the_log(capsys, daemon):
    daemon.jobs = {3: job(3, "Finished")}
    rc, out, err = run(capsys, "gjob", "attach", "3")
    assert rc == 1 and "gjob log 3" in one_line(err)


# --- gqueue ------------------------------------------------------------------------------------

def test_gqueue_refuses_an_unknown_column(capsys, daemon):
    rc, out, err = run(capsys, "gqueue", "-f", "JOBID,BADCOL")
    assert rc == 1 and out == "" and "BADCOL" in one_line(err)
    assert daemon.requests == []


def test_gqueue_watch_into_a_pipe_writes_no_screen_escapes(capsys, daemon, monkeypatch):
    daemon.jobs = {1: job(1)}
    calls = []

    def sleep(secs):
        calls.append(secs)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(gqueue.time, "sleep", sleep)
    rc, out, err = run(capsys, "gqueue", "-w", "--interval", "1")
    assert rc == 130
    assert "\x1b" not in out and out.count("Last updated:") == 2


# --- gbatch texts --------------------------------------------------------------------------------

def test_gbatch_new_says_what_it_wrote(capsys, tmp_path):
    from gflow.cli.templates import JOB_SCRIPT_TEMPLATE
    rc, out, err = run(capsys, "gbatch", "new", "train")
    assert rc == 0 and "train.sh" in out and err == ""
    assert (tmp_path / "train.sh").read_text() == JOB_SCRIPT_TEMPLATE
    assert "seconds as number" not in JOB_SCRIPT_TEMPLATE
    assert '"MM" (minutes)' in JOB_SCRIPT_TEMPLATE or "minutes" in JOB_SCRIPT_TEMPLATE.split(
        "--time=")[1].splitlines()[1]


def test_gbatch_dry_run_shows_name_time_memory_and_priority(capsys):
    rc, out, err = run(capsys, "gbatch", "--dry-run", "-n", "exp1", "-t", "1:30:00", "-m", "2G",
                       "-p", "50", "--gpus", "1", "python", "x.py")
    assert (rc, err) == (0, "")
    assert out == ("Would submit 1 batch job:\n  [1] python x.py (GPUs: 1, name: exp1, "
                   "time: 01:30:00, memory: 2G, priority: 50)\n")


# --- Rust-isms -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["-t", "abc", "true"], ["-m", "12X", "true"],
                                  ["--gpus", "-1", "true"], ["--gpus", "99999999999", "true"]])
def test_gbatch_errors_are_plain_sentences(capsys, argv):
    rc, out, err = run(capsys, "gbatch", "--dry-run", *argv)
    line = one_line(err)
    assert rc in (1, 2)
    for rustism in ("invalid digit found in string", "0..=4294967295",
                    "cannot parse integer", "to fit in target type"):
        assert rustism not in line


# --- the shell completes finished jobs for log/show/redo -------------------------------------

def test_shell_completes_finished_jobs_where_they_are_wanted(monkeypatch):
    from gflow.shell.complete import ANY_JOB, JOB, QUEUED_JOB, analyse
    parser = gjob.build_parser()
    for sub in ("log", "l", "show", "s", "redo"):
        assert analyse(parser, [sub]).what == ANY_JOB, sub
    assert analyse(parser, ["hold"]).what == QUEUED_JOB
    assert analyse(parser, ["redo", "-d"]).what == JOB        # a dependency: a live job
    assert analyse(gcancel.build_parser(), []).what == JOB


def test_shell_lookup_of_any_job_includes_finished_ones(monkeypatch, tmp_path):
    from gflow.config import Config
    from gflow.shell.app import GflowShell
    from gflow.shell.complete import ANY_JOB, JOB
    shell = GflowShell(config=Config(), stdin=io.StringIO(), stdout=io.StringIO(),
                       interactive=False)
    jobs = [job(1, "Finished"), job(2, "Running"), job(3, "Failed")]

    def fetch(path, query=None):
        states = (query or {}).get("state")
        return [j for j in jobs if not states or j["state"] in states.split(",")]

    monkeypatch.setattr(shell, "_fetch", fetch)
    assert [c.text for c in shell._lookup(ANY_JOB)] == ["3", "2", "1"]
    assert [c.text for c in shell._lookup(JOB)] == ["2"]


# --- a non-gflow server ------------------------------------------------------------------------

def test_an_html_answer_is_one_clear_line(capsys, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Html(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<!DOCTYPE html><html><body><h1>It works</h1>\n<p>nginx</p></body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("GFLOW_DAEMON_HOST", "127.0.0.1")
        monkeypatch.setenv("GFLOW_DAEMON_PORT", str(port))
        rc = gjob.main(["show", "1"])
        out, err = capsys.readouterr()
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 1
    assert one_line(err) == f"127.0.0.1:{port} answered with HTML: is it gflowd?"


# --- gflowd ---------------------------------------------------------------------------------------

def test_gflowd_status_exits_3_when_stopped(capsys):
    rc, out, err = run(capsys, "gflowd", "status")
    assert rc == 3 and out.splitlines()[0] == "Status: Not running"


def test_gflowd_status_asks_where_the_lock_says_it_listens(capsys, monkeypatch, tmp_path):
    import fcntl
    data = tmp_path / ".local" / "share" / "gflow"
    data.mkdir(parents=True)
    fd = os.open(data / "gflowd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    asked = []

    def health(self):
        asked.append((self.host, self.port))
        return 200, {"pid": os.getpid(), "status": "ok", "uptime_secs": 5, "version": "x",
                     "gpus": 2, "gpu_source": "fake"}

    monkeypatch.setattr(gflowd.Client, "health", health)
    monkeypatch.setenv("GFLOW_DAEMON_PORT", "61234")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": "127.0.0.1",
                                 "port": 60123}).encode())
        rc, out, err = run(capsys, "gflowd", "status")
    finally:
        os.close(fd)
    assert rc == 0, (out, err)
    assert asked == [("127.0.0.1", 60123)]
    assert "Status: Running" in out and "Listening: http://127.0.0.1:60123" in out
    assert "61234" in err


def test_gflowd_cleanup_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        gflowd.build_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "job logs, the job state and the configuration are kept" in out


def test_init_wizard_asks_for_another_port_when_told_no(monkeypatch, capsys, tmp_path):
    from gflow.cli import init_wizard
    busy = {59000}
    monkeypatch.setattr(init_wizard, "port_looks_available", lambda host, port: port not in busy)
    answers = iter(["", "59000", "n", "59001"])
    wizard = init_wizard.Wizard(type("A", (), {})(), init_wizard.Settings(),
                                init_wizard.Detected(), None, tmp_path / "g.toml",
                                read=lambda prompt: next(answers))
    wizard.step_network()
    assert wizard.s.port == 59001
