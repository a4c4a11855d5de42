"""Job listings large enough to cross the workers' channels as raw bytes (and reach waitress as a file) arrive whole, in order and with their length, on a kept-alive connection through a real gflowd."""

from __future__ import annotations

import http.client
import json

from conftest import wait_for
from gflow.api.replies import FILE_BODY_MIN
from gflow.ipc import OUT_OF_BAND_MIN

JOBS = 800


def get(conn: http.client.HTTPConnection, path: str, method: str = "GET"):
    conn.request(method, path)
    resp = conn.getresponse()
    return resp.status, resp.getheader("content-length"), resp.read()


def test_large_listings_arrive_whole_between_small_replies(daemon):
    batch = [{"command": f"echo listing-{i}", "gpus": 9} for i in range(JOBS)]  # never start
    status, body = daemon.http("POST", "/jobs/batch", batch)
    assert status == 201, body
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        # Settled first: a pass over 800 queued jobs runs in slices and gives each its
        # waiting reason, so listings taken while it runs differ in those reasons.
        settled = []
        wait_for(lambda: settled.append(get(conn, "/jobs")[2]) or
                 (len(settled) > 1 and settled[-1] == settled[-2]), timeout=30,
                 interval=0.2, what="the listing to settle")
        bodies = []
        for path in ("/jobs", "/jobs/3", "/jobs?limit=120", "/health", "/jobs"):
            status, length, data = get(conn, path)
            assert status == 200 and int(length) == len(data), (path, status, length)
            bodies.append(data)
        full, one, part, _, again = bodies
        assert len(full) >= FILE_BODY_MIN                          # served from a file
        assert OUT_OF_BAND_MIN <= len(part) < FILE_BODY_MIN        # raw on the channel only
        jobs = json.loads(full)
        assert [j["id"] for j in jobs] == list(range(1, JOBS + 1))
        assert [j["command"] for j in jobs] == [f"echo listing-{i}" for i in range(JOBS)]
        assert json.loads(one) == jobs[2]
        assert json.loads(part) == jobs[:120]
        assert again == full
        status, length, data = get(conn, "/jobs", "HEAD")
        assert status == 200 and int(length) == len(full) and data == b""
    finally:
        conn.close()
