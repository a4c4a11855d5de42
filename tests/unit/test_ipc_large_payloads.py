"""Large bytes payloads on the workers' channels travel out of band, intact and in order."""

from __future__ import annotations

import os
import queue
import threading
import time

import pytest

from gflow.ipc import OUT_OF_BAND_MIN, Hub, OutOfBand, RequestClient, recv_message, send_message
from multiprocessing import Pipe


def address() -> str:
    return f"\0gflow-test-oob-{os.getpid()}-{time.monotonic_ns()}"


def test_a_large_trailing_bytes_payload_is_sent_as_a_raw_frame_and_put_back():
    a, b = Pipe()
    big = os.urandom(OUT_OF_BAND_MIN) + b"end"
    sender = threading.Thread(target=send_message, args=(a, ("rep", 7, 200, big)))
    sender.start()
    # What is on the wire: the pickled head with a marker naming the size, then the
    # payload's bytes as they are (no frame header of their own).
    head = b.recv()
    assert head[:3] == ("rep", 7, 200) and isinstance(head[3], OutOfBand)
    assert head[3].size == len(big)
    raw = b""
    while len(raw) < len(big):
        raw += os.read(b.fileno(), len(big) - len(raw))
    assert raw == big
    sender.join()
    assert not b.poll(0)            # nothing else was written


def test_recv_message_puts_a_raw_payload_back_between_other_messages():
    a, b = Pipe()
    big = os.urandom(3 * OUT_OF_BAND_MIN + 5)
    msgs = [("rep", 1, 200, b"small"), ("rep", 2, 200, big), ("events", [1]),
            ("rep", 3, 200, big[::-1])]
    sender = threading.Thread(target=lambda: [send_message(a, m) for m in msgs])
    sender.start()
    got = [recv_message(b) for _ in msgs]
    sender.join()
    assert got == msgs
    assert type(got[1][-1]) is bytearray      # read in place, not copied to bytes


def test_a_channel_closed_inside_a_raw_payload_is_an_eof_not_a_short_message():
    a, b = Pipe()
    a.send(("rep", 1, 200, OutOfBand(10)))
    os.write(a.fileno(), b"12345")
    a.close()
    with pytest.raises(EOFError):
        recv_message(b)


def test_small_payloads_and_other_messages_are_unchanged():
    a, b = Pipe()
    small = b"x" * (OUT_OF_BAND_MIN - 1)
    for msg in (("rep", 1, 200, small), ("rep", 2, 200, {"big": b"y" * OUT_OF_BAND_MIN}),
                ("events", [1, 2]), "plain", ()):
        send_message(a, msg)
        got = b.recv()          # one pickled frame, as conn.send would write it
        assert got == msg
    # recv_message reads those frames the same way
    send_message(a, ("rep", 3, 200, small))
    assert recv_message(b) == ("rep", 3, 200, small)


def test_replies_with_large_listings_interleaved_with_small_ones_reach_their_requests():
    addr, key = address(), b"k"
    hub = Hub(addr, key)
    stop = threading.Event()
    sizes = {i: (OUT_OF_BAND_MIN * 3 + i if i % 2 else 10 + i) for i in range(40)}

    def serve():
        while not stop.is_set():
            try:
                peer, msg = hub.inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            if msg[0] == "req":
                n = msg[3]["n"]
                peer.send(("rep", msg[1], 200, bytes([n % 251]) * sizes[n]))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client = RequestClient(addr, key, "api")
    try:
        assert client.channel.ready.wait(5)
        results: dict = {}

        def ask(n):
            results[n] = client.request("list_jobs", {"n": n}, timeout=10)

        threads = [threading.Thread(target=ask, args=(n,)) for n in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert sorted(results) == sorted(sizes)
        for n, (status, body) in results.items():
            assert status == 200
            assert body == bytes([n % 251]) * sizes[n]
    finally:
        stop.set()
        client.channel.close()
        hub.close()
