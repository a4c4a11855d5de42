"""`gjob attach`: follows the live log and forwards Ctrl-C to the job (POST /jobs/{id}/signal)."""

from __future__ import annotations

import pexpect

from conftest import tool_path, wait_for

TRAPPER = ("trap 'echo got-INT; exit 0' INT; echo ready; "
           "while true; do sleep 0.1; done")


def test_signal_route(daemon):
    daemon.ok("gbatch", "bash", "-c", TRAPPER)
    daemon.wait_state(1, "Running")
    wait_for(lambda: "ready" in (daemon.logs / "1.log").read_text(), what="the trap")
    assert daemon.http("POST", "/jobs/1/signal", {"signal": "BOGUS"})[0] == 400
    assert daemon.http("POST", "/jobs/9/signal", {"signal": "SIGINT"})[0] == 404
    status, body = daemon.http("POST", "/jobs/1/signal", {"signal": "INT"})
    assert status == 200 and body["signal"] == "SIGINT"
    job = daemon.wait_state(1, "Finished")
    assert job["exit_code"] == 0
    assert "got-INT" in (daemon.logs / "1.log").read_text()
    assert daemon.http("POST", "/jobs/1/signal", {"signal": "SIGINT"})[0] == 409


def test_attach_forwards_ctrl_c(daemon):
    daemon.ok("gbatch", "bash", "-c", TRAPPER)
    daemon.wait_state(1, "Running")
    child = pexpect.spawn(tool_path("gjob"), ["attach", "1"], env=daemon.env,
                          cwd=str(daemon.home), timeout=20, encoding="utf-8")
    try:
        child.expect("ready")
        child.sendintr()
        child.expect("sent SIGINT")
        child.expect("got-INT")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert daemon.wait_state(1, "Finished")["exit_code"] == 0


def test_attach_double_ctrl_c_detaches_and_the_job_keeps_running(daemon):
    daemon.ok("gbatch", "bash", "-c", "trap '' INT; echo ready; sleep 30")
    daemon.wait_state(1, "Running")
    child = pexpect.spawn(tool_path("gjob"), ["attach", "1"], env=daemon.env,
                          cwd=str(daemon.home), timeout=20, encoding="utf-8")
    try:
        child.expect("ready")
        child.sendintr()
        child.expect("sent SIGINT")
        child.sendintr()
        child.expect("Detached from job 1")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert daemon.job(1)["state"] == "Running"
