"""The worker channels (gflow.ipc): a scheduler handover loses no request, a crash repeats
only what is safe to repeat, and a worker dying mid-handshake blocks nobody."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest

from gflow.ipc import Hub, HubClient, RequestClient


def address() -> str:
    return f"\0gflow-test-{os.getpid()}-{time.monotonic_ns()}"


class FakeScheduler:
    """A hub plus a thread that answers each request with (200, {op, payload, name})."""

    def __init__(self, addr: str, key: bytes, name: str, answer: bool = True):
        self.hub = Hub(addr, key)
        self.name = name
        self.answer = answer
        self.handled: list = []           # requests answered
        self.received: list = []          # requests seen
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _serve(self, timeout: float, awaiting: set) -> None:
        try:
            peer, msg = self.hub.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        if msg[0] == "req":
            _, corr, op, payload = msg[:4]      # then the caller (gflow.identity)
            self.received.append(payload)
            if self.answer:
                self.handled.append(payload)
                peer.send(("rep", corr, 200, {"op": op, "payload": payload, "by": self.name}))
        elif msg[0] in ("closing_ack", "disconnected"):
            awaiting.discard(peer)

    def _run(self) -> None:
        while not self.stop.is_set():
            self._serve(0.05, set())

    def close_gracefully(self) -> None:
        """What the scheduler worker does on SIGTERM (SchedulerLoop.drain)."""
        self.stop.set()
        self.thread.join()
        awaiting = self.hub.begin_close()
        deadline = time.monotonic() + 5
        while awaiting and time.monotonic() < deadline:
            self._serve(0.05, awaiting)
        assert not awaiting
        while not self.hub.inbox.empty():
            self._serve(0, set())
        self.hub.close()

    def crash(self) -> None:
        """Vanish without answering what is pending (a kill -9)."""
        self.stop.set()
        self.thread.join()
        self.hub.close()


def wait_connected(client, timeout=5.0):
    channel = getattr(client, "channel", client)
    assert channel.ready.wait(timeout)


def test_handover_under_concurrent_requests_loses_nothing():
    addr, key = address(), os.urandom(16)
    first = FakeScheduler(addr, key, "first")
    client = RequestClient(addr, key, "api", unsafe_ops=frozenset({"submit"}))
    wait_connected(client)
    answers, errors = [], []
    stop = threading.Event()

    def caller(n):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                status, body = client.request("submit", (n, i), timeout=20)
                answers.append((body["payload"], body["by"]))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    while len(answers) < 50:
        time.sleep(0.01)
    first.close_gracefully()
    time.sleep(0.2)                       # requests wait for the next scheduler meanwhile
    second = FakeScheduler(addr, key, "second")
    deadline = time.monotonic() + 10
    while not any(by == "second" for _, by in answers):
        assert time.monotonic() < deadline, "nothing reached the second scheduler"
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    # Every change was made exactly once, by one of the two schedulers.
    made = [tuple(p) for p in first.handled + second.handled]
    assert sorted(made) == sorted(tuple(p) for p, _ in answers)
    assert len(set(made)) == len(made)
    second.crash()


def test_after_a_crash_reads_are_repeated_and_changes_are_not():
    addr, key = address(), os.urandom(16)
    mute = FakeScheduler(addr, key, "mute", answer=False)
    client = RequestClient(addr, key, "api", unsafe_ops=frozenset({"submit"}))
    wait_connected(client)
    results = {}

    def call(op):
        try:
            results[op] = client.request(op, op, timeout=20)
        except RequestClient.Unavailable as exc:
            results[op] = exc

    threads = [threading.Thread(target=call, args=(op,)) for op in ("list_jobs", "submit")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(mute.received) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    mute.crash()
    second = FakeScheduler(addr, key, "second")
    for t in threads:
        t.join(20)
    assert results["list_jobs"][1]["by"] == "second"
    assert isinstance(results["submit"], RequestClient.Unavailable)
    assert "may or may not" in str(results["submit"])
    assert [p for p in second.handled] == ["list_jobs"]
    second.crash()


def test_replies_reach_an_older_peer_of_the_same_role():
    """During a reload two API workers are connected at once: both get their replies."""
    addr, key = address(), os.urandom(16)
    sched = FakeScheduler(addr, key, "s")
    old = RequestClient(addr, key, "api")
    wait_connected(old)
    new = RequestClient(addr, key, "api")
    wait_connected(new)
    time.sleep(0.05)
    assert old.request("a", 1, timeout=5)[1]["payload"] == 1
    assert new.request("b", 2, timeout=5)[1]["payload"] == 2
    sched.crash()


def test_a_worker_dying_mid_handshake_does_not_block_the_hub():
    addr, key = address(), os.urandom(16)
    sched = FakeScheduler(addr, key, "s")
    # Connect and hang up at once, and connect and never answer the challenge.
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr)
        s.close()
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(addr)
    try:
        client = RequestClient(addr, key, "api")
        wait_connected(client)
        assert client.request("x", 1, timeout=5)[0] == 200
    finally:
        silent.close()
        sched.crash()


def test_wrong_key_is_rejected_and_right_key_still_works():
    addr, key = address(), os.urandom(16)
    sched = FakeScheduler(addr, key, "s")
    got = []
    bad = HubClient(addr, b"wrong", "intruder", got.append)
    time.sleep(0.3)
    assert not bad.ready.is_set()
    bad.close()
    client = RequestClient(addr, key, "api")
    wait_connected(client)
    assert client.request("x", 1, timeout=5)[0] == 200
    sched.crash()


def test_no_scheduler_at_all_times_out():
    client = RequestClient(address(), b"k", "api")
    started = time.monotonic()
    with pytest.raises(RequestClient.Unavailable, match="not reachable"):
        client.request("x", timeout=0.3)
    assert time.monotonic() - started < 2
