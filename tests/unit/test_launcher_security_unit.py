"""Hostile jobs and neighbours against the launcher: planted symlinks, a killed monitor,
accounts it must refuse, cgroup detection and its fallback, squatted channel names."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time

import psutil
import pytest

from gflow.ipc import Hub, RequestClient, channel_address, private_dir
from gflow.launcher import cgroup, runas, safefs
from launcher_helpers import make_launcher, paths_in


def gone(pid: int) -> bool:
    """Dead, or a zombie (an init that never reaps keeps those; they hold nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def job_spec(tmp_path, job_id: int, command: str, **extra) -> dict:
    return {"id": job_id, "command": command, "run_dir": str(tmp_path), "gpu_ids": [],
            "env": {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, **extra}


def wait_reported(launcher, rec, job_id: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with launcher.lock:
            launcher.check(job_id)
        done = [m for m in rec.sent if m[0] == "exited" and m[1] == job_id]
        if done:
            return done[0][2]
        assert time.monotonic() < deadline, f"job {job_id} was never reported"
        time.sleep(0.05)


# --- files in the logs directory ----------------------------------------------------------

def test_atomic_json_never_writes_through_planted_symlinks(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious")
    path = tmp_path / "7.spec.json"
    # The old fixed temp name, and the final name itself, both planted.
    (tmp_path / "7.spec.json.tmp").symlink_to(target)
    path.symlink_to(target)
    safefs.write_json_atomic(path, {"a": 1})
    assert target.read_text() == "precious"
    assert not path.is_symlink() and json.loads(path.read_text()) == {"a": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7.spec.json", "7.spec.json.tmp",
                                                          "victim"]


def test_read_json_refuses_a_symlink(tmp_path):
    real = tmp_path / "forged"
    real.write_text(json.dumps({"exit_code": 0}))
    (tmp_path / "1.status").symlink_to(real)
    assert safefs.read_json(tmp_path / "1.status") is None
    assert safefs.read_json(real) == {"exit_code": 0}


def test_job_log_refuses_symlinks_links_and_fifos(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious")
    (tmp_path / "1.log").symlink_to(target)
    with pytest.raises(safefs.UnsafeFile) as info:
        safefs.open_job_log(tmp_path / "1.log")
    assert info.value.errno == errno.ELOOP and "is a symbolic link" in str(info.value)
    (tmp_path / "2.log").symlink_to(tmp_path / "dangling")
    with pytest.raises(safefs.UnsafeFile):
        safefs.open_job_log(tmp_path / "2.log")
    assert not (tmp_path / "dangling").exists()
    os.link(target, tmp_path / "3.log")
    with pytest.raises(safefs.UnsafeFile, match="other hard links"):
        safefs.open_job_log(tmp_path / "3.log")
    os.mkfifo(tmp_path / "4.log")             # must not block waiting for a reader
    with pytest.raises(safefs.UnsafeFile, match="not a regular file"):
        safefs.open_job_log(tmp_path / "4.log")
    assert target.read_text() == "precious"


def test_job_log_for_another_account_is_group_readable_only(tmp_path):
    fd = safefs.open_job_log(tmp_path / "5.log", group=4321)
    try:
        assert os.get_blocking(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 4321, 0o640)
    fd = safefs.open_job_log(tmp_path / "6.log")
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "6.log").stat().st_mode) == 0o600


def test_monitor_refuses_a_symlinked_log(tmp_path):
    p = paths_in(tmp_path)
    target = tmp_path / "victim"
    target.write_text("precious")
    p.job_log(1).symlink_to(target)
    marker = tmp_path / "ran"
    spec = {"id": 1, "argv": ["bash", "-c", f"echo pwned; touch {marker}"],
            "cwd": str(tmp_path), "env": {"PATH": os.environ["PATH"]}, "notify": None,
            "log_path": str(p.job_log(1)), "status_path": str(p.job_status(1)),
            "pid_path": str(p.job_pidfile(1))}
    spec_path = tmp_path / "1.spec.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "gflow.launcher.monitor", str(spec_path)],
                   timeout=30, check=True)
    status = json.loads(p.job_status(1).read_text())
    assert status["exit_code"] is None and "is a symbolic link" in status["detail"]
    assert target.read_text() == "precious" and not marker.exists()


def test_launcher_refuses_a_symlinked_log_and_starts_nothing(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    target = tmp_path / "victim"
    target.write_text("precious")
    launcher.paths.job_log(12).symlink_to(target)
    marker = tmp_path / "ran"
    launcher.start(job_spec(tmp_path, 12, f"touch {marker}"))
    (kind, job_id, info), = rec.sent
    assert (kind, job_id, info["exit_code"]) == ("exited", 12, None)
    assert info["detail"] == (f"the job's log {launcher.paths.job_log(12)} is a symbolic "
                              "link: refusing to write through it")
    assert launcher.jobs[12].popen is None
    assert target.read_text() == "precious" and not marker.exists()


def test_a_planted_spec_tmp_symlink_redirects_nothing(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    target = tmp_path / "victim"
    target.write_text("precious")
    (launcher.paths.logs_dir / "13.spec.json.tmp").symlink_to(target)
    launcher.start(job_spec(tmp_path, 13, "echo fine"))
    info = wait_reported(launcher, rec, 13)
    assert info["exit_code"] == 0 and target.read_text() == "precious"
    assert launcher.paths.job_log(13).read_text() == "fine\n"


# --- accounts ---------------------------------------------------------------------------------

def test_accounts_a_job_may_and_may_not_run_as(monkeypatch):
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert runas.target_account(None) is None
    assert runas.target_account(me) is None          # ourselves: no switch, as today
    with pytest.raises(runas.Refused, match="^account gft_nobody_here does not exist$"):
        runas.target_account("gft_nobody_here")
    other = next((pw for pw in pwd.getpwall() if pw.pw_uid != os.geteuid()), None)
    if other is None:
        pytest.skip("no second account in the password database")
    # A daemon of an ordinary account refuses to run a job as anyone else.
    monkeypatch.setattr(runas.os, "geteuid", lambda: 54321)
    with pytest.raises(runas.Refused) as info:
        runas.target_account(other.pw_name)
    assert str(info.value) == f"gflowd runs as uid 54321 and cannot run jobs as {other.pw_name}"


def test_the_environment_comes_from_the_password_database():
    pw = pwd.getpwuid(os.geteuid())
    env = runas.job_environment({"HOME": "/home/mallory", "USER": "mallory", "X": "1"}, pw)
    assert (env["HOME"], env["USER"], env["LOGNAME"], env["X"]) == (
        pw.pw_dir, pw.pw_name, pw.pw_name, "1")
    assert env["SHELL"] == (pw.pw_shell or "/bin/sh")
    assert runas.job_environment({"HOME": "/x"}, None) == {"HOME": "/x"}


def test_launcher_reports_a_missing_account(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    launcher.start(job_spec(tmp_path, 14, "true", run_as_user="gft_nobody_here"))
    (kind, job_id, info), = rec.sent
    assert (kind, job_id, info["exit_code"]) == ("exited", 14, None)
    assert info["detail"] == "account gft_nobody_here does not exist"


def test_monitor_applies_the_submitters_umask(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    made = tmp_path / "made"
    launcher.start(job_spec(tmp_path, 15, f"touch {made}", umask=0o077))
    assert wait_reported(launcher, rec, 15)["exit_code"] == 0
    assert stat.S_IMODE(made.stat().st_mode) == 0o600


# --- a job that kills its own monitor ---------------------------------------------------------

def test_a_job_that_kills_its_monitor_is_killed_before_it_is_reported(tmp_path):
    launcher, rec = make_launcher(tmp_path)
    pids = tmp_path / "pids"
    # One process stays in the job's session; one leaves it (setsid), so only its
    # environment (GFLOW_JOB_ID and the rest of the fingerprint) identifies it.
    command = (f"echo $$ >> {pids}; (setsid sleep 60 & echo $! >> {pids}); "
               f"sleep 0.2; kill -9 $PPID; sleep 60")
    launcher.start(job_spec(tmp_path, 16, command))
    decoy = None
    try:
        # Another daemon's job 16 (another HOME) must survive the search.
        decoy = subprocess.Popen(["sleep", "60"], env={
            "PATH": os.environ["PATH"], "GFLOW_JOB_ID": "16", "GFLOW_ARRAY_TASK_ID": "0",
            "CUDA_VISIBLE_DEVICES": "", "HOME": "/elsewhere"})
        info = wait_reported(launcher, rec, 16)
        recorded = [int(x) for x in pids.read_text().split()]
        assert len(recorded) == 2
        assert info["exit_code"] is None
        assert info["detail"] == ("the job's monitor vanished (killed by SIGKILL) without "
                                  "recording an exit status; the job's processes were killed")
        # At the moment it was reported, nothing of it was left.
        assert all(gone(pid) for pid in recorded), [psutil.Process(p) for p in recorded
                                                    if not gone(p)]
        assert decoy.poll() is None
    finally:
        if decoy is not None:
            decoy.kill()
            decoy.wait()
        for pid in [int(x) for x in pids.read_text().split()] if pids.exists() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_a_monitor_killed_before_its_pid_file_still_takes_its_session_along(tmp_path):
    """No pid file, no GFLOW_JOB_ID: the monitor's session (its pid) finds the job."""
    from gflow.launcher.service import Tracked
    launcher, rec = make_launcher(tmp_path)
    child_pid = tmp_path / "child"
    monitor = subprocess.Popen(["bash", "-c", f"sleep 60 & echo $! > {child_pid}; wait"],
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (child_pid.exists() and child_pid.read_text().strip()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child = int(child_pid.read_text())
        launcher.jobs[18] = Tracked(spec={"id": 18}, launched_at=time.time() - 1,
                                    popen=monitor, monitor_pid=monitor.pid)
        monitor.kill()
        monitor.wait()
        info = wait_reported(launcher, rec, 18)
        assert info["detail"] == ("the job's monitor vanished (killed by SIGKILL) without "
                                  "recording an exit status; the job's processes were killed")
        assert gone(child)
    finally:
        if child_pid.exists() and child_pid.read_text().strip():
            try:
                os.kill(int(child_pid.read_text()), signal.SIGKILL)
            except OSError:
                pass


# --- cgroup v2 detection and its fallback -----------------------------------------------------

def fake_cgroupfs(root, controllers="cpu memory pids", subtree=""):
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text(subtree)
    return root


def test_no_cgroup_v2_means_sampling(tmp_path):
    assert cgroup.find_base(str(tmp_path / "nothing")) is None
    assert cgroup.memory_enforcement(str(tmp_path / "nothing")) == "sampling"
    v1 = fake_cgroupfs(tmp_path / "v1", controllers="cpu io")       # no memory controller
    assert cgroup.find_base(str(v1)) is None
    # The kernel would create the interface files; a directory without them is refused.
    bare = fake_cgroupfs(tmp_path / "bare")
    assert cgroup.find_base(str(bare)) is None


def test_a_usable_cgroup_v2_is_detected(tmp_path):
    root = fake_cgroupfs(tmp_path / "cg")
    base = root / "gflow"
    base.mkdir()
    (base / "cgroup.subtree_control").write_text("")
    probe = base / f"gflow-probe-{os.getpid()}"
    probe.mkdir()
    for name in ("memory.max", "memory.events", "pids.max", "cgroup.procs"):
        (probe / name).write_text("")
    assert cgroup.find_base(str(root)) == str(base)
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (probe / "pids.max").read_text() == str(cgroup.PIDS_MAX)
    # What another process (gflowd status) sees, without probing anything itself.
    (base / "cgroup.subtree_control").write_text("memory pids\n")
    assert cgroup.memory_enforcement(str(root)) == "cgroup"
    (base / "cgroup.subtree_control").write_text("pids\n")
    assert cgroup.memory_enforcement(str(root)) == "sampling"
    # Each daemon (data dir) gets its own level: two daemons' job 1 never share a cgroup.
    instance = cgroup.instance_name(tmp_path / "home" / ".local/share/gflow")
    assert instance != cgroup.instance_name(tmp_path / "other")
    mine = base / instance
    mine.mkdir()
    (mine / "cgroup.subtree_control").write_text("")
    probe = mine / f"gflow-probe-{os.getpid()}"
    probe.mkdir()
    for name in ("memory.max", "memory.events", "pids.max", "cgroup.procs"):
        (probe / name).write_text("")
    assert cgroup.detect(str(root), instance) == str(mine)
    assert (mine / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert cgroup.memory_enforcement(str(root)) == "cgroup"     # what this process decided


def test_a_job_cgroup_and_its_oom_report(tmp_path):
    base = tmp_path / "gflow"
    job = base / "gflow-job-3"
    job.mkdir(parents=True)
    for name in ("memory.max", "memory.swap.max", "memory.oom.group", "pids.max",
                 "cgroup.procs"):
        (job / name).write_text("")
    assert cgroup.create_job_cgroup(str(base), 3, memory_limit_mb=100) == str(job)
    assert (job / "memory.max").read_text() == str(100 * 1024 * 1024)
    assert (job / "memory.swap.max").read_text() == "0"
    assert (job / "memory.oom.group").read_text() == "1"
    assert (job / "pids.max").read_text() == "4096"
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n")
    assert cgroup.oom_kills(str(job)) == 1
    assert cgroup.oom_detail(100) == ("killed: memory over the 100 MB limit "
                                      "(out of memory in its cgroup)")
    (job / "cgroup.procs").write_text("12\n34\n")
    assert cgroup.processes(str(job)) == [12, 34]
    assert cgroup.oom_kills(str(tmp_path / "missing")) == 0


def test_a_monitor_without_a_usable_cgroup_runs_the_job_anyway(tmp_path):
    from gflow.launcher.monitor import enter_job_cgroup
    assert enter_job_cgroup({"id": 1}) == (None, None)
    assert enter_job_cgroup({"id": 1, "cgroup_base": str(tmp_path / "nope")}) == (None, None)
    launcher, rec = make_launcher(tmp_path)
    launcher.cgroup_base = str(tmp_path / "nope")      # detection said yes, then it broke
    launcher.start(job_spec(tmp_path, 17, "echo ran", memory_limit_mb=50))
    assert wait_reported(launcher, rec, 17)["exit_code"] == 0
    assert launcher.jobs[17].cgroup is None        # sampled, as without cgroups


def cgroup2_mount() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    return None


def test_a_cgroup_finds_what_left_both_session_and_environment(tmp_path):
    """A real cgroup v2 directory (no controller needed): a process that left the
    monitor's session and dropped its environment is found there and killed."""
    from gflow.launcher.service import Tracked
    mount = cgroup2_mount()
    if mount is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup2 mount")
    path = os.path.join(mount, f"gflow-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.mkdir(path)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup under {mount}: {exc.strerror}")
    escaped = monitor = None
    try:
        launcher, rec = make_launcher(tmp_path)
        monitor = subprocess.Popen(["sleep", "60"], start_new_session=True)
        escaped = subprocess.Popen(["/bin/sleep", "60"], env={}, start_new_session=True)
        cgroup.enter(path, escaped.pid)
        launcher.jobs[19] = Tracked(spec={"id": 19}, launched_at=time.time() - 1,
                                    popen=monitor, monitor_pid=monitor.pid, cgroup=path)
        monitor.kill()
        monitor.wait()
        info = wait_reported(launcher, rec, 19)
        assert info["detail"].endswith("; the job's processes were killed")
        assert escaped.wait(5) == -signal.SIGKILL
        assert not os.path.exists(path)           # the job's cgroup is removed with it
    finally:
        for proc in (escaped, monitor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        cgroup.remove(path)


def test_this_machine_reports_its_mode():
    """Here (CI containers, cgroup v1 or hybrid hosts) it is often "sampling"; on a
    cgroup v2 host where root can enable memory and pids it is "cgroup"."""
    mode = cgroup.memory_enforcement()
    assert mode in ("cgroup", "sampling")
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            v2_memory = "memory" in f.read().split()
    except OSError:
        v2_memory = False
    if not v2_memory:
        assert cgroup.detect() is None and cgroup.memory_enforcement() == "sampling"


# --- channel sockets ----------------------------------------------------------------------------

def test_channel_sockets_live_in_a_private_directory(tmp_path):
    data = tmp_path / "data"
    address = channel_address(data)
    assert address == str(data / "run" / "hub.sock")
    assert stat.S_IMODE(os.stat(data / "run").st_mode) == 0o700
    os.chmod(data / "run", 0o755)                 # loosened: tightened again
    channel_address(data)
    assert stat.S_IMODE(os.stat(data / "run").st_mode) == 0o700
    if os.geteuid() == 0:
        os.chown(data / "run", 65534, 65534)      # someone else's: refused
        with pytest.raises(PermissionError, match="belongs to uid 65534"):
            private_dir(data)


def test_a_squatted_old_name_and_a_long_path_do_not_stop_the_channel(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "data"
    address = channel_address(deep)
    assert len(os.fsencode(address)) > 108       # through /proc/self/fd/<dirfd>
    # Someone took the names the daemon used to use (abstract: any account can).
    token = hashlib.sha1(str(deep).encode()).hexdigest()[:16]
    squatters = []
    for name in (f"\0gflowd-hub-{token}", f"\0gflowd-notify-{token}"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(name)
        squatters.append(s)
    key = os.urandom(16)
    hub = Hub(address, key)
    client = RequestClient(address, key, "api")
    try:
        assert client.channel.ready.wait(5)
        peer, msg = hub.inbox.get(timeout=5)
        assert msg == ("connected", "api")
        assert stat.S_ISSOCK(os.lstat(address).st_mode)
    finally:
        client.channel.close()
        hub.close()
        for s in squatters:
            s.close()
    assert not os.path.exists(address)            # its own socket file is removed


def test_a_socket_file_left_by_a_killed_hub_is_replaced(tmp_path):
    address = channel_address(tmp_path / "data")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(address)                             # bound, never listening, then gone
    dead.close()
    key = os.urandom(16)
    hub = Hub(address, key)
    try:
        client = RequestClient(address, key, "api")
        assert client.channel.ready.wait(5)
        client.channel.close()
    finally:
        hub.close()
