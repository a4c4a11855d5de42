"""Who is calling: each connection's verified caller, found once per connection and put into every request's environ.

Waitress hands the app only the peer's address, so the server's channel class is
replaced by one that asks the kernel (SO_PEERCRED on the Unix socket, the owner of the
client's socket in /proc/net/tcp for loopback TCP) when its first request arrives, on
the worker thread, and keeps the answer for the connection's later requests.
"""

from __future__ import annotations

import os
import socket

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from gflow import identity
from gflow.identity import Caller, caller_for_uid

__all__ = ["CALLER_KEY", "identify", "install", "use_peer_tables"]

CALLER_KEY = "gflow.caller"     # environ key: the caller's wire dict


def identify(sock: socket.socket, addr) -> Caller:
    """The verified caller on the other end of an accepted connection."""
    if sock.family == socket.AF_UNIX:
        return caller_for_uid(identity.unix_peer_uid(sock), "unix")
    try:
        uid = identity.tcp_peer_uid(addr, sock.getsockname())
    except (OSError, ValueError):
        uid = None
    return caller_for_uid(uid, "tcp") if uid is not None else Caller(via="tcp")


class IdentifiedTask(WSGITask):
    def get_environment(self):
        environ = super().get_environment()
        environ[CALLER_KEY] = self.channel.caller_wire()
        return environ


class IdentifiedChannel(HTTPChannel):
    task_class = IdentifiedTask
    _caller_wire = None

    def caller_wire(self) -> dict:
        # Requests of one connection are handled one after another, so no lock.
        if self._caller_wire is None:
            self._caller_wire = identify(self.socket, self.addr).to_wire()
        return self._caller_wire


def install(socket_map: dict) -> None:
    """Make every listening server in waitress's socket map identify its callers."""
    for dispatcher in list(socket_map.values()):
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = IdentifiedChannel


def use_peer_tables(env: dict) -> None:
    """GFLOW_PEER_TABLES names another directory of socket tables (tests make the
    owner lookup fail with it); only whoever starts the daemon sets its environment."""
    tables = env.get("GFLOW_PEER_TABLES")
    if tables:
        identity.PROC_NET = os.path.abspath(tables)
