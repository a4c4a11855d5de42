"""The security review's client findings, each as the attack and the refusal or the escaped
output: private stdin scripts, size limits checked before anything is built, control
characters from the daemon escaped on every output, one-line log records, and the
non-loopback warning decided on addresses."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import subprocess
import sys

import pytest

from gflow import logutil
from gflow.cli import gbatch, gflowd, ginfo, gjob, gqueue, gstats, render

# Every control character (C0, DEL, C1) but the newline that ends a line.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# Retitles the terminal, clears the screen, then a one-byte CSI and a forged line.
EVIL = "\x1b]0;owned\x07\x1b[2Jx\x9b31m\nFAKE\tline\x7f"
EVIL_SHOWN = r"\x1b]0;owned\x07\x1b[2Jx\x9b31m\x0aFAKE\x09line\x7f"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USER", "tester")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "GFLOW_DAEMON_HOST", "GFLOW_DAEMON_PORT",
                "GFLOW_TIMEZONE", "CONDA_DEFAULT_ENV", "NO_COLOR", "GFLOW_LOG", "RUST_LOG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


class Recorder:
    """Stands in for the daemon's client in gbatch: records what would be submitted."""

    def __init__(self):
        self.single: list = []
        self.batches: list = []

    def submit(self, job):
        self.single.append(job)
        return {"id": 1, "run_name": job.get("run_name") or "gflow-job-1"}

    def submit_batch(self, jobs):
        self.batches.append(jobs)
        return [{"id": n, "run_name": "x"} for n, _ in enumerate(jobs, start=1)]


@pytest.fixture
def rec(monkeypatch):
    r = Recorder()
    monkeypatch.setattr(gbatch, "Client", type("RecClient", (gbatch.Client,), {
        "__new__": lambda cls, *a, **k: r}))
    return r


def run(capsys, module, *argv):
    rc = module.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- 1. scripts read from stdin --------------------------------------------------------------

def test_stdin_script_is_private_and_not_in_tmp(capsys, rec, monkeypatch, tmp_path):
    # The attack on 0.4.13's $TMPDIR/gflow_stdin_<micros>.sh: the name is predictable, so
    # another user plants it first (here a symlink to a file of theirs); the script was
    # also world-readable (0755).
    shared_tmp = tmp_path / "shared-tmp"
    shared_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(shared_tmp))
    monkeypatch.setattr(gbatch.time, "time", lambda: 1700000000.0)
    planted = shared_tmp / "gflow_stdin_1700000000000000.sh"
    os.symlink(tmp_path / "attacker-owned.sh", planted)
    content = "#!/bin/bash\n# GFLOW --gpus=1\necho secret-token-123\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(content))
    rc, out, err = run(capsys, gbatch, "-")
    assert (rc, err) == (0, ""), err
    script = rec.single[-1]["script"]
    directory = tmp_path / ".local" / "share" / "gflow" / "stdin"
    assert os.path.dirname(script) == str(directory)
    assert re.fullmatch(r"gflow_stdin_\d+_[0-9a-f]{8}\.sh", os.path.basename(script))
    assert sorted(os.listdir(shared_tmp)) == [planted.name]          # nothing written there
    assert not (tmp_path / "attacker-owned.sh").exists()
    st_dir, st_file = os.lstat(directory), os.lstat(script)
    assert stat.S_ISDIR(st_dir.st_mode) and stat.S_IMODE(st_dir.st_mode) == 0o700
    assert stat.S_ISREG(st_file.st_mode) and stat.S_IMODE(st_file.st_mode) == 0o700  # `#!`
    assert st_dir.st_uid == st_file.st_uid == os.geteuid()
    with open(script) as f:
        assert f.read() == content
    assert rec.single[-1]["gpus"] == 1                                # directives still read
    # Without `#!` the launcher runs it with bash, so it need not be executable: 0600.
    monkeypatch.setattr(sys, "stdin", io.StringIO("echo plain\n"))
    assert run(capsys, gbatch, "-")[0] == 0
    second = rec.single[-1]["script"]
    assert second != script and stat.S_IMODE(os.lstat(second).st_mode) == 0o600


def test_stdin_script_refuses_a_symlinked_directory(capsys, rec, monkeypatch, tmp_path):
    data = tmp_path / ".local" / "share" / "gflow"
    data.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, data / "stdin")
    monkeypatch.setattr(sys, "stdin", io.StringIO("echo hi\n"))
    rc, out, err = run(capsys, gbatch, "-")
    assert rc == 1 and one_line(err).startswith(f"Error: cannot use {data / 'stdin'} ")
    assert os.listdir(elsewhere) == [] and rec.single == []


def test_stdin_script_directory_is_made_private_again(capsys, rec, monkeypatch, tmp_path):
    directory = tmp_path / ".local" / "share" / "gflow" / "stdin"
    directory.mkdir(parents=True)
    directory.chmod(0o777)
    monkeypatch.setattr(sys, "stdin", io.StringIO("echo hi\n"))
    assert run(capsys, gbatch, "-")[0] == 0
    assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_stdin_script_refuses_a_directory_of_someone_else(capsys, rec, monkeypatch, tmp_path):
    directory = tmp_path / ".local" / "share" / "gflow" / "stdin"
    directory.mkdir(parents=True, mode=0o700)
    os.chown(directory, 4242, 4242)
    monkeypatch.setattr(sys, "stdin", io.StringIO("echo hi\n"))
    rc, out, err = run(capsys, gbatch, "-")
    assert rc == 1 and one_line(err) == (
        f"Error: refusing to write the script read from stdin into {directory}: it belongs "
        "to uid 4242, not to you")
    assert os.listdir(directory) == []


# --- 2. sizes ----------------------------------------------------------------------------------

def capped_gbatch(tmp_path, *argv) -> subprocess.CompletedProcess:
    """gbatch in a child whose address space is capped at 1 GiB: were the jobs built before
    the check (22 GB for `--array 1-10000000` before the fix), it would end in a
    MemoryError, not in the one-line refusal, and never take the test runner with it."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
            "from gflow.cli import gbatch; sys.exit(gbatch.main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GFLOW_", "XDG_"))}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120, env=dict(env, HOME=str(tmp_path)), cwd=tmp_path)


@pytest.mark.parametrize("argv,message", [
    (["--array", "1-10000000"],
     "--array 1-10000000 has 10000000 tasks; at most 10000 per submission"),
    (["--array", "0-4294967295"],              # u32 bounds: counted, never expanded
     "--array 0-4294967295 has 4294967296 tasks; at most 10000 per submission"),
    (["--param", "a=1:10000", "--param", "b=1:10000"],
     "--param give 100000000 jobs; at most 10000 per submission"),
])
def test_huge_submissions_are_refused_before_they_are_built(tmp_path, argv, message):
    res = capped_gbatch(tmp_path, "--dry-run", *argv, "echo", "{a}{b}")
    assert (res.returncode, res.stdout) == (1, ""), res.stderr[-2000:]
    assert one_line(res.stderr) == "Error: " + message


def test_array_limit_boundaries(capsys, rec):
    rc, out, err = run(capsys, gbatch, "--array", "0-10000", "true")
    assert rc == 1 and one_line(err) == (
        "Error: --array 0-10000 has 10001 tasks; at most 10000 per submission")
    assert rec.batches == [] and gbatch.MAX_JOBS_PER_SUBMISSION == 10_000
    rc, out, err = run(capsys, gbatch, "--dry-run", "--array", "1-10000", "true")
    assert rc == 0 and out.startswith("Would submit 10000 array job(s):\n")


def test_sweep_limit_boundaries(capsys, rec, tmp_path):
    (tmp_path / "p.csv").write_text("x\n" + "".join(f"{n}\n" for n in range(10_001)))
    rc, out, err = run(capsys, gbatch, "--param-file", "p.csv", "echo", "{x}")
    assert rc == 1 and one_line(err) == (
        "Error: p.csv has more than 10000 rows; at most 10000 jobs per submission")
    (tmp_path / "q.csv").write_text("x\n1\n2\n")
    # 2 rows x 5000 values is exactly the limit: allowed; one more value is not.
    rc, out, err = run(capsys, gbatch, "--dry-run", "--param-file", "q.csv", "--param",
                       "y=1:5000", "echo", "{x}", "{y}")
    assert rc == 0 and out.startswith("Would submit 10000 batch job(s):\n"), err
    rc, out, err = run(capsys, gbatch, "--param-file", "q.csv", "--param", "y=1:5001",
                       "echo", "{x}", "{y}")
    assert rc == 1 and one_line(err) == (
        "Error: --param-file and --param give 10002 jobs; at most 10000 per submission")


def test_command_and_environment_over_1_mib_are_refused(capsys, rec, monkeypatch):
    big = "x" * (1 << 20)
    rc, out, err = run(capsys, gbatch, "--dry-run", "echo", big)
    assert rc == 1 and one_line(err) == (
        f"Error: the command is {len('echo ') + len(big)} bytes; at most 1048576 (1 MiB) "
        "per job")
    assert run(capsys, gbatch, "--dry-run", "echo", "x" * 1000)[0] == 0
    monkeypatch.setenv("HUGE", big)
    rc, out, err = run(capsys, gbatch, "true")
    size = gbatch.env_bytes(dict(os.environ))
    assert size > 1 << 20 and rec.single == []
    assert rc == 1 and one_line(err) == (
        f"Error: your environment is {size} bytes; at most 1048576 (1 MiB) is sent with a job: "
        "unset the large variables or use --export=NONE")
    assert run(capsys, gbatch, "--export=NONE", "true")[0] == 0    # the way out works
    assert "env" not in rec.single[-1]


# --- 3. control characters from the daemon ---------------------------------------------------

def test_safe_escapes_every_control_character_and_nothing_else():
    for code in [*range(0x20), *range(0x7f, 0xa0)]:
        assert render.safe(f"a{chr(code)}b") == f"a\\x{code:02x}b"
        assert logutil.escape_controls(f"a{chr(code)}b") == f"a\\x{code:02x}b"
    normal = "gflow-job-7 lr=0.1 /home/a b\\c é 日本 ─ ○ \u00a0"
    assert render.safe(normal) is normal and logutil.escape_controls(normal) == normal
    assert render.safe(EVIL) == EVIL_SHOWN
    assert logutil.escape_controls("a\tb\nc", keep="\n") == "a\\x09b\nc"


class FakeClient:
    def __init__(self, jobs, info=None, stats=None):
        self.jobs = {j["id"]: j for j in jobs}
        self.info, self.stats = info, stats

    def list_jobs(self, **kw):
        return list(self.jobs.values())

    def get_job(self, job_id):
        return self.jobs.get(job_id)

    def call(self, method, path, body=None, query=None):
        return {"/info": self.info, "/stats": self.stats}[path]


def evil_job(**kw):
    j = {"id": 7, "state": "Queued", "run_name": "run" + EVIL, "gpus": 1, "priority": 10,
         "submitted_by": "mallory" + EVIL, "depends_on": None, "depends_on_ids": [],
         "dependency_mode": None, "auto_cancel_on_dependency_failure": True,
         "reason": {"SystemError": "oops" + EVIL}, "reason_detail": "detail" + EVIL,
         "script": None, "command": "echo" + EVIL, "conda_env": "env" + EVIL,
         "time_limit": None, "memory_limit_mb": None, "gpu_memory_limit_mb": None,
         "gpu_sharing_mode": "Exclusive", "parameters": {"p": "v" + EVIL},
         "gpu_ids": None, "run_dir": "/work" + EVIL, "task_id": None,
         "submitted_at": None, "started_at": None, "finished_at": None, "redone_from": None,
         "project": "proj" + EVIL, "group_id": "group" + EVIL, "exit_code": None}
    j.update(kw)
    return j


def use(monkeypatch, client):
    for mod in (gqueue, gjob, ginfo, gstats):
        monkeypatch.setattr(mod, "client_for", lambda args, c=client: c)


def test_gqueue_table_escapes_daemon_text(capsys, monkeypatch):
    use(monkeypatch, FakeClient([evil_job()]))
    rc, out, err = run(capsys, gqueue, "-u", "all", "-f",
                       "JOBID,NAME,ST,USER,PROJECT,NODELIST(REASON)")
    assert rc == 0 and not RAW_CONTROL.search(out)
    lines = out.splitlines()
    assert len(lines) == 2                                         # header + one job row
    assert "run" + EVIL_SHOWN in lines[1] and "mallory" + EVIL_SHOWN in lines[1]
    assert "proj" + EVIL_SHOWN in lines[1] and "(SystemError:oops" + EVIL_SHOWN in lines[1]
    # A normal job is unchanged: same cells as the 0.4.13 transcripts.
    plain = evil_job(run_name="train", submitted_by="alice", project=None, reason=None)
    assert gqueue.cell(plain, "NAME", False, 0) == "train"
    assert gqueue.cell(plain, "NODELIST(REASON)", False, 0) == "(Resources)"


def test_gqueue_machine_outputs_keep_the_data_but_no_raw_controls(capsys, monkeypatch):
    use(monkeypatch, FakeClient([evil_job()]))
    rc, out, err = run(capsys, gqueue, "-u", "all", "-o", "json")
    assert rc == 0 and not RAW_CONTROL.search(out)
    assert json.loads(out)["jobs"][0]["name"] == "run" + EVIL     # the value is intact
    rc, out, err = run(capsys, gqueue, "-u", "all", "-o", "csv")
    assert rc == 0 and not RAW_CONTROL.search(out) and len(out.splitlines()) == 2
    assert "run" + EVIL_SHOWN in out
    rc, out, err = run(capsys, gqueue, "-u", "all", "-o", "yaml")
    assert rc == 0 and not RAW_CONTROL.search(out)
    import yaml  # PyYAML: schemathesis (a test extra) requires it
    assert yaml.safe_load(out)["jobs"][0]["name"] == "run" + EVIL


def test_gjob_show_escapes_daemon_text(capsys, monkeypatch):
    use(monkeypatch, FakeClient([evil_job(), evil_job(id=8, **{k: "x" for k in (
        "run_name", "submitted_by", "command", "conda_env", "run_dir", "project",
        "group_id", "reason_detail")}, parameters={"p": "v"})]))
    rc, out, err = run(capsys, gjob, "show", "7")
    assert rc == 0 and not RAW_CONTROL.search(out)
    assert "  SubmittedBy=mallory" + EVIL_SHOWN in out.splitlines()
    assert "  Reason=detail" + EVIL_SHOWN in out.splitlines()
    rc, plain, err = run(capsys, gjob, "show", "8")
    assert len(out.splitlines()) == len(plain.splitlines())       # no forged lines


def test_ginfo_and_gstats_escape_daemon_text(capsys, monkeypatch):
    running = evil_job(state="Running", gpu_ids=[0])
    info = {"gpus": [{"index": 0, "available": False},
                     {"index": 1, "available": False, "reason": "held" + EVIL}]}
    stats = {"total_jobs": 1, "user": "mallory" + EVIL,
             "top_jobs": [{"id": 7, "name": "n" + EVIL, "runtime_secs": 5, "gpus": 1}]}
    use(monkeypatch, FakeClient([running], info=info, stats=stats))
    rc, out, err = run(capsys, ginfo)
    assert rc == 0 and not RAW_CONTROL.search(out) and len(out.splitlines()) == 3
    assert "7 (run" + EVIL_SHOWN + ")" in out and "(held" + EVIL_SHOWN + ")" in out
    rc, out, err = run(capsys, gstats, "-u", "all")
    assert rc == 0 and not RAW_CONTROL.search(out)
    assert "user: mallory" + EVIL_SHOWN in out and "n" + EVIL_SHOWN[:30] in out
    rc, out, err = run(capsys, gstats, "-u", "all", "-o", "json")
    assert rc == 0 and not RAW_CONTROL.search(out)
    assert json.loads(out)["top_jobs"][0]["name"] == "n" + EVIL


def test_daemon_error_text_is_escaped():
    from gflow.cli.common import api_text
    assert api_text(400, {"error": "bad name " + EVIL}) == "bad name " + EVIL_SHOWN


def test_log_records_stay_on_one_line(tmp_path):
    # `submitted_by` is the client's word: a newline in it forged a whole gflowd.log line.
    path = tmp_path / "gflowd.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logutil.configure_daemon_logging(logging.INFO, path, process_name="scheduler",
                                         stderr_is_log=True)
        forged = "tester\n2026-01-01 00:00:00,000 INFO master gflow.scheduler: job 1 finished"
        logging.getLogger("gflow.scheduler").info("job %d scheduled gpus=%s user=%s", 3, "0",
                                                  forged + "\x1b[2J")
        try:
            raise ValueError("boom\x1b[2J")
        except ValueError:
            logging.getLogger("gflow.scheduler").exception("failed %s", "x\ry")
        for handler in root.handlers:
            handler.flush()
        text = path.read_text()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
    lines = text.splitlines()
    assert lines[0].endswith(" INFO scheduler gflow.scheduler: job 3 scheduled gpus=0 "
                             "user=tester\\x0a2026-01-01 00:00:00,000 INFO master "
                             "gflow.scheduler: job 1 finished\\x1b[2J")
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert lines[1].endswith(" ERROR scheduler gflow.scheduler: failed x\\x0dy")
    assert lines[2] == "Traceback (most recent call last):"     # tracebacks keep their lines
    assert lines[-1] == "ValueError: boom\\x1b[2J" and "\x1b" not in text


def test_client_log_records_are_escaped(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logutil.configure_client_logging(logging.DEBUG)
        logging.getLogger("gflow.client").debug("GET %s", "/jobs\x1b[2J\nforged")
    finally:
        root.handlers[:], root.level = saved
    err = capsys.readouterr().err
    assert err.endswith("gflow.client: GET /jobs\\x1b[2J\\x0aforged\n")


# --- 4. the non-loopback warning of `gflowd up` -----------------------------------------------

@pytest.mark.parametrize("host,warn", [
    ("127.0.0.1", False), ("127.0.0.2", False), ("127.255.255.254", False), ("::1", False),
    ("[::1]", False), ("::ffff:127.0.0.1", False),
    ("0.0.0.0", True), ("::", True), ("", True), ("10.1.2.3", True), ("192.168.0.7", True),
    ("fe80::1%lo", True), ("2001:db8::1", True),
])
def test_loopback_is_decided_on_addresses(host, warn):
    assert gflowd.beyond_loopback(host) is warn


def test_names_are_resolved_and_every_address_must_be_loopback(monkeypatch):
    import socket

    answers = {"localhost": ["127.0.0.1", "::1"], "lab": ["127.0.0.1", "192.168.1.5"],
               "local6": ["::1"]}

    def fake_getaddrinfo(host, port, *a, **kw):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, 0)) for ip in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert gflowd.beyond_loopback("localhost") is False
    assert gflowd.beyond_loopback("local6") is False
    assert gflowd.beyond_loopback("lab") is True          # one address is not loopback
    assert gflowd.beyond_loopback("nowhere.invalid") is True   # unknown: not trusted
    answers["localhost"] = ["10.0.0.8"]                   # a hosts file that lies
    assert gflowd.beyond_loopback("localhost") is True
