"""Refuses requests that a web page could have made a browser send: to a name that is not this daemon's (DNS rebinding), from a foreign origin, or with a body that is not JSON (a cross-site form)."""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional
from urllib.parse import urlsplit

from flask import Flask, Response, request

from gflow.api.replies import TEXT

__all__ = ["JSON_REQUIRED", "HostRules", "install", "is_json", "split_host"]

# 0.4.13's own 415 body (axum's Json extractor), so its clients show the same line.
JSON_REQUIRED = "Expected request with `Content-Type: application/json`"
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
CALLER_KEY = "gflow.caller"         # gflow.api.peers puts the verified caller there
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ECHO_MAX = 80                       # a refused value is quoted, cut to this length


def is_json(mimetype: str) -> bool:
    """application/json or a +json type, as axum's Json extractor accepts."""
    return mimetype == "application/json" or (mimetype.startswith("application/")
                                              and mimetype.endswith("+json"))


def split_host(value: str) -> tuple[Optional[str], Optional[int]]:
    """(name, port) of a Host header value: `name`, `name:port`, `[v6]:port` or a bare
    IPv6 address; (None, None) when it is malformed."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        name, rest = v[1:end], v[end + 1:]
        if end < 0 or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None, None
        return name, int(rest[1:]) if rest else None
    if v.count(":") > 1:
        return v, None
    name, sep, port = v.partition(":")
    if sep and not port.isdigit():
        return None, None
    return name.rstrip("."), int(port) if sep else None


class HostRules:
    """The names this daemon answers to: its configured host, localhost, every loopback
    address and [security] allowed_hosts ("*": any); origins in allowed_origins."""

    def __init__(self, daemon_host: str = "localhost", allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = ()):
        extra = [h for h in allowed_hosts if h.strip()]
        self.any_host = any(h.strip() == "*" for h in extra)
        # Ports play no part: a name is this daemon's on whatever port reaches it.
        self.names = frozenset(n for n in (split_host(h)[0] for h in (daemon_host, *extra))
                               if n) | frozenset(LOCAL_NAMES)
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in allowed_origins
                                 if o.strip())

    def own_name(self, name: str) -> bool:
        if name in self.names:
            return True
        try:
            ip = ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            return False
        # ::ffff:127.0.0.1 is loopback too (Python < 3.13 does not say so).
        return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None)
                                      and ip.ipv4_mapped.is_loopback)

    def host_ok(self, value: str) -> bool:
        if self.any_host:
            return True
        name, _port = split_host(value)
        return name is not None and self.own_name(name)

    def origin_ok(self, origin: str, host: Optional[str]) -> bool:
        """Listed in allowed_origins, or the very origin the request was addressed to
        (same host and port as its Host header) on one of this daemon's own names."""
        o = origin.strip().lower().rstrip("/")
        if o in self.origins:
            return True
        try:
            parts = urlsplit(o)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname or host is None:
            return False
        default = 443 if parts.scheme == "https" else 80
        name, host_port = split_host(host)
        return (parts.hostname == name and (port or default) == (host_port or default)
                and self.own_name(name))


def _refuse(status: int, line: str) -> Response:
    resp = Response(line, status=status, content_type=TEXT)
    resp.headers["x-content-type-options"] = "nosniff"
    return resp


def _quote(value: str) -> str:
    return "`" + (value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "...") + "`"


def install(app: Flask, rules: HostRules) -> None:
    """One before_request hook: Host, then Origin, then the body's content type."""

    @app.before_request
    def _guard():
        environ = request.environ
        host = environ.get("HTTP_HOST")
        # Whatever a client sends over the Unix socket is fine (no browser gets there);
        # a request without Host (HTTP/1.0) cannot have come from a rebound name either.
        via = (environ.get(CALLER_KEY) or {}).get("via")
        if host is not None and via != "unix" and not rules.host_ok(host):
            return _refuse(421, f"Host {_quote(host)} does not name this gflowd; add it to "
                                "[security] allowed_hosts to reach the daemon by that name")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not rules.origin_ok(origin, host):
            return _refuse(403, f"Origin {_quote(origin)} may not send requests to this "
                                "gflowd; list it in [security] allowed_origins to allow it")
        # A body that is not JSON is what an HTML form or a "simple" cross-site fetch
        # sends; only JSON (which a browser will not send cross-site unasked) is read.
        has_body = (request.content_length or 0) > 0 or "HTTP_TRANSFER_ENCODING" in environ
        if request.method in BODY_METHODS and has_body and not is_json(request.mimetype):
            return _refuse(415, JSON_REQUIRED)
        return None
