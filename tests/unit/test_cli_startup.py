"""What `gbatch` and `gqueue` import before their first request (issue 21: a cold command must
start fast). Each runs for real in a fresh interpreter without site (so the editable install's
finder preloads nothing) against a stub daemon on this account's Unix socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from http_stub import read_request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Costly to import and not needed to send one request over the Unix socket: dataclasses
# (inspect, ast), typing, socket.py (selectors), pathlib, urllib, decimal, http.client ...
HEAVY = ("dataclasses", "inspect", "ast", "typing", "socket", "selectors", "pathlib",
         "urllib", "ipaddress", "decimal", "http", "email", "uuid", "csv", "contextlib",
         "struct", "grp", "gflow.config", "gflow.models", "tomllib")

RUN = """
import sys
sys.path.insert(0, {root!r})
sys.argv = [{tool!r}] + {args!r}
from gflow.cli.{tool} import main
rc = main()
sys.stdout.flush()
sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n")
sys.exit(rc)
"""


def _serve(listener: socket.socket, replies: dict) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            request = read_request(conn)
            if request is None:
                continue
            method, path = request[:2]
            reply = json.dumps(replies[(method, path.split("?")[0])]).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\nconnection: close\r\n\r\n" % len(reply) + reply)


@pytest.mark.parametrize("tool,args,expected", [
    ("gqueue", ["-a"], "No jobs found."),
    ("gbatch", ["true"], "Submitted batch job 7 (gflow-job-7)"),
    ("gbatch", ["--depends-on", "@", "true"], "Submitted batch job 7 (gflow-job-7)"),
])
def test_first_request_imports_nothing_heavy(tmp_path, tool, args, expected):
    home = tmp_path / "h"
    sock_dir = home / ".local" / "share" / "gflow"
    sock_dir.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = str(sock_dir / "gflowd.sock")
    if len(path) > 100:
        pytest.skip("temporary directory too deep for a Unix socket path")
    listener.bind(path)
    listener.listen(4)
    replies = {("GET", "/jobs"): [], ("POST", "/jobs"): {"id": 7, "run_name": "gflow-job-7"},
               ("GET", "/jobs/resolve-dependency"): {"job_id": 6}}
    thread = threading.Thread(target=_serve, args=(listener, replies), daemon=True)
    thread.start()
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "USER": "someone", "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run([sys.executable, "-S", "-c",
                               RUN.format(root=ROOT, tool=tool, args=args)],
                              env=env, cwd=str(tmp_path), capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    finally:
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
    modules = proc.stderr.rsplit("MODULES ", 1)[1].split()
    heavy = [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]
    assert heavy == [], heavy
