"""How route handlers reach the scheduler and encode its replies (and API errors) as responses."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request
from werkzeug.wsgi import wrap_file

from gflow.workerproc import release_free_heap

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
# Bodies from this size on (job listings) reach waitress as a file it reads from in
# place: handed over as bytes, it would first copy the whole body into its own buffer.
FILE_BODY_MIN = 256 * 1024


class BufferFile:
    """A read-only, seekable file over a buffer whose reads are views into it: waitress
    sends a large body from it in place (BytesIO would copy a bytearray, and the bytes
    it returns from read() are copies too)."""

    def __init__(self, buffer):
        self._view = memoryview(buffer)
        self._pos = 0

    def read(self, size: int = -1) -> memoryview:
        end = len(self._view) if size is None or size < 0 else self._pos + size
        chunk = self._view[self._pos:end]
        self._pos += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._view, self._pos = memoryview(b""), 0     # views handed out stay valid
        release_free_heap()     # the body (usually its last reference) is freed by now


class ApiError(Exception):
    """Raised by a handler to answer `status` with `body`; create_app's handler encodes it."""

    def __init__(self, status: int, body: Any, text: bool = False):
        super().__init__(status, body)
        self.status, self.body, self.text = status, body, text


def respond(status: int, body: Any = None, *, text: bool = False) -> Response:
    """JSON (pre-encoded bytes pass through untouched) or, for reservation routes, text."""
    if text:
        if isinstance(body, dict) and "error" in body:
            body = body["error"]
        return Response("" if body is None else str(body), status=status, mimetype=None,
                        content_type=TEXT if body is not None else None)
    if isinstance(body, (bytes, bytearray)):
        if len(body) >= FILE_BODY_MIN:
            resp = Response(wrap_file(request.environ, BufferFile(body)), status=status,
                            content_type=JSON, direct_passthrough=True)
            resp.content_length = len(body)
            return resp
        data = bytes(body)
    else:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(data, status=status, content_type=JSON)


def empty(status: int) -> Response:
    return Response(b"", status=status)


def text_reply(status: int, body: Any) -> Response:
    """Reservation routes answer errors in plain text, as 0.4.13 does."""
    if status >= 400:
        return respond(status, body, text=True)
    if body is None:
        return Response(b"", status=status)
    return respond(status, body)


def ask(op: str, payload: Any = None) -> tuple[int, Any]:
    """The scheduler's (status, body) for one op; an unreachable scheduler is a 503."""
    bridge = current_app.config["BRIDGE"]
    try:
        # The verified caller of this connection (gflow.api.peers); none is anonymous.
        return bridge.request(op, payload, caller=request.environ.get("gflow.caller") or {})
    except bridge.Unavailable as exc:
        raise ApiError(503, {"error": f"scheduler unavailable: {exc}"})
