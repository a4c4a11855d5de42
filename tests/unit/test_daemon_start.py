"""Issue 21: the master spawns its workers without importing their modules (the spawned
worker imports its own; the master importing the scheduler's, then the API's Flask,
delayed every start by ~0.1 s and cost the master ~3 MB)."""

import subprocess
import sys


def test_the_master_imports_no_worker_module():
    code = ("import sys, gflow.daemon.master; "
            "print(sorted(m for m in ('gflow.scheduler.service', 'gflow.launcher.service', "
            "'gflow.api.service', 'flask') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_worker_runs_its_own_module(monkeypatch):
    import gflow.scheduler.service as scheduler
    from gflow.daemon.entry import run_worker
    calls = []
    monkeypatch.setattr(scheduler, "main", lambda *a, **k: calls.append((a, k)))
    run_worker("scheduler", "ctx", ready="pipe")
    assert calls == [(("ctx",), {"ready": "pipe"})]


def test_orphans_of_a_clean_stop_need_no_psutil():
    import subprocess as sp

    from gflow.daemon import master
    gone = sp.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    code = ("import sys, gflow.daemon.master as m; "
            f"m.wait_orphans({{'scheduler': [{gone.pid}, 1.0]}}); print('psutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
    live = sp.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:    # alive but not a gflowd worker (another start time): not waited for
        assert master._pid_exists([live.pid, 1.0])
        master.wait_orphans({"scheduler": [live.pid, 1.0]}, timeout=0.1)
        assert live.poll() is None
    finally:
        live.kill()
        live.wait()
    assert master._pid_exists(["x", 1.0]) and master._pid_exists([0, 1.0])
