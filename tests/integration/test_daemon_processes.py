"""Issue 21: a running gflowd is its master, three workers and the launcher's zygote, and
nothing else (multiprocessing's resource tracker, ~6 MB, is gone with its spawn)."""

from __future__ import annotations

import psutil

from conftest import processes_with_home, wait_for


def titles(procs) -> list[str]:
    out = []
    for proc in procs:
        try:
            out.append((proc.cmdline() or ["?"])[0])
        except psutil.Error:
            continue
    return sorted(out)


def test_the_daemon_runs_only_its_own_processes(daemon):
    master = psutil.Process(daemon.master_pid())
    assert titles(master.children()) == ["gflowd: api", "gflowd: launcher",
                                         "gflowd: scheduler"]
    # The zygote keeps a spare monitor ready; wait until it has made it.
    wait_for(lambda: "gflowd: launcher zygote (spare monitor)" in titles(
        processes_with_home(str(daemon.home))), what="the zygote's spare monitor")
    assert all(t.startswith("gflowd: ") for t in titles(processes_with_home(str(daemon.home))))

