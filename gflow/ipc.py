"""Message channels between the daemon's workers, built on multiprocessing connections."""

# The scheduler hosts a listener on a Unix socket in a private (0700) directory of the
# daemon's data dir, `<data_dir>/run/hub.sock`; the API and launcher workers connect to it
# and authenticate with the daemon's random key. Not an abstract socket: those names are
# one namespace for every account, so another user could take the name first and keep
# gflowd from starting. We do not use `multiprocessing.Queue`:
# its writers share one semaphore, and a writer killed with SIGKILL while holding it (or
# half-way through a write) wedges or corrupts the queue for every later writer. A
# connection per worker dies with its worker, and the restarted worker simply reconnects.

from __future__ import annotations

import errno
import itertools
import logging
import os
import queue
import socket
import stat
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import (Client, Connection, answer_challenge,
                                        deliver_challenge)
from pathlib import Path
from typing import Any, Callable, Optional

from gflow.identity import reachable

log = logging.getLogger(__name__)


def hang_up(conn: Connection) -> None:
    """Close a connection so that the other end sees EOF at once. A bare close() does not
    do that while a thread of ours is blocked reading it (the kernel keeps the socket
    until that read returns); shutdown() ends the read and sends the EOF."""
    try:
        dup = socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
    except (OSError, ValueError):
        dup = None
    if dup is not None:
        try:
            dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        dup.close()
    try:
        conn.close()
    except OSError:
        pass


RUN_DIR_NAME = "run"


def private_dir(data_dir) -> Path:
    """`<data_dir>/run`, created 0700. Refused (PermissionError) if another account owns
    it; made 0700 again if it is ours but open to others (sshd's rule: never trust a
    directory someone else could write)."""
    path = Path(data_dir) / RUN_DIR_NAME
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise PermissionError(errno.EPERM, f"{path} belongs to uid {st.st_uid}, not to "
                                               f"gflowd's account: remove it", str(path))
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def channel_address(data_dir, name: str = "hub") -> str:
    """The path of the socket `name` in the daemon's private run directory (created)."""
    return str(private_dir(data_dir) / f"{name}.sock")


def _is_stale(address: str) -> bool:
    """A socket file nobody listens on (its owner was killed -9): safe to replace."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with reachable(address) as where:
            probe.connect(where)
        return False
    except ConnectionRefusedError:
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
    finally:
        probe.close()


def unlink_socket(address: str, only_inode: Optional[int] = None) -> None:
    """Remove a socket file (never anything else); with `only_inode`, only if it is
    still the one we bound (a successor may have bound the name since)."""
    if address.startswith("\0"):
        return
    try:
        with reachable(address) as where:
            st = os.lstat(where)
            if stat.S_ISSOCK(st.st_mode) and only_inode in (None, st.st_ino):
                os.unlink(where)
    except OSError:
        pass


class UnixListener:
    """multiprocessing's Listener, minus its unlink-at-exit of whatever path it bound
    (here a `/proc/self/fd` name, or a file a successor owns by then): it unlinks only
    its own socket file."""

    def __init__(self, address: str, backlog: int = 64):
        self.address = address
        self._inode: Optional[int] = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with reachable(address) as where:
                sock.bind(where)
                if not address.startswith("\0"):
                    self._inode = os.lstat(where).st_ino
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        self._socket = sock

    def accept(self) -> Connection:
        conn, _ = self._socket.accept()
        conn.setblocking(True)
        return Connection(conn.detach())

    def shutdown(self) -> None:
        # shutdown wakes a thread blocked in accept(); close alone would not on Linux.
        self._socket.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._socket.close()
        if self._inode is not None:
            unlink_socket(self.address, self._inode)
            self._inode = None


def connect(address: str, authkey: bytes) -> Connection:
    """multiprocessing's Client for a path of any length."""
    with reachable(address) as where:
        return Client(where, family="AF_UNIX", authkey=authkey)


# A message whose last element is a large bytes payload (a job listing: 72 MB at 100k
# jobs) sends that payload as raw bytes after the pickled rest (issue 21): pickling it
# would copy it once on each side, and multiprocessing's recv_bytes copies it three
# times more (chunks, a BytesIO, its getvalue), each copy of that size fresh memory to
# fault in: 7.4 MB took 7-9 ms through send_bytes/recv_bytes and 1.6-2 ms written and
# read in place. The marker carries the size; the reader reads it straight into one
# bytearray. Only bytes sent by our own workers take this path; the reader checks the
# marker's type, unpickled from that same authenticated channel.
OUT_OF_BAND_MIN = 64 * 1024


class OutOfBand:
    """Stands in a pickled message for the `size` bytes written raw right after it."""

    __slots__ = ("size",)

    def __init__(self, size: int = 0):
        self.size = size


def send_message(conn: Connection, msg: Any) -> None:
    """conn.send(msg), with a large trailing bytes payload written raw after it (the
    caller holds the connection's write lock: the two must not be split)."""
    if (type(msg) is tuple and msg and type(msg[-1]) is bytes
            and len(msg[-1]) >= OUT_OF_BAND_MIN):
        payload = msg[-1]
        conn.send(msg[:-1] + (OutOfBand(len(payload)),))
        view, fd = memoryview(payload), conn.fileno()
        while view:
            view = view[os.write(fd, view):]
    else:
        conn.send(msg)


def recv_message(conn: Connection) -> Any:
    """conn.recv(), putting back (as a bytearray) a payload `send_message` wrote raw."""
    msg = conn.recv()
    if type(msg) is tuple and msg and type(msg[-1]) is OutOfBand:
        payload = bytearray(msg[-1].size)
        view, fd, got = memoryview(payload), conn.fileno(), 0
        while got < len(payload):
            n = os.readv(fd, [view[got:]])
            if not n:
                raise EOFError("the channel closed inside a message")
            got += n
        msg = msg[:-1] + (payload,)
    return msg


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
                send_message(self.conn, msg)
            return True
        except (OSError, EOFError, ValueError):
            self.alive = False
            return False

    def close(self) -> None:
        self.alive = False
        hang_up(self.conn)      # not under the lock: it also unblocks a stuck send


def _bind_listener(address: str, timeout: float = 10.0) -> UnixListener:
    """Bind the hub's address; a predecessor that is exiting may hold it a moment longer,
    and one that was killed leaves its socket file behind (replaced once nobody answers
    on it). No authkey here: the handshake runs on each connection's own thread (see Hub)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return UnixListener(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            if not address.startswith("\0") and _is_stale(address):
                unlink_socket(address)
                continue
            time.sleep(0.02)


class Hub:
    """The scheduler's end: accepts workers and funnels every message into one inbox.

    Shutting down without losing a request (`begin_close`): the hub sends ("closing",)
    to every peer; a peer answers ("closing_ack",) and from then on holds its requests
    for the next scheduler. A channel is ordered, so every request a peer sent before
    its ack is already in the inbox when the ack arrives there: the scheduler answers
    everything up to the last ack, then closes.
    """

    def __init__(self, address: str, authkey: bytes):
        self.authkey = authkey
        self.listener = _bind_listener(address)
        self._closed = False
        self.inbox: "queue.Queue[tuple[Optional[Peer], Any]]" = queue.Queue()
        self.peers: dict[str, Peer] = {}     # the newest peer of each role (for send_to)
        self.all_peers: set[Peer] = set()    # two API workers overlap during a reload
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, name="hub-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        # The authentication handshake is not done here (Listener(authkey=...) would do
        # it inside accept()): a worker that dies half-way through it (a reload retires
        # workers while they reconnect) would stall or end the accept loop for everyone.
        while not self._closed:
            try:
                conn = self.listener.accept()
            except OSError as exc:
                if self._closed:
                    return
                log.warning("channel accept failed: %s", exc)
                time.sleep(0.01)
                continue
            threading.Thread(target=self._read_loop, args=(conn,), daemon=True).start()

    def _read_loop(self, conn: Connection) -> None:
        try:
            deliver_challenge(conn, self.authkey)
            answer_challenge(conn, self.authkey)
            hello = conn.recv()
        except (AuthenticationError, EOFError, OSError) as exc:
            log.debug("channel handshake failed: %s", exc)
            conn.close()
            return
        except Exception as exc:  # a garbled handshake
            log.warning("rejected a channel connection: %s", exc)
            conn.close()
            return
        role = hello[1] if isinstance(hello, tuple) and hello and hello[0] == "hello" else "?"
        peer = Peer(conn, role)
        # An older peer of the same role (the API worker being replaced) keeps its
        # channel: the replies to its requests in flight still go to it.
        with self._lock:
            self.peers[role] = peer
            self.all_peers.add(peer)
        self.inbox.put((peer, ("connected", role)))
        while True:
            try:
                msg = recv_message(conn)
            except (EOFError, OSError):
                break
            except Exception as exc:  # an unpicklable message: drop it, keep the channel
                log.error("undecodable message from %s: %s", role, exc)
                continue
            self.inbox.put((peer, msg))
            del msg             # (the last request is not kept alive by this thread)
        peer.alive = False
        with self._lock:
            self.all_peers.discard(peer)
            if self.peers.get(role) is peer:
                del self.peers[role]
        self.inbox.put((peer, ("disconnected", role)))

    def send_to(self, role: str, msg: Any) -> bool:
        peer = self.peers.get(role)
        return peer.send(msg) if peer is not None else False

    def send_all(self, role: str, msg: Any) -> int:
        """Send to every live peer of a role (both API workers during a reload)."""
        with self._lock:
            peers = [p for p in self.all_peers if p.role == role]
        return sum(1 for p in peers if p.send(msg))

    def _close_listener(self) -> None:
        self._closed = True
        try:
            self.listener.shutdown()
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass

    def begin_close(self) -> set:
        """Stop accepting and ask every peer to hold further requests; returns the peers
        whose ("closing_ack",) (or disconnection) the caller should wait for."""
        self._close_listener()
        with self._lock:
            peers = list(self.all_peers)
        return {p for p in peers if p.send(("closing",))}

    def close(self) -> None:
        self._close_listener()
        with self._lock:
            peers = list(self.all_peers)
        for peer in peers:
            peer.close()


class HubClient:
    """A worker's end: reconnects forever; `on_message` runs on the reader thread.

    `ready` is set while the channel is connected and the scheduler is not closing it:
    a ("closing",) from the hub is acknowledged at once and `send` refuses (returns
    False) until the next scheduler is connected.
    """

    RECONNECT_MAX_DELAY = 0.1

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
        self.ready = threading.Event()
        self._closing = False
        self._closed = False
        threading.Thread(target=self._run, name=f"{role}-channel", daemon=True).start()

    def _run(self) -> None:
        delay = 0.005
        while not self._closed:
            try:
                conn = connect(self.address, self.authkey)
                conn.send(("hello", self.role))
            except (OSError, EOFError):
                time.sleep(delay)
                delay = min(delay * 2, self.RECONNECT_MAX_DELAY)
                continue
            except Exception as exc:  # e.g. an authentication failure during a handover
                log.warning("channel connection failed: %s", exc)
                time.sleep(self.RECONNECT_MAX_DELAY)
                continue
            delay = 0.005
            with self._lock:
                self._conn = conn
                self._closing = False
            self.connected.set()
            self.ready.set()
            if self.on_connect:
                self.on_connect()
            while True:
                try:
                    msg = recv_message(conn)
                except (EOFError, OSError):
                    break
                except Exception as exc:
                    log.error("undecodable message on the %s channel: %s", self.role, exc)
                    continue
                if isinstance(msg, tuple) and msg and msg[0] == "closing":
                    with self._lock:
                        self._closing = True
                        self.ready.clear()
                        try:
                            conn.send(("closing_ack",))
                        except (OSError, EOFError, ValueError):
                            pass
                    continue
                try:
                    self.on_message(msg)
                except Exception:
                    log.exception("error handling message %r", msg[:1] if isinstance(msg, tuple) else msg)
                # Not kept until the next message arrives: it may hold a 72 MB listing.
                del msg
            with self._lock:
                self.ready.clear()
                self.connected.clear()
                self._conn = None
            try:
                conn.close()
            except OSError:
                pass
            if self.on_disconnect:
                self.on_disconnect()

    def send(self, msg: Any) -> bool:
        """True if the message was written to a channel that will read it."""
        with self._lock:
            conn = self._conn
            if conn is None or self._closing:
                return False
            try:
                send_message(conn, msg)
                return True
            except (OSError, EOFError, ValueError):
                return False

    def close(self) -> None:
        self._closed = True
        conn = self._conn
        if conn is not None:
            hang_up(conn)


class RequestClient:
    """Request/reply over a HubClient with correlation ids (used by the API worker).

    A request that could not be delivered (the scheduler is closing its channel or is
    not connected: a reload or a restart) waits for the next scheduler and is sent
    there. A request that was delivered but whose scheduler vanished before answering
    (a crash) is sent again only if it is safe to repeat (`op` not in `unsafe_ops`);
    otherwise the caller gets Unavailable: the change may or may not have been made.
    """

    class Unavailable(Exception):
        pass

    def __init__(self, address: str, authkey: bytes, role: str = "api",
                 unsafe_ops: frozenset = frozenset()):
        self._ids = itertools.count(1)
        self._pending: dict[int, list] = {}
        self._pending_lock = threading.Lock()
        self.unsafe_ops = frozenset(unsafe_ops)
        self.retried = 0          # requests sent again after a scheduler change (stats)
        # Called on the channel thread with each batch of event payloads (GET /events).
        self.on_events: Optional[Callable[[list], None]] = None
        self.channel = HubClient(address, authkey, role, self._on_message,
                                 on_disconnect=self._fail_pending)

    def _on_message(self, msg: Any) -> None:
        if isinstance(msg, tuple) and msg and msg[0] == "events":
            if self.on_events is not None:
                self.on_events(msg[1])
            return
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
            slot[0].set()  # result stays None: the caller decides to resend or give up

    def request(self, op: str, payload: Any = None, timeout: float = 30.0,
                caller: Optional[dict] = None):
        """Send one request on behalf of `caller` (its wire dict; None = anonymous) and
        wait for its reply; raises Unavailable if it cannot."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.channel.ready.wait(remaining):
                raise self.Unavailable("the scheduler worker is not reachable")
            corr = next(self._ids)
            slot = [threading.Event(), None]
            with self._pending_lock:
                self._pending[corr] = slot
            if not self.channel.send(("req", corr, op, payload, caller)):
                # Not delivered: the scheduler is closing or gone. Wait for the next one.
                with self._pending_lock:
                    self._pending.pop(corr, None)
                time.sleep(0.002)
                continue
            if attempt:
                self.retried += 1
            attempt += 1
            if not slot[0].wait(max(0.0, deadline - time.monotonic())):
                with self._pending_lock:
                    self._pending.pop(corr, None)
                raise self.Unavailable("the scheduler worker did not answer")
            if slot[1] is not None:
                return slot[1]
            if op in self.unsafe_ops:
                raise self.Unavailable("the scheduler worker restarted before answering; "
                                       "the change may or may not have been made")
            log.info("scheduler changed while %s was in flight: sending it again", op)
