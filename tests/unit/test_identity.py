"""Peer identity from the kernel: SO_PEERCRED and the /proc/net/tcp socket tables."""

from __future__ import annotations

import os
import socket

import pytest

from gflow import identity
from gflow.identity import (
    caller_for_uid, is_loopback, listener_uid, tcp_peer_uid, unix_peer_uid,
)


def test_unix_peer_is_this_process_owner():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert unix_peer_uid(a) == os.getuid()


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_loopback_tcp_peer_and_listener_are_found(family, host):
    srv = socket.socket(family)
    srv.bind((host, 0))
    srv.listen()
    port = srv.getsockname()[1]
    with srv, socket.create_connection((host, port)) as cli:
        conn, addr = srv.accept()
        with conn:
            assert tcp_peer_uid(addr, conn.getsockname()) == os.getuid()
            # Seen from the other end, the same lookup finds the listening side's socket.
            assert tcp_peer_uid(cli.getpeername(), cli.getsockname()) == os.getuid()
        assert listener_uid(host, port) == os.getuid()


def test_ipv4_client_of_a_dual_stack_listener():
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::", 0))
    srv.listen()
    port = srv.getsockname()[1]
    with srv, socket.create_connection(("127.0.0.1", port)):
        conn, addr = srv.accept()
        with conn:
            assert addr[0] == "::ffff:127.0.0.1"
            assert tcp_peer_uid(addr, conn.getsockname()) == os.getuid()
        assert listener_uid("127.0.0.1", port) == os.getuid()


def test_a_failed_lookup_is_anonymous(monkeypatch, tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    with srv, socket.create_connection(srv.getsockname()):
        conn, addr = srv.accept()
        with conn:
            monkeypatch.setattr(identity, "PROC_NET", str(tmp_path))   # no tables
            assert tcp_peer_uid(addr, conn.getsockname()) is None
            assert listener_uid("127.0.0.1", srv.getsockname()[1]) is None


def test_non_loopback_peers_are_never_looked_up():
    assert tcp_peer_uid(("10.1.2.3", 5555), ("10.1.2.4", 59000)) is None
    assert tcp_peer_uid(("192.0.2.7", 5555), ("127.0.0.1", 59000)) is None


def test_is_loopback_decides_by_address_not_by_string():
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("localhost") and not is_loopback("0.0.0.0")
    assert not is_loopback("10.0.0.1") and not is_loopback("::")


def test_caller_for_uid_names_the_account():
    me = caller_for_uid(os.getuid(), "unix")
    assert me.uid == os.getuid() and me.user and me.groups and me.via == "unix"
    ghost = caller_for_uid(2_000_000_123, "tcp")
    assert ghost.uid == 2_000_000_123 and ghost.user is None and not ghost.anonymous
    assert caller_for_uid(None, "remote").anonymous
