"""`gflowd up` forks the master from the command itself (gflow/cli/gflowd_start.py): the
master is set up as a new `gflowd up --foreground` process would be, and a master that
cannot start is reported by `gflowd up` from the daemon log."""

from __future__ import annotations

import os
import socket


def test_the_forked_master_is_on_its_own(daemon):
    pid = daemon.master_pid()
    assert pid and os.getsid(pid) == pid                 # its own session
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    for fd in (1, 2):                                    # the daemon log, not our pipes
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        assert target.startswith(str(daemon.logs / "gflowd.log")), (fd, target)
    assert daemon.ok("gflowd", "status").splitlines()[0] == "Status: Running"


def test_a_master_that_cannot_start_is_reported(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    with socket.socket() as taken:                      # its port is someone else's
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", d.port))
        taken.listen()
        res = d.run("gflowd", "up")
    assert res.returncode != 0 and "error" in res.stderr.lower(), res
    assert d.master_pid() is None or d.run("gflowd", "status").returncode != 0
    d.start()                                            # the port is free again
    assert d.ok("gflowd", "status").splitlines()[0] == "Status: Running"
