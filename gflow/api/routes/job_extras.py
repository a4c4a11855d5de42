"""Routes for suspending and resuming a job and for reading its log by line ranges (ours)."""

from __future__ import annotations

import os

from flask import Blueprint, Response

from gflow.api.replies import ApiError, ask, empty, respond
from gflow.api.routes.params import path_u32, query_uint

bp = Blueprint("job_extras", __name__)

MAX_LINES = 1_000_000
MAX_BYTES = 16 * 1024 * 1024          # what one reply carries at most (a huge line is cut)
BLOCK = 64 * 1024


@bp.post("/jobs/<raw_id>/suspend")
def suspend(raw_id: str):
    return respond(*ask("suspend", {"id": path_u32(raw_id)}))


@bp.post("/jobs/<raw_id>/resume")
def resume(raw_id: str):
    return respond(*ask("resume", {"id": path_u32(raw_id)}))


@bp.get("/jobs/<raw_id>/log/lines")
def log_lines(raw_id: str):
    """The first or last K lines of a job's log (`?first=K` or `?last=K`, `&attempt=N`
    for an earlier attempt of a retried job), read from the file's start or end only:
    a log of gigabytes costs what the lines cost."""
    job_id = path_u32(raw_id)
    first, last = query_uint("first", MAX_LINES), query_uint("last", MAX_LINES)
    if (first is None) == (last is None):
        raise ApiError(400, {"error": "give exactly one of first=K or last=K"})
    payload = {"id": job_id}
    attempt = query_uint("attempt", 2**32 - 1)
    if attempt is not None:
        payload["attempt"] = attempt
    status, path = ask("log_path", payload)
    if status == 404 and path is None:
        return empty(404)
    if status != 200 or not isinstance(path, str):
        raise ApiError(status, path)
    data, cut = read_first(path, first) if first is not None else read_last(path, last)
    resp = Response(data, status=200, content_type="text/plain; charset=utf-8")
    if cut:
        resp.headers["X-Gflow-Truncated"] = "1"
    return resp


def _open(path: str):
    # O_NOFOLLOW: the daemon may be root; a log swapped for a symlink must not be read.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ApiError(500, {"error": f"cannot read the log: {exc.strerror}"}) from None
    return os.fdopen(fd, "rb")


def read_first(path: str, count: int) -> tuple[bytes, bool]:
    """The first `count` lines (bytes); True when MAX_BYTES cut them short."""
    out = bytearray()
    found = 0
    with _open(path) as f:
        while found < count and len(out) < MAX_BYTES:
            block = f.read(BLOCK)
            if not block:
                return bytes(out), False
            start = 0
            while found < count:
                nl = block.find(b"\n", start)
                if nl < 0:
                    break
                found += 1
                start = nl + 1
            out += block if found < count else block[:start]
    if len(out) > MAX_BYTES:
        return bytes(out[:MAX_BYTES]), True
    return bytes(out), found < count and len(out) >= MAX_BYTES


def read_last(path: str, count: int) -> tuple[bytes, bool]:
    """The last `count` lines (a last line without a newline counts), read backwards."""
    if count == 0:
        return b"", False
    with _open(path) as f:
        end = pos = os.fstat(f.fileno()).st_size
        chunks: list[bytes] = []
        newlines = 0
        skip_final = True            # the newline ending the file ends the last line
        while pos > 0 and end - pos < MAX_BYTES:
            size = min(BLOCK, pos)
            pos -= size
            f.seek(pos)
            block = f.read(size)
            chunks.append(block)
            idx = len(block)
            while True:
                nl = block.rfind(b"\n", 0, idx)
                if nl < 0:
                    break
                if skip_final and pos + nl == end - 1:
                    skip_final = False
                else:
                    newlines += 1
                    if newlines == count:
                        data = b"".join(reversed(chunks))
                        return data[nl + 1:][-MAX_BYTES:], False
                idx = nl
            skip_final = False
        data = b"".join(reversed(chunks))
    if len(data) > MAX_BYTES:
        return data[-MAX_BYTES:], True
    return data, pos > 0
