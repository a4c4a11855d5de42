"""HTTP client of the gflowd API for the commands and the shell (stdlib only, so it starts fast)."""

from __future__ import annotations

import _socket  # socket.py's C core: the Unix-socket path needs no more (see _SocketReader)
import io
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    import socket
    from typing import Any, Optional

CONNECT_HELP = ("Could not connect to gflowd server. Is the server running?\n"
                "Hint: Start the server with 'gflowd up'")


# What urllib.parse.quote never escapes; the rest is %XX of the UTF-8 bytes. Written out
# because urllib.parse (and the ipaddress it imports) costs a command ~2 ms to import.
_URL_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(value) -> str:
    """urllib.parse.quote(str(value), safe="") (bytes as they are), without urllib."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return "".join(chr(b) if b in _URL_SAFE else "%%%02X" % b for b in data)


def urlencode(items: dict) -> str:
    """urllib.parse.urlencode(items, quote_via=quote, safe="")."""
    return "&".join(_quote(k) + "=" + _quote(v) for k, v in items.items())


class ConnectionFailed(Exception):
    def __init__(self, message: str = CONNECT_HELP):
        super().__init__(message)


class ApiError(Exception):
    """A non-2xx answer; the message is the server's `error` text or its raw body."""

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class Untrusted(ConnectionFailed):
    """The process on the other end is not the daemon this client trusts."""


class NotGflowd(ConnectionFailed):
    """Something other than gflowd answered (a web server's HTML page, say)."""


class _Disconnected(Exception):
    """The server closed a kept-alive connection before answering."""


class _SocketReader(io.RawIOBase):
    """What `sock.makefile("rb")` reads through (socket.SocketIO, reads only), for a
    `_socket.socket` too: socket.py and the selectors it imports cost a command ~2.5 ms
    of imports, and only a TCP connection (socket.create_connection) needs them."""

    def __init__(self, sock) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._sock.recv_into(b)


class _HttpConnection:
    """Just enough HTTP/1.1 for our daemon: keep-alive, Content-Length or chunked bodies.

    `http.client` costs ~15 ms of imports (email, ssl) on every command start; this
    costs none beyond _socket (and socket.py for TCP).
    """

    def __init__(self, host: str, port: int, timeout: Optional[float],
                 unix_socket: Optional[str] = None, trusted_users: tuple = ()):
        self.host, self.port, self.timeout = host, port, timeout
        self.unix_socket = unix_socket
        self.trusted_users = trusted_users
        self.sock: Optional[socket.socket] = None
        self.reader = None

    def _connect(self) -> socket.socket:
        from gflow import identity
        if self.unix_socket:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                identity.unix_call(sock, "connect", self.unix_socket)
                owner = identity.unix_peer_uid(sock)
            except BaseException:
                sock.close()
                raise
            where = self.unix_socket
        else:
            import socket
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            # The kernel lists the owner of the daemon's end of this very connection;
            # a remote daemon cannot be checked this way (and is what its user chose).
            owner = identity.tcp_peer_uid(sock.getpeername(), sock.getsockname())
            where = f"{self.host}:{self.port}"
        try:
            _check_owner(owner, where, self.trusted_users)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.reader = None

    def request(self, method: str, path: str, data: Optional[bytes],
                headers: dict) -> tuple[int, dict, bytes]:
        self.send(method, path, data, headers)
        return self.receive(method)

    def send(self, method: str, path: str, data: Optional[bytes], headers: dict) -> None:
        if self.sock is None:
            self.sock = self._connect()
            self.reader = io.BufferedReader(_SocketReader(self.sock))
        if self.unix_socket:
            host = "localhost"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(data or b'')}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (data or b""))

    def receive(self, method: str) -> tuple[int, dict, bytes]:
        """The answer to the request sent last (`method` is that request's)."""
        status_line = self.reader.readline(65537)
        if not status_line:
            raise _Disconnected()
        try:
            status = int(status_line.split(None, 2)[1])
        except (IndexError, ValueError):
            raise OSError(f"malformed HTTP status line {status_line[:80]!r}") from None
        resp_headers: dict[str, str] = {}
        while True:
            line = self.reader.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif resp_headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.reader.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.reader.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.reader.read(size))
                self.reader.readline(65537)
            body = b"".join(parts)
        elif "content-length" in resp_headers:
            length = int(resp_headers["content-length"])
            body = self.reader.read(length)
            if len(body) < length:
                raise OSError("the connection closed in the middle of a response")
        else:
            body = self.reader.read()
            resp_headers["connection"] = "close"
        if resp_headers.get("connection", "").lower() == "close":
            self.close()
        return status, resp_headers, body


def _check_owner(uid: Optional[int], where: str, trusted_users: tuple) -> None:
    """Refuse a daemon run by an account other than root, this user or a trusted one.

    With the daemon down, anyone may listen on its port or path; a submission (with its
    environment) must not reach them.
    """
    if uid is None or uid == 0 or uid == os.getuid():
        return
    import pwd
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    if name in trusted_users:
        return
    raise Untrusted(f"refusing to talk to {where}: it is served by {name}, not by root or "
                    "you (if your gflowd runs under that account, set [daemon] user = "
                    f'"{name}" or GFLOW_DAEMON_USER={name})')


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "ip6-localhost")


def find_socket(host: str, port: int, configured: Optional[str],
                env=None) -> Optional[str]:
    """The Unix socket of the daemon at host:port, when it is on this machine and has one.

    `configured` is [daemon] socket / GFLOW_DAEMON_SOCKET: a path, "" for none, or None
    for the default places (this account's runtime or data directory, then the system
    service's /run/gflow).
    """
    if configured is not None:
        return configured if configured and os.path.exists(configured) else None
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        return None
    from gflow.paths import client_socket_paths
    for path in client_socket_paths(port, env):
        if os.path.exists(path):
            return path
    return None


class Client:
    def __init__(self, host: str = "localhost", port: int = 59000,
                 timeout: Optional[float] = 60, *, unix_socket: Optional[str] = None,
                 trusted_users: tuple = ()):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.unix_socket = unix_socket
        self.trusted_users = tuple(trusted_users)
        self._conn: Optional[_HttpConnection] = None
        self._prefetched: Optional[str] = None   # a GET sent ahead, its answer not read

    @classmethod
    def from_config(cls, config, timeout: Optional[float] = 60) -> "Client":
        """Over the daemon's Unix socket when it is local and has one, else over TCP."""
        daemon = config.daemon
        return cls(daemon.host, daemon.port, timeout,
                   unix_socket=find_socket(daemon.host, daemon.port, daemon.socket),
                   trusted_users=(daemon.user,) if daemon.user else ())

    @classmethod
    def from_env(cls, host: str, port: int, env=None,
                 timeout: Optional[float] = 60) -> "Client":
        """Like from_config when there is no config file: the environment's
        GFLOW_DAEMON_SOCKET and GFLOW_DAEMON_USER (the config module is not loaded)."""
        env = os.environ if env is None else env
        configured = env.get("GFLOW_DAEMON_SOCKET")
        configured = configured.strip() if configured is not None else None
        user = (env.get("GFLOW_DAEMON_USER") or "").strip()
        return cls(host, port, timeout, unix_socket=find_socket(host, port, configured, env),
                   trusted_users=(user,) if user else ())

    @property
    def address(self) -> str:
        return self.unix_socket or f"{self.host}:{self.port}"

    def close(self) -> None:
        self._prefetched = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> _HttpConnection:
        if self._conn is None:
            self._conn = _HttpConnection(self.host, self.port, self.timeout,
                                         self.unix_socket, self.trusted_users)
        return self._conn

    def prefetch(self, path: str, query: Optional[dict] = None) -> None:
        """Send `GET path?query` now: the same request() later reads its answer instead
        of sending it, so the caller works while the daemon answers. A failure here is
        left for that request() to meet (it then sends the request itself)."""
        if self._prefetched is not None:
            return
        path = _with_query(path, query)
        try:
            self._connection().send("GET", path, None, {"accept": "*/*"})
            self._prefetched = path
        except Exception:
            self.close()
        except BaseException:
            self.close()
            raise

    def _prefetched_answer(self, method: str, path: str, data) -> Optional[tuple]:
        """The answer to a prefetched GET if this is that request, else None (a prefetch
        not asked for is dropped with its connection)."""
        pending, self._prefetched = self._prefetched, None
        if method != "GET" or path != pending or data is not None:
            self.close()
            return None
        try:
            return self._conn.receive(method)
        except (_Disconnected, BrokenPipeError, ConnectionResetError):
            self.close()            # closed by the server: sent again, as request() does
            return None
        except OSError as exc:      # a timeout, say: not waited for twice
            self.close()
            raise ConnectionFailed(f"{CONNECT_HELP}\n({exc})") from None
        except BaseException:
            self.close()
            raise

    def request(self, method: str, path: str, body: Any = None,
                query: Optional[dict] = None, raw: bool = False) -> tuple[int, Any]:
        """(status, decoded body), or the body's bytes with `raw`; raises ConnectionFailed
        when the daemon is unreachable."""
        path = _with_query(path, query)
        want_raw = raw
        headers = {"accept": "*/*"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        answer = (self._prefetched_answer(method, path, data)
                  if self._prefetched is not None else None)
        for attempt in (0, 1):
            if answer is not None:
                status, resp_headers, raw = answer
                break
            try:
                status, resp_headers, raw = self._connection().request(method, path, data,
                                                                       headers)
                break
            except (ConnectionRefusedError, _socket.gaierror, FileNotFoundError):
                self.close()
                raise ConnectionFailed() from None
            except (_Disconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed: retry once on a fresh one.
                self.close()
                if attempt:
                    raise ConnectionFailed() from None
            except OSError as exc:
                self.close()
                raise ConnectionFailed(f"{CONNECT_HELP}\n({exc})") from None
            except BaseException:
                # Interrupted half-way (Ctrl-C): the connection may hold an unread
                # answer that would be taken for the next request's. Start afresh.
                self.close()
                raise
        ctype = resp_headers.get("content-type", "")
        head = raw[:64].lstrip().lower()
        if head.startswith(b"<") and ("html" in ctype.lower()
                                      or head.startswith((b"<!doctype html", b"<html"))):
            # gflowd never answers with markup (its empty replies may say text/html);
            # printing a web server's page helps no one
            raise NotGflowd(f"{self.address} answered with HTML: is it gflowd?")
        if want_raw:
            return status, raw
        if "json" in ctype and raw:
            # json.loads(raw) decodes the bytes to text first; done here, the bytes can go
            # before the parse (issue 21: a listing of 100k jobs is 75 MB of each)
            text = None
            if json.detect_encoding(raw) == "utf-8":
                try:
                    text = raw.decode("utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    pass
                else:
                    raw = None
            try:
                return status, json.loads(raw if text is None else text)
            except ValueError:
                if raw is None:
                    raw = text.encode("utf-8", "surrogatepass")
        return status, raw.decode("utf-8", "replace")

    def call(self, method: str, path: str, body: Any = None,
             query: Optional[dict] = None, ok=(200, 201)) -> Any:
        """Like request(), but a status outside `ok` raises ApiError with the server's text."""
        status, parsed = self.request(method, path, body, query)
        if status not in ok:
            raise ApiError(status, error_text(status, parsed), parsed)
        return parsed

    # --- typed helpers -----------------------------------------------------------------

    def health(self) -> tuple[int, Any]:
        return self.request("GET", "/health")

    def list_jobs(self, *, states=None, users=None, created_after=None,
                  limit=None, offset=None) -> list:
        query = {"state": ",".join(states) if states else None,
                 "user": ",".join(users) if users is not None else None,
                 "created_after": created_after, "limit": limit, "offset": offset}
        return self.call("GET", "/jobs", query=query)

    def get_job(self, job_id: int) -> Optional[dict]:
        status, body = self.request("GET", f"/jobs/{job_id}")
        if status == 404:
            return None
        if status != 200:
            raise ApiError(status, error_text(status, body), body)
        return body

    def submit(self, job: dict) -> dict:
        return self.call("POST", "/jobs", job)

    def submit_batch(self, jobs: list) -> list:
        return self.call("POST", "/jobs/batch", jobs)

    def resolve(self, username: str, shorthand: str) -> int:
        return self.call("GET", "/jobs/resolve-dependency",
                         query={"username": username, "shorthand": shorthand})["job_id"]

    def action(self, job_id: int, action: str) -> tuple[int, Any]:
        return self.request("POST", f"/jobs/{job_id}/{action}")


def _with_query(path: str, query: Optional[dict]) -> str:
    items = {k: v for k, v in query.items() if v is not None} if query else None
    return path + "?" + urlencode(items) if items else path


def error_text(status: int, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    if isinstance(body, str) and body.strip():
        return body.strip()
    return f"the daemon answered HTTP {status}"
