"""A real SMTP server in the test process (aiosmtpd) on a free port, keeping what it receives."""

from __future__ import annotations

import email
import email.policy
import socket
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """Start with `with Mailbox() as box:`; `box.messages` are (envelope rcpts, Message).
    `box.reply` set to e.g. "451 try later" answers DATA with it instead of 250."""

    def __init__(self):
        self.port = free_port()
        self.messages: list = []
        self.reply = None
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        if self.reply:
            return self.reply
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        with self.arrived:
            self.messages.append((list(envelope.rcpt_tos), msg))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait(self, count: int, timeout: float = 20.0) -> list:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"expected {count} messages, got {len(self.messages)}: "
                                     + "; ".join(m["Subject"] for _r, m in self.messages))
        return self.messages

    def __enter__(self) -> "Mailbox":
        from aiosmtpd.controller import Controller
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
