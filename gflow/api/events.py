"""GET /events: a server-sent-events stream of the scheduler's events for dashboards and the shell."""

from __future__ import annotations

import json
import queue
import threading
from typing import Iterator, Optional

HEARTBEAT_SECS = 15.0
SUBSCRIBER_BACKLOG = 1000


class EventBus:
    """Fans event payloads out to stream subscribers; a subscriber that cannot keep up is
    dropped (its stream ends) rather than slowing everyone down."""

    def __init__(self, max_streams: int):
        self.max_streams = max(1, max_streams)
        self._subs: list[queue.Queue] = []
        self._lock = threading.Lock()

    def publish(self, events: list) -> None:
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                for payload in events:
                    q.put_nowait(payload)
            except queue.Full:
                self._drop(q)

    def _drop(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)
        try:
            q.put_nowait(None)
        except queue.Full:
            pass

    def subscribe(self) -> Optional[queue.Queue]:
        with self._lock:
            if len(self._subs) >= self.max_streams:
                return None
            q: queue.Queue = queue.Queue(SUBSCRIBER_BACKLOG)
            self._subs.append(q)
            return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def stream(self, q: queue.Queue, names: Optional[set], users: Optional[set]) -> Iterator[bytes]:
        try:
            yield b": gflow event stream\n\n"
            while True:
                try:
                    payload = q.get(timeout=HEARTBEAT_SECS)
                except queue.Empty:
                    yield b": keep-alive\n\n"
                    continue
                if payload is None:
                    return
                if names and payload["event"] not in names:
                    continue
                if users is not None:
                    user = (payload.get("job") or payload.get("reservation") or {}).get("user")
                    if user not in users:
                        continue
                data = json.dumps(payload, separators=(",", ":"))
                yield (f"id: {payload['event_id']}\nevent: {payload['event']}\n"
                       f"data: {data}\n\n").encode()
        finally:
            self.unsubscribe(q)
