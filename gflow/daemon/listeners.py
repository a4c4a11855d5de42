"""The daemon's two doors: the TCP port and the Unix socket, opened by the master before any worker."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path
from typing import Optional

from gflow.identity import unix_call


class StartupError(Exception):
    """A problem that stops `gflowd up`, with the setting to change; printed as one line."""


def open_listener(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve daemon host {host!r} ({exc.strerror}): "
                           "set [daemon] host in gflow.toml or GFLOW_DAEMON_HOST") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use: set [daemon] port "
                               "in gflow.toml or GFLOW_DAEMON_PORT") from None
        raise StartupError(f"cannot listen on {host}:{port} ({exc.strerror}): check "
                           "[daemon] host and port") from None
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def socket_path(config, paths, port: int) -> Optional[Path]:
    """The configured Unix socket, the default one for this account and port, or None."""
    configured = config.daemon.socket
    if configured is not None:
        return Path(configured) if configured else None
    return paths.daemon_socket(port)


def _check_socket_dir(directory: Path) -> None:
    """Create the socket's directory 0755 (so every account reaches the socket); refuse
    one that another account owns or others may write (they could swap the socket)."""
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        st = os.lstat(directory)
    except OSError as exc:
        raise StartupError(f"cannot create the socket directory {directory} "
                           f"({exc.strerror}): set [daemon] socket or GFLOW_DAEMON_SOCKET"
                           ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError(f"{directory} is not a directory: set [daemon] socket")
    if st.st_uid != os.geteuid():
        raise StartupError(f"the socket directory {directory} belongs to uid {st.st_uid}, "
                           f"not to this account: remove it or set [daemon] socket")
    if st.st_mode & 0o022:
        raise StartupError(f"the socket directory {directory} is writable by others "
                           f"(mode {stat.S_IMODE(st.st_mode):o}): chmod go-w it")


def open_unix_listener(path: Path) -> socket.socket:
    """Listen on `path` (mode 0666: the kernel tells us who connects, so anyone may)."""
    _check_socket_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise StartupError(f"{path} exists and is not this account's socket: remove it "
                               "or set [daemon] socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            unix_call(probe, "connect", path)
        except OSError:
            os.unlink(path)              # left behind by a daemon that is gone
        else:
            raise StartupError(f"another gflowd serves {path}: stop it or set "
                               "[daemon] socket")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        unix_call(sock, "bind", path)
        os.chmod(path, 0o666)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path} ({exc.strerror}): set [daemon] socket "
                           "or GFLOW_DAEMON_SOCKET") from None
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def remove_unix_socket(sock: Optional[socket.socket], path: Optional[Path]) -> None:
    """Remove our socket file at a clean stop (only if it is still ours)."""
    if sock is None or path is None:
        return
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
            os.unlink(path)
    except OSError:
        pass
    sock.close()
