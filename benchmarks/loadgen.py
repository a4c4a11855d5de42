"""Keep-alive POST load for the storm scenario.

The C client in loadgen.c is compiled once with the system C compiler (cc/gcc) into a
cache dir; without a compiler a Python fallback runs one process per connection (it
costs more CPU, so on a 2-core machine it may itself limit the rate: the result says
which client ran).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SOURCE = Path(__file__).with_name("loadgen.c")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gflow-bench"


def build() -> Path | None:
    """The compiled client, built if needed; None when no C compiler is available."""
    src = SOURCE.read_bytes()
    binary = cache_dir() / f"loadgen-{hashlib.sha256(src).hexdigest()[:12]}"
    if binary.exists():
        return binary
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(f".tmp{os.getpid()}")
    res = subprocess.run([cc, "-O2", "-pthread", "-o", str(tmp), str(SOURCE)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        return None
    os.replace(tmp, binary)
    return binary


def run(host: str, port: int, path: str, body: bytes, connections: int, seconds: float,
        expect_status: int = 201, force_python: bool = False) -> dict:
    """{"ok", "bad", "errors", "seconds", "first_bad_status", "client"}."""
    binary = None if force_python else build()
    if binary is not None:
        body_file = cache_dir() / f"body-{os.getpid()}.json"
        body_file.write_bytes(body)
        try:
            res = subprocess.run([str(binary), host, str(port), path, str(body_file),
                                  str(connections), str(seconds), str(expect_status)],
                                 capture_output=True, text=True, timeout=seconds + 60)
        finally:
            body_file.unlink(missing_ok=True)
        if res.returncode != 0:
            raise RuntimeError(f"loadgen failed: {res.stderr.strip()}")
        out = json.loads(res.stdout)
        out["client"] = "C (loadgen.c)"
        return out
    return _run_python(host, port, path, body, connections, seconds, expect_status)


def _request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def _read_response(sock: socket.socket, buf: bytearray) -> int:
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        buf += chunk
    head = bytes(buf[:end]).lower()
    status = int(head.split(b" ", 2)[1])
    length = 0
    pos = head.find(b"\ncontent-length:")
    if pos >= 0:
        length = int(head[pos + 16:].split(b"\r", 1)[0])
    total = end + 4 + length
    while len(buf) < total:
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        buf += chunk
    del buf[:total]
    return status


def _worker(args) -> tuple[int, int, int, int]:
    host, port, path, body, start, deadline, expect = args
    request = _request(host, port, path, body)
    time.sleep(max(0.0, start - time.time()))
    ok = bad = errors = first_bad = 0
    sock = None
    buf = bytearray()
    while time.time() < deadline:
        try:
            if sock is None:
                sock = socket.create_connection((host, port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf.clear()
            sock.sendall(request)
            status = _read_response(sock, buf)
        except OSError:
            status = 0
        if status == 0:
            errors += 1
            if sock is not None:
                sock.close()
            sock = None
            continue
        if time.time() > deadline:
            break
        if status == expect:
            ok += 1
        else:
            bad += 1
            first_bad = first_bad or status
    if sock is not None:
        sock.close()
    return ok, bad, errors, first_bad


def _run_python(host, port, path, body, connections, seconds, expect) -> dict:
    start = time.time() + 0.5                   # time for the processes to start
    deadline = start + seconds
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(connections) as pool:
        parts = pool.map(_worker, [(host, port, path, body, start, deadline, expect)] * connections)
    return {"ok": sum(p[0] for p in parts), "bad": sum(p[1] for p in parts),
            "errors": sum(p[2] for p in parts), "seconds": seconds,
            "first_bad_status": next((p[3] for p in parts if p[3]), 0),
            "client": f"Python ({connections} processes)"}
