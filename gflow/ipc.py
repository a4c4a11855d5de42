"""Message channels between the daemon's workers, built on multiprocessing connections.

The scheduler hosts a `multiprocessing.connection.Listener` on an abstract Unix socket;
the API and launcher workers connect to it. We do not use `multiprocessing.Queue`:
its writers share one semaphore, and a writer killed with SIGKILL while holding it (or
half-way through a write) wedges or corrupts the queue for every later writer. A
connection per worker dies with its worker, and the restarted worker simply reconnects.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from multiprocessing.connection import Client, Connection, Listener
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)


def channel_address(token: str) -> str:
    """Abstract-namespace socket name: no file to clean up, nothing left after a kill -9."""
    return "\0gflowd-" + token


class Peer:
    """One connected worker as seen by the hub; `send` is safe from any thread."""

    def __init__(self, conn: Connection, role: str):
        self.conn = conn
        self.role = role
        self._lock = threading.Lock()
        self.alive = True

    def send(self, msg: Any) -> bool:
        if not self.alive:
            return False
        try:
            with self._lock:
                self.conn.send(msg)
            return True
        except (OSError, EOFError, ValueError):
            self.alive = False
            return False


class Hub:
    """The scheduler's end: accepts workers and funnels every message into one inbox."""

    def __init__(self, address: str, authkey: bytes):
        self.listener = Listener(address, family="AF_UNIX", authkey=authkey)
        self.inbox: "queue.Queue[tuple[Optional[Peer], Any]]" = queue.Queue()
        self.peers: dict[str, Peer] = {}
        threading.Thread(target=self._accept_loop, name="hub-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except OSError:
                return  # listener closed
            except Exception as exc:  # failed authentication and the like
                log.warning("rejected a channel connection: %s", exc)
                continue
            threading.Thread(target=self._read_loop, args=(conn,), daemon=True).start()

    def _read_loop(self, conn: Connection) -> None:
        try:
            hello = conn.recv()
        except (EOFError, OSError):
            return
        role = hello[1] if isinstance(hello, tuple) and hello and hello[0] == "hello" else "?"
        peer = Peer(conn, role)
        old = self.peers.get(role)
        if old is not None:
            old.alive = False
        self.peers[role] = peer
        self.inbox.put((peer, ("connected", role)))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # an unpicklable message: drop it, keep the channel
                log.error("undecodable message from %s: %s", role, exc)
                continue
            self.inbox.put((peer, msg))
        peer.alive = False
        self.inbox.put((peer, ("disconnected", role)))

    def send_to(self, role: str, msg: Any) -> bool:
        peer = self.peers.get(role)
        return peer.send(msg) if peer is not None else False

    def close(self) -> None:
        try:
            self.listener.close()
        except OSError:
            pass


class HubClient:
    """A worker's end: reconnects forever; `on_message` runs on the reader thread."""

    def __init__(self, address: str, authkey: bytes, role: str,
                 on_message: Callable[[Any], None],
                 on_connect: Optional[Callable[[], None]] = None,
                 on_disconnect: Optional[Callable[[], None]] = None):
        self.address, self.authkey, self.role = address, authkey, role
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self._conn: Optional[Connection] = None
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._closed = False
        threading.Thread(target=self._run, name=f"{role}-channel", daemon=True).start()

    def _run(self) -> None:
        delay = 0.01
        while not self._closed:
            try:
                conn = Client(self.address, family="AF_UNIX", authkey=self.authkey)
                conn.send(("hello", self.role))
            except (OSError, EOFError):
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            delay = 0.01
            with self._lock:
                self._conn = conn
            self.connected.set()
            if self.on_connect:
                self.on_connect()
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    break
                try:
                    self.on_message(msg)
                except Exception:
                    log.exception("error handling message %r", msg[:1] if isinstance(msg, tuple) else msg)
            self.connected.clear()
            with self._lock:
                self._conn = None
            if self.on_disconnect:
                self.on_disconnect()

    def send(self, msg: Any) -> bool:
        with self._lock:
            conn = self._conn
            if conn is None:
                return False
            try:
                conn.send(msg)
                return True
            except (OSError, EOFError, ValueError):
                return False

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except OSError:
                    pass


class RequestClient:
    """Request/reply over a HubClient with correlation ids (used by the API worker)."""

    class Unavailable(Exception):
        pass

    def __init__(self, address: str, authkey: bytes, role: str = "api"):
        self._ids = itertools.count(1)
        self._pending: dict[int, list] = {}
        self._pending_lock = threading.Lock()
        self.channel = HubClient(address, authkey, role, self._on_message,
                                 on_disconnect=self._fail_pending)

    def _on_message(self, msg: Any) -> None:
        if not (isinstance(msg, tuple) and msg and msg[0] == "rep"):
            return
        _, corr, status, body = msg
        with self._pending_lock:
            slot = self._pending.pop(corr, None)
        if slot is not None:
            slot[1] = (status, body)
            slot[0].set()

    def _fail_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot[0].set()  # result stays None: the caller reports "unavailable"

    def request(self, op: str, payload: Any = None, timeout: float = 30.0):
        """Send one request and wait for its reply; raises Unavailable if it cannot."""
        if not self.channel.connected.wait(timeout=min(timeout, 5.0)):
            raise self.Unavailable("the scheduler worker is not reachable")
        corr = next(self._ids)
        slot = [threading.Event(), None]
        with self._pending_lock:
            self._pending[corr] = slot
        if not self.channel.send(("req", corr, op, payload)):
            with self._pending_lock:
                self._pending.pop(corr, None)
            raise self.Unavailable("the scheduler worker is not reachable")
        if not slot[0].wait(timeout) or slot[1] is None:
            with self._pending_lock:
                self._pending.pop(corr, None)
            raise self.Unavailable("the scheduler worker did not answer")
        return slot[1]
