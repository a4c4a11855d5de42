"""Who is on the other end of a local socket: the kernel's answer, never the client's word.

Two ways, both without root and without an extra service:
- a Unix socket: `SO_PEERCRED` gives the peer's uid;
- a loopback TCP connection: the peer's socket is one of ours in `/proc/net/tcp` (or
  `tcp6`), where the kernel lists the owner uid of every socket by its address pair
  (identd's method). The same table tells who owns a listening port, which is how a
  client checks that the daemon it talks to is the one it trusts.
Stdlib only (layer L1): the daemon's API worker and the clients both use it.
"""

from __future__ import annotations

import _socket  # socket.py's constants without its import (~2.5 ms with selectors)
import os
import sys

from gflow.record import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    import socket
    from typing import Optional

# grp, pwd, ipaddress and struct are imported where they are used: a client command only
# needs unix_call and unix_peer_uid (or tcp_peer_uid), and every import delays its request.

__all__ = ["Caller", "ANONYMOUS", "caller_for_uid", "unix_peer_uid", "tcp_peer_uid",
           "listener_uid", "is_loopback", "reachable", "unix_call", "SUN_PATH_MAX"]

PROC_NET = "/proc/net"
SUN_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL
TCP_LISTEN = "0A"


class Caller(FrozenRecord):
    """A verified caller; `uid is None` means anonymous (nothing could be verified).

    Immutable, compared and hashed by its four fields (record.FrozenRecord).
    """

    __match_args__ = _field_names = ("uid", "user", "groups", "via")

    uid: Optional[int]
    user: Optional[str]
    groups: tuple[str, ...]
    via: str

    def __init__(self, uid: Optional[int] = None, user: Optional[str] = None,
                 groups: tuple[str, ...] = (), via: str = "anonymous") -> None:
        self._init(uid=uid, user=user, groups=groups, via=via)

    @property
    def anonymous(self) -> bool:
        return self.uid is None

    def to_wire(self) -> dict:
        return {"uid": self.uid, "user": self.user, "groups": list(self.groups),
                "via": self.via}

    @classmethod
    def from_wire(cls, d: Optional[dict]) -> "Caller":
        if not d:
            return ANONYMOUS
        return cls(uid=d.get("uid"), user=d.get("user"),
                   groups=tuple(d.get("groups") or ()), via=d.get("via") or "anonymous")


ANONYMOUS = Caller()


def caller_for_uid(uid: Optional[int], via: str) -> Caller:
    """The caller with that uid, its user name and group names from the account database.

    A uid without an account keeps its number but has no name (it can own nothing).
    """
    if uid is None:
        return Caller(via=via)
    import grp
    import pwd
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return Caller(uid=uid, user=None, groups=(), via=via)
    names = []
    try:
        gids = os.getgrouplist(pw.pw_name, pw.pw_gid)
    except OSError:
        gids = [pw.pw_gid]
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return Caller(uid=uid, user=pw.pw_name, groups=tuple(sorted(set(names))), via=via)


def unix_peer_uid(sock: socket.socket) -> Optional[int]:
    """The uid of the process that connected to this Unix socket (`SO_PEERCRED`)."""
    try:
        # struct ucred {pid_t pid; uid_t uid; gid_t gid;}: three native 32-bit ints
        # (struct.unpack("3i"), without importing struct).
        creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    except OSError:
        return None
    return int.from_bytes(creds[4:8], sys.byteorder, signed=True)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for names and others."""
    import ipaddress
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _proc_hex(ip: str, port: int) -> list[tuple[str, str]]:
    """(table, "ADDR:PORT") forms under which /proc/net lists this endpoint.

    The kernel prints each 32-bit word of the address in host byte order; an IPv4
    endpoint reached through a dual-stack socket appears in tcp6 as ::ffff:a.b.c.d.
    """
    import ipaddress
    import struct
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    forms = []
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        forms.append(("tcp", addr.ipv4_mapped.packed))
        forms.append(("tcp6", addr.packed))
    elif isinstance(addr, ipaddress.IPv4Address):
        forms.append(("tcp", addr.packed))
        forms.append(("tcp6", ipaddress.IPv6Address("::ffff:" + ip).packed))
    else:
        forms.append(("tcp6", addr.packed))
    order = "<" if struct.pack("=I", 1) == struct.pack("<I", 1) else ">"
    out = []
    for table, raw in forms:
        # Each 32-bit word is printed as the hex of the integer read from memory.
        words = struct.unpack(order + "%dI" % (len(raw) // 4), raw)
        text = "".join("%08X" % w for w in words)
        out.append((table, f"{text}:{port:04X}"))
    return out


def _rows(table: str):
    try:
        with open(os.path.join(PROC_NET, table), "rb") as f:
            next(f, None)  # the header
            for line in f:
                parts = line.split()
                if len(parts) >= 8:
                    yield (parts[1].decode(), parts[2].decode(), parts[3].decode(),
                           parts[7].decode())
    except OSError:
        return


def tcp_peer_uid(peer: tuple, server: tuple) -> Optional[int]:
    """The owner of the loopback TCP socket `peer` that is connected to our `server`.

    `peer` and `server` are (ip, port) as this side sees them. None when the peer is
    not on loopback or the kernel does not list it (it went away, or another namespace).
    """
    peer_ip, peer_port = peer[0], int(peer[1])
    server_ip, server_port = server[0], int(server[1])
    if not is_loopback(peer_ip):
        return None
    wanted = {}
    for table, local in _proc_hex(peer_ip, peer_port):
        wanted.setdefault(table, set()).add(local)
    remotes = {form for _t, form in _proc_hex(server_ip, server_port)}
    for table, locals_ in wanted.items():
        for local, remote, _state, uid in _rows(table):
            if local in locals_ and remote in remotes:
                return int(uid)
    return None


def listener_uid(host: str, port: int) -> Optional[int]:
    """The owner of the socket listening on loopback `host:port` (None if none is listed).

    A wildcard listener (0.0.0.0 or ::) also serves loopback, so it counts.
    """
    try:
        candidates = _proc_hex(host, port)
    except ValueError:
        return None
    wildcard = [("tcp", f"00000000:{port:04X}"), ("tcp6", f"{'0' * 32}:{port:04X}")]
    for table, local in candidates + wildcard:
        for loc, _remote, state, uid in _rows(table):
            if loc == local and state == TCP_LISTEN:
                return int(uid)
    return None


class reachable:
    """A name that bind() and connect() accept for the Unix socket `address`
    (`with reachable(path) as where:`).

    sun_path holds 107 bytes and temporary homes are often longer: a long path is
    reached through /proc/self/fd/<O_PATH fd of its directory>/<name>, which the kernel
    resolves. Abstract names ("\\0...") pass through. A class rather than a
    @contextmanager, so that the clients need not import contextlib.
    """

    def __init__(self, address) -> None:
        self._address = address
        self._fd: Optional[int] = None

    def __enter__(self) -> str:
        address = os.fspath(self._address)
        if address.startswith("\0") or len(os.fsencode(address)) <= SUN_PATH_MAX:
            return address
        directory, name = os.path.split(address)
        self._fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._fd}/{name}"

    def __exit__(self, *exc_info) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def unix_call(sock: socket.socket, method: str, path) -> None:
    """`sock.bind(path)` or `sock.connect(path)` for a Unix socket path of any length."""
    with reachable(path) as where:
        getattr(sock, method)(where)
