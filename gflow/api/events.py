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

    def __init__(self, max_streams: int, on_count=None):
        self.max_streams = max(1, max_streams)
        self._subs: list[queue.Queue] = []
        self._lock = threading.Lock()
        # Told the number of open streams, so the scheduler builds events only when needed.
        self.on_count = on_count

    def _count_changed(self) -> None:
        if self.on_count is not None:
            try:
                self.on_count(len(self._subs))
            except Exception:  # the stream still works; events may just not be built
                pass

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
        self.unsubscribe(q)
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
        self._count_changed()
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q not in self._subs:
                return
            self._subs.remove(q)
        self._count_changed()

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
