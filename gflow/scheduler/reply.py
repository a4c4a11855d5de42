"""The reply type every scheduler request handler returns (shared by the core and its ops)."""

from __future__ import annotations

from typing import Any


class Reply(tuple):
    """(status, body) where body is JSON-able, raw bytes (already JSON) or None."""

    def __new__(cls, status: int, body: Any = None):
        return super().__new__(cls, (status, body))


def error(status: int, message: str, **extra) -> Reply:
    return Reply(status, {"error": message, **extra})
