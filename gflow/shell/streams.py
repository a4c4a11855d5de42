"""The standard streams a classic tool runs with inside the shell.

`_StderrLines` passes a tool's stderr through but replaces the client's "could not
connect" message by the shell's one line; `_tool_stdout` gives a text stream without a
byte layer one, for tools that write bytes to `sys.stdout.buffer`.
"""

from __future__ import annotations

import contextlib
import io
from typing import Callable, Optional

from gflow.client import CONNECT_HELP

class _StderrLines(io.TextIOBase):
    """A tool's stderr: passed through line by line, except the client's "could not
    connect" message (two or three lines), which the shell replaces by its own line."""

    _FIRST, _HINT = CONNECT_HELP.splitlines()[0], CONNECT_HELP.splitlines()[-1]

    def __init__(self, target, on_connection_failed: Callable[[Optional[str]], str]):
        super().__init__()
        self._target = target
        self._on_failed = on_connection_failed
        self._partial = ""
        self._in_message = False
        self._reason: Optional[str] = None
        self.connection_failed = False

    # file-like bits tools may look at
    def isatty(self) -> bool:
        try:
            return self._target.isatty()
        except (AttributeError, ValueError):
            return False

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = self._partial + text
        lines = data.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if line == self._FIRST:
            self._in_message, self._reason = True, None
            self.connection_failed = True
            return
        if self._in_message:
            if line == self._HINT:
                return
            if line.startswith("(") and line.endswith(")") and self._reason is None:
                self._reason = line[1:-1]
                return
            self._emit_message()
        self._target.write(line + "\n")

    def _emit_message(self) -> None:
        self._in_message = False
        self._target.write(self._on_failed(self._reason) + "\n")

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._target.flush()

    def finish(self) -> None:
        if self._partial:
            partial, self._partial = self._partial, ""
            if self._in_message:
                self._emit_message()
            self._target.write(partial)
        if self._in_message:
            self._emit_message()
        self.flush()


class _TextWithBuffer(io.TextIOBase):
    """A text stream without `.buffer` (a StringIO in a transcript, a capture) given one,
    for tools that copy bytes to `sys.stdout.buffer` (`gjob log`)."""

    def __init__(self, target):
        super().__init__()
        import codecs
        self._target = target
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.buffer = self._Bytes(self)

    class _Bytes:
        def __init__(self, outer: "_TextWithBuffer"):
            self._outer = outer

        def write(self, data: bytes) -> int:
            self._outer._target.write(self._outer._decoder.decode(bytes(data)))
            return len(data)

        def flush(self) -> None:
            self._outer.flush()

    def write(self, text: str) -> int:
        return self._target.write(text) or len(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._target.flush()

    def isatty(self) -> bool:
        try:
            return self._target.isatty()
        except (AttributeError, ValueError):
            return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"


def _tool_stdout(stream):
    """`stream` itself when it has a byte layer, else a wrapper that adds one."""
    return stream if hasattr(stream, "buffer") else _TextWithBuffer(stream)
