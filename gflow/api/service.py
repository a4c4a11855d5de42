"""The API worker: serves the Flask app with waitress on the socket the master holds."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Optional

from gflow.ipc import RequestClient
from gflow.workerproc import WorkerContext, setup_worker, signal_ready, stop_event_on

log = logging.getLogger("gflow.api")

DRAIN_SECS = 5.0
# A connection accepted a moment ago may not have sent its request yet: wait for it.
FRESH_CONNECTION_SECS = 0.5


def busy_channels(socket_map: dict) -> list:
    """Connections with a request being read, handled or answered (or too new to tell)."""
    now = time.time()
    busy = []
    for ch in list(socket_map.values()):
        if not hasattr(ch, "requests"):
            continue
        if (ch.requests or getattr(ch, "request", None) is not None
                or getattr(ch, "total_outbufs_len", 0)
                or now - getattr(ch, "last_activity", 0) < FRESH_CONNECTION_SECS):
            busy.append(ch)
    return busy


def main(ctx: WorkerContext, listen_socket: socket.socket,
         unix_socket: Optional[socket.socket] = None, ready=None) -> None:
    setup_worker("api", ctx)
    from waitress.server import BaseWSGIServer, create_server

    from gflow.api import peers
    from gflow.api.app import create_app
    from gflow.scheduler.core import SchedulerCore
    # Changes are not repeated after a scheduler crash (they might have been made).
    bridge = RequestClient(ctx.address, ctx.authkey, "api",
                           unsafe_ops=SchedulerCore.MUTATING)
    app = create_app(bridge, max_body_bytes=ctx.config.api.max_body_bytes,
                     threads=ctx.config.api.threads, config=ctx.config)
    peers.use_peer_tables(ctx.env)
    settings = dict(threads=ctx.config.api.threads, channel_timeout=120,
                    connection_limit=1000, ident="gflowd", backlog=1024,
                    # Large job listings stay in memory instead of spilling to a
                    # temporary file (waitress's default above 1 MB).
                    outbuf_overflow=512 * 1024 * 1024,
                    outbuf_high_watermark=512 * 1024 * 1024)
    socket_map: dict = {}
    server = create_server(app, map=socket_map, sockets=[listen_socket], **settings)
    if unix_socket is not None:
        # Waitress will not mix TCP and Unix sockets in one server: a second one on the
        # same socket map and thread pool serves the Unix socket in the same loop.
        create_server(app, map=socket_map, _dispatcher=server.task_dispatcher,
                      sockets=[unix_socket], **settings)
    peers.install(socket_map)
    listeners = [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]
    stop = stop_event_on()

    def drain_and_exit() -> None:
        # Stop accepting (a sibling worker sharing the socket takes new connections
        # during a reload), let requests in flight finish, then go.
        stop.wait()
        for listener in listeners:
            listener.accepting = False
            try:
                listener.del_channel()
            except Exception:  # the listener may already be gone
                pass
        deadline = time.monotonic() + DRAIN_SECS
        while time.monotonic() < deadline and busy_channels(socket_map):
            time.sleep(0.02)
        log.info("api stopped (pid %d)", os.getpid())
        logging.shutdown()
        os._exit(0)

    threading.Thread(target=drain_and_exit, daemon=True, name="drain").start()
    log.info("api serving on %s:%s (pid %d)", *listen_socket.getsockname()[:2], os.getpid())
    signal_ready(ready)
    server.run()
