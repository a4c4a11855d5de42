"""Reading one HTTP/1.1 request off a socket, for the tests' stub daemons."""

from __future__ import annotations


def read_request(conn, data: bytes = b""):
    """(method, path, body, what was read past it) of the next request on `conn`, `data`
    being what an earlier read left over; None when the peer closed first."""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, data = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), b"0"))
    while len(data) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    method, path = head.decode().split(" ")[:2]
    return method, path, data[:length], data[length:]
