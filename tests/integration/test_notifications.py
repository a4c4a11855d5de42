"""Webhooks and the event stream, with a local receiver on loopback."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, wait_for


class Receiver:
    """Records every POST; answers `status` (or refuses connections while stopped)."""

    def __init__(self, port: int | None = None, status: int = 200):
        self.port = port or free_port()
        self.status = status
        self.received: list[tuple[dict, dict]] = []
        self.server = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append((headers, json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self, name=None):
        return [p for _, p in self.received if name is None or p["event"] == name]


def configure(d, receiver_port: int, events='["*"]', extra="") -> None:
    cfg = d.home / ".config" / "gflow"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "gflow.toml").write_text(
        "[notifications]\nenabled = true\n\n[[notifications.webhooks]]\n"
        f'url = "http://127.0.0.1:{receiver_port}/hook"\nevents = {events}\n'
        'headers = { Authorization = "Bearer t0ken" }\ntimeout_secs = 2\nmax_retries = 4\n'
        + extra)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_lifecycle_events_arrive_once_with_the_header(daemon_factory, receiver):
    d = daemon_factory(fake_gpus="1")
    configure(d, receiver.port)
    d.start()
    d.ok("gbatch", "echo", "hi")
    d.ok("gbatch", "--gpus", "5", "echo", "never")        # never fits: stays queued
    d.ok("gjob", "hold", "2")
    d.ok("gjob", "release", "2")
    d.ok("gcancel", "2")
    wanted = ["job_submitted", "job_started", "job_completed", "job_held", "job_released",
              "job_cancelled"]
    wait_for(lambda: all(receiver.events(n) for n in wanted), timeout=20,
             what="every lifecycle event")
    by_job = {}
    for _, p in receiver.received:
        if "job" in p:
            by_job.setdefault(p["job"]["id"], []).append(p["event"])
    # Deliveries run concurrently, so arrival order is not guaranteed; each event once.
    assert sorted(by_job[1]) == sorted(["job_submitted", "job_started", "job_completed"])
    assert sorted(by_job[2]) == sorted(["job_submitted", "job_held", "job_released",
                                        "job_cancelled"])
    headers, completed = next((h, p) for h, p in receiver.received
                              if p["event"] == "job_completed")
    assert headers["authorization"] == "Bearer t0ken"
    assert headers["x-gflow-event-id"] == completed["event_id"]
    assert completed["job"]["state"] == "Finished" and completed["job"]["exit_code"] == 0
    assert completed["job"]["name"] == "echo hi" and completed["job"]["user"] == "tester"
    assert receiver.events("scheduler_online")
    ids = [p["event_id"] for _, p in receiver.received]
    assert len(ids) == len(set(ids))                       # once each


def test_refused_transition_sends_nothing(daemon_factory, receiver):
    d = daemon_factory(fake_gpus="1")
    configure(d, receiver.port, events='["job_completed", "job_cancelled"]')
    d.start()
    d.ok("gbatch", "true")
    d.wait_state(1, "Finished")
    assert d.run("gcancel", "1").returncode != 0           # 409: already finished
    wait_for(lambda: receiver.events("job_completed"), what="job_completed")
    assert not receiver.events("job_cancelled")
    assert {p["event"] for _, p in receiver.received} == {"job_completed"}  # subscribed only


def test_receiver_down_at_first_still_gets_events(daemon_factory):
    port = free_port()
    d = daemon_factory(fake_gpus="1")
    configure(d, port, events='["job_completed"]')
    d.start()
    d.ok("gbatch", "true")
    d.wait_state(1, "Finished")
    receiver = Receiver(port).start()                      # comes up late: retried
    try:
        wait_for(lambda: receiver.events("job_completed"), timeout=20,
                 what="a retried delivery")
    finally:
        receiver.stop()


def test_4xx_is_not_retried(daemon_factory):
    receiver = Receiver(status=404).start()
    try:
        d = daemon_factory(fake_gpus="1")
        configure(d, receiver.port, events='["job_submitted"]')
        d.start()
        d.ok("gbatch", "--gpus", "5", "true")
        d.ok("gbatch", "--gpus", "5", "true")
        # The notifier decides after each answer: a retry is logged as "retry in 1s",
        # dropping as "giving up ... after 1 attempt(s)". Wait for both decisions.
        log = d.logs / "gflowd.log"
        wait_for(lambda: log.read_text().count("after 1 attempt(s): HTTP 404") == 2,
                 timeout=15, what="both events given up after their first attempt")
        assert "retry in" not in log.read_text()
        assert sorted(p["job"]["id"] for p in receiver.events("job_submitted")) == [1, 2]
    finally:
        receiver.stop()


def test_restart_between_event_and_delivery_still_delivers(daemon_factory):
    port = free_port()
    d = daemon_factory(fake_gpus="1")
    configure(d, port, events='["job_submitted"]')
    d.start()
    d.ok("gbatch", "--gpus", "5", "echo", "owed")          # receiver down: stays owed
    d.ok("gflowd", "down")
    receiver = Receiver(port).start()
    try:
        d.start()
        wait_for(lambda: receiver.events("job_submitted"), timeout=20,
                 what="delivery after the restart")
        assert receiver.events("job_submitted")[0]["job"]["id"] == 1
    finally:
        receiver.stop()


def test_event_stream(daemon):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=20)
    conn.request("GET", "/events?events=job_completed")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/event-stream")
    assert resp.readline().startswith(b": gflow")
    resp.readline()
    daemon.ok("gbatch", "echo", "streamed")
    lines = [resp.readline() for _ in range(3)]
    assert lines[1] == b"event: job_completed\n"
    payload = json.loads(lines[2][len(b"data: "):])
    assert payload["job"]["id"] == 1 and payload["job"]["state"] == "Finished"
    conn.close()
