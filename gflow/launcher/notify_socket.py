"""Where a job's monitor tells the local launcher that the job ended: a datagram socket in the daemon's private run directory."""

from __future__ import annotations

import errno
import socket
import time

from gflow.identity import reachable
from gflow.ipc import channel_address, unlink_socket


def notify_address(data_dir) -> str:
    """`<data_dir>/run/notify.sock`: monitors send a job's id there when it ends. In the
    daemon's private directory, not the abstract namespace, where any account could take
    the name first (or send us datagrams)."""
    return channel_address(data_dir, "notify")


def bind_notify_socket(address: str, timeout: float = 10.0) -> socket.socket:
    """The predecessor's socket may outlive its lock by a moment while it exits (an
    abstract name); a socket file a killed predecessor left is ours to replace: the
    caller holds the launcher lock, so no other launcher is using it."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if address.startswith("\0"):
                sock.bind(address.encode("latin-1"))
            else:
                unlink_socket(address)
                with reachable(address) as where:
                    sock.bind(where)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
