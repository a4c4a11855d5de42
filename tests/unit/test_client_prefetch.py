"""`gbatch --depends-on @`: the lookup is sent before gbatch builds the job and read when
needed (Client.prefetch), and the installed command exits without the interpreter's
teardown (gbatch_more.as_command)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from gflow.cli import gbatch_more
from gflow.client import Client, ConnectionFailed
from http_stub import read_request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Stub:
    """A keep-alive HTTP server on a Unix socket: records (connection, method, path, body)."""

    def __init__(self, path: str, replies: dict):
        self.replies = replies
        self.seen: list = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections),
                             daemon=True).start()

    def _serve(self, conn, n: int) -> None:
        data = b""
        with conn:
            while True:
                request = read_request(conn, data)
                if request is None:
                    return
                method, path, body, data = request
                self.seen.append((n, method, path, json.loads(body) if body else None))
                reply = json.dumps(self.replies[(method, path.split("?")[0])]).encode()
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n" % len(reply) + reply)
                except OSError:
                    return          # the client dropped the connection

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def stub(tmp_path):
    path = str(tmp_path / "d.sock")
    if len(path) > 100:
        pytest.skip("temporary directory too deep for a Unix socket path")
    server = Stub(path, {("GET", "/jobs/resolve-dependency"): {"job_id": 41},
                         ("POST", "/jobs"): {"id": 42, "run_name": "gflow-job-42"},
                         ("GET", "/health"): {"status": "ok"}})
    yield server, path
    server.close()


def test_a_prefetched_lookup_is_answered_once_on_the_same_connection(stub):
    server, path = stub
    client = Client(unix_socket=path)
    client.prefetch("/jobs/resolve-dependency", {"username": "u", "shorthand": "@"})
    assert client.resolve("u", "@") == 41
    assert client.submit({"command": "x"})["id"] == 42
    assert server.seen == [(1, "GET", "/jobs/resolve-dependency?username=u&shorthand=%40",
                            None), (1, "POST", "/jobs", {"command": "x"})]


def test_a_prefetch_nobody_asks_for_is_dropped(stub):
    server, path = stub
    client = Client(unix_socket=path)
    client.prefetch("/jobs/resolve-dependency", {"username": "u", "shorthand": "@"})
    assert client.resolve("u", "@~2") == 41         # another question: asked afresh
    assert client.submit({"command": "x"})["id"] == 42
    # Each connection has its own server thread: only the order within one is fixed.
    by_connection = {n: [(m, p) for k, m, p, _ in server.seen if k == n] for n in (1, 2)}
    assert [m for m, _ in by_connection[1]] == ["GET"] and len(server.seen) == 3
    assert [m for m, _ in by_connection[2]] == ["GET", "POST"]
    assert by_connection[2][0][1].endswith("shorthand=%40~2")


def test_a_prefetch_that_cannot_be_sent_fails_like_the_request_itself(tmp_path):
    client = Client(unix_socket=str(tmp_path / "none.sock"))
    client.prefetch("/jobs/resolve-dependency", {"username": "u", "shorthand": "@"})
    with pytest.raises(ConnectionFailed):
        client.resolve("u", "@")


@pytest.mark.parametrize("argv,shorthand", [
    (["--depends-on", "@", "true"], "@"),
    (["-g", "1", "-d", " @~2 ", "python", "x.py"], "@~2"),
    (["--dependency=@", "true"], "@"),
    (["--depends-on", "5", "true"], None),
    (["--depends-on", "afterok:@", "true"], None),
    (["--depends-on-all", "@,@~2", "true"], None),
    (["--config", "/x.toml", "--depends-on", "@", "true"], None),
    (["--conf=/x.toml", "--depends-on", "@", "true"], None),
    (["--depends-on", "@", "--help"], None),
    (["--", "prog", "--depends-on", "@"], None),
])
def test_which_command_lines_prefetch_their_lookup(argv, shorthand, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in [k for k in os.environ if k.startswith("GFLOW_")]:
        monkeypatch.delenv(key)
    asked = []
    monkeypatch.setattr(Client, "prefetch", lambda self, path, query: asked.append(query))
    client = gbatch_more.prefetch_dependency(argv, "someone", Client)
    if shorthand is None:
        assert client is None and asked == []
    else:
        assert isinstance(client, Client)
        assert asked == [{"username": "someone", "shorthand": shorthand}]


ENTRY = """
import atexit, sys
sys.path.insert(0, {root!r})
from gflow.cli import gbatch_more
atexit.register(lambda: print("atexit ran", flush=True))
main = gbatch_more.as_command(lambda argv=None: (print("answer"), 7)[1])
rc = main({argv})
print("after main returned", rc)
sys.exit(rc)
"""


@pytest.mark.parametrize("name,argv,expected", [
    ("gbatch", "", "answer\natexit ran\n"),                       # the installed command
    ("gbatch", "['x']", "answer\nafter main returned 7\natexit ran\n"),   # called by code
    ("other", "", "answer\nafter main returned 7\natexit ran\n"),
])
def test_the_installed_command_exits_once_its_answer_is_out(tmp_path, name, argv, expected):
    script = tmp_path / name
    script.write_text(ENTRY.format(root=ROOT, argv=argv))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, expected, "")


def test_a_prefetched_answer_that_never_comes_is_waited_for_once(tmp_path):
    path = str(tmp_path / "mute.sock")
    if len(path) > 100:
        pytest.skip("temporary directory too deep for a Unix socket path")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)     # accepts, never answers
    mute.bind(path)
    mute.listen(4)
    try:
        client = Client(unix_socket=path, timeout=0.3)
        client.prefetch("/jobs/resolve-dependency", {"username": "u", "shorthand": "@"})
        started = time.monotonic()
        with pytest.raises(ConnectionFailed, match="timed out"):
            client.resolve("u", "@")
        assert time.monotonic() - started < 0.6
    finally:
        mute.close()
