"""Webhook notifications: event payloads, a durable outbox, and retrying delivery off the scheduler's path.

Every event goes to the outbox file (`notify.outbox`, CRC-framed msgpack records,
fsynced in the same batch as the state journal, before the API replies), then to a
delivery thread pool. A target's delivery is acknowledged in the outbox when it
succeeded or was given up; after a crash or restart every unacknowledged (event,
target) pair is delivered again, so delivery is at least once and each payload
carries an `event_id` (also sent as the `X-Gflow-Event-Id` header) for de-duplication.
Retries: 5xx, 429 (honouring `Retry-After`), timeouts and connection errors are
retried with exponential backoff (1, 2, 4 ... 30 s); other 4xx are not (0.4.13 retries
them, spec/scheduler.md W21). A pending retry holds no concurrency permit. One job's
events reach each target in the order they happened: per (target, job) they form a lane,
and only a lane's oldest undelivered event is in flight or waiting to be retried (a
receiver that failed on `job_submitted` gets it again before `job_started`). Different
jobs, reservations and targets are delivered concurrently.
"""

from __future__ import annotations

import heapq
import http.client
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

import msgpack

from gflow import COMPAT_VERSION, __version__

log = logging.getLogger("gflow.notify")

EVENTS = ("job_submitted", "job_started", "job_completed", "job_failed", "job_cancelled",
          "job_timeout", "job_held", "job_released", "job_updated", "gpu_available",
          "reservation_created", "reservation_cancelled", "scheduler_online",
          "gpu_idle_held", "job_retrying", "job_suspended", "job_resumed")
USER_AGENT = f"gflow/{__version__}/webhooks (compatible; gflow {COMPAT_VERSION})"
_FRAME = struct.Struct("<II")


def rfc3339(t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def hms(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def job_payload(job, now: float) -> dict:
    """0.4.13's job object (spec/api.md §9.3), each key omitted when absent, plus ours."""
    from gflow.models import reason_display
    out: dict[str, Any] = {"id": job.id}
    name = os.path.basename(job.script) if job.script else job.command
    if name:
        out["name"] = name
    out["user"] = job.submitted_by
    out["state"] = job.state.value
    if job.started_at is not None:
        end = job.finished_at if job.finished_at is not None else now
        out["runtime"] = hms(end - job.started_at)
    if job.gpu_ids is not None:
        out["gpus"] = list(job.gpu_ids)
    for key in ("submitted_at", "started_at", "finished_at"):
        value = rfc3339(getattr(job, key))
        if value:
            out[key] = value
    reason = reason_display(job.reason)
    if reason:
        out["reason"] = reason
    if job.exit_code is not None:
        out["exit_code"] = job.exit_code
    if job.reason_detail:
        out["reason_detail"] = job.reason_detail
    return out


def reservation_payload(r) -> dict:
    out: dict[str, Any] = {"id": r.id, "user": r.user}
    if "count" in r.gpu_spec:
        out["gpu_count"] = r.gpu_spec["count"]
    else:
        out["gpu_count"] = len(r.gpu_spec["indices"])
        out["gpu_indices"] = list(r.gpu_spec["indices"])
    out.update(start_time=rfc3339(r.start_time), end_time=rfc3339(r.end_time),
               status=r.status.value, created_at=rfc3339(r.created_at))
    if r.cancelled_at is not None:
        out["cancelled_at"] = rfc3339(r.cancelled_at)
    return out


def make_payload(event: str, at: float, host: str, *, job=None, reservation=None,
                 gpu: Optional[dict] = None, text: Optional[str] = None,
                 now: Optional[float] = None) -> dict:
    payload: dict[str, Any] = {
        "event": event, "event_id": uuid.uuid4().hex, "timestamp": rfc3339(at),
        "scheduler": {"host": host, "version": __version__}}
    if text is not None:
        payload["text"] = text
    if job is not None:
        payload["job"] = job_payload(job, now if now is not None else at)
    if reservation is not None:
        payload["reservation"] = reservation_payload(reservation)
    if gpu is not None:
        payload["gpu"] = gpu
    return payload


def payload_user(payload: dict) -> Optional[str]:
    if "job" in payload:
        return payload["job"].get("user")
    if "reservation" in payload:
        return payload["reservation"].get("user")
    if isinstance(payload.get("gpu"), dict):     # gpu_idle_held names the holder
        return payload["gpu"].get("user")
    return None


def wants(target, payload: dict) -> bool:
    """Whether a configured webhook subscribes to this event (and this user)."""
    events = {e.lower() for e in target.events}
    if events and "*" not in events and payload["event"].lower() not in events:
        return False
    if target.filter_users:
        user = payload_user(payload)
        if user is None:
            return False
        return user.lower() in {u.lower() for u in target.filter_users}
    return True


# --- the outbox --------------------------------------------------------------------

class Outbox:
    """Append-only log of events and acknowledgements; the pending set survives restarts."""

    def __init__(self, path, fsync: bool = True):
        self.path = str(path)
        self.fsync = fsync
        self.pending: dict[tuple[str, int], dict] = {}   # (event id, target) -> payload
        self._buffer: list[bytes] = []
        self._lock = threading.Lock()
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        pos = 0
        while pos + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, pos)
            body = data[pos + _FRAME.size: pos + _FRAME.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break        # a torn tail from a crash: everything before it counts
            rec = msgpack.unpackb(body, raw=False)
            if rec["op"] == "event":
                for target in rec["targets"]:
                    self.pending[(rec["payload"]["event_id"], target)] = rec["payload"]
            else:
                self.pending.pop((rec["event_id"], rec["target"]), None)
            pos += _FRAME.size + length
        if pos < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(pos)

    @staticmethod
    def _frame(rec: dict) -> bytes:
        body = msgpack.packb(rec, use_bin_type=True)
        return _FRAME.pack(len(body), zlib.crc32(body)) + body

    def add(self, payload: dict, targets: list[int]) -> None:
        with self._lock:
            self._buffer.append(self._frame({"op": "event", "payload": payload,
                                             "targets": targets}))
            for t in targets:
                self.pending[(payload["event_id"], t)] = payload

    def commit(self) -> None:
        """Write what was added since the last commit, one fsync (the scheduler's batch)."""
        with self._lock:
            if not self._buffer:
                return
            data, self._buffer = b"".join(self._buffer), []
            os.write(self._fd, data)
            if self.fsync:
                os.fsync(self._fd)

    def ack(self, event_id: str, target: int) -> None:
        with self._lock:
            self.pending.pop((event_id, target), None)
            # Acks need no fsync: losing one only means a repeated delivery.
            os.write(self._fd, self._frame({"op": "ack", "event_id": event_id,
                                            "target": target}))
            if not self.pending:
                os.ftruncate(self._fd, 0)    # nothing owed: start the file afresh

    def close(self) -> None:
        os.close(self._fd)


# --- delivery ----------------------------------------------------------------------

@dataclass(order=True)
class _Attempt:
    due: float
    seq: int
    event_id: str = ""
    target: int = 0
    attempt: int = 0


class Notifier:
    """Delivers outbox entries with bounded concurrency; sleeps between retries hold nothing."""

    def __init__(self, config, outbox: Outbox, host: str):
        self.config = config
        # Webhooks, then the e-mail targets (notify_email.py); the outbox names them by index.
        from gflow import notify_email
        self.targets = list(config.webhooks) + notify_email.targets(
            getattr(config, "email", None))
        # job payload -> {"email": [..], "on": [..]} of `gbatch --notify-email`, or None
        self.mail_lookup = None
        self.outbox = outbox
        self.host = host
        self._heap: list[_Attempt] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._slots = threading.Semaphore(max(1, config.max_concurrent_deliveries))
        self._stop = False
        self.sent = 0
        self._pending_queue: list = []
        # (target, ("job", id)) -> event ids not yet delivered, oldest first; only the
        # head is ever scheduled. Events of no job have no lane (no order to keep).
        self._lanes: dict[tuple, list[str]] = {}
        self._lane_of: dict[tuple[str, int], tuple] = {}
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()
        # The outbox keeps events in the order they were recorded.
        self._enqueue(list(outbox.pending), time.monotonic())

    @property
    def active(self) -> bool:
        return bool(self.targets)

    def publish(self, payload: dict) -> None:
        """Record the event in the outbox (durable at the next commit) and queue it."""
        mail = self.mail_lookup(payload) if self.mail_lookup is not None else None
        if mail:
            payload = {**payload, "_mail": mail}     # kept in the outbox, never posted
        targets = [i for i, t in enumerate(self.targets)
                   # e-mail targets (they deliver themselves) decide on their own
                   if (t.wants(payload) if hasattr(t, "deliver") else wants(t, payload))]
        if not targets:
            return
        self.outbox.add(payload, targets)
        self._pending_queue.extend((payload["event_id"], t) for t in targets)

    def flush(self) -> None:
        """After the outbox commit: hand the batch's deliveries to the worker thread."""
        queued, self._pending_queue = self._pending_queue, []
        self._enqueue(queued, time.monotonic())

    @staticmethod
    def _lane(payload: Optional[dict], target: int) -> Optional[tuple]:
        job = (payload or {}).get("job")
        if isinstance(job, dict) and "id" in job:
            return (target, ("job", job["id"]))
        return None

    def _enqueue(self, pairs: list, now: float) -> None:
        for event_id, target in pairs:
            lane = self._lane(self.outbox.pending.get((event_id, target)), target)
            with self._cond:
                if lane is not None:
                    self._lane_of[(event_id, target)] = lane
                    waiting = self._lanes.setdefault(lane, [])
                    waiting.append(event_id)
                    if len(waiting) > 1:
                        continue        # sent when the events before it are done
            self._schedule(event_id, target, 0, now)

    def _done(self, event_id: str, target: int) -> None:
        """A delivery succeeded or was given up: the next event of its lane may go."""
        with self._cond:
            lane = self._lane_of.pop((event_id, target), None)
            waiting = self._lanes.get(lane) if lane is not None else None
            if not waiting or waiting[0] != event_id:
                return
            waiting.pop(0)
            if not waiting:
                del self._lanes[lane]
                return
            following = waiting[0]
        self._schedule(following, target, 0, time.monotonic())

    def _schedule(self, event_id: str, target: int, attempt: int, due: float) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, _Attempt(due, self._seq, event_id, target, attempt))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap
                                          or self._heap[0].due > time.monotonic()):
                    timeout = None if not self._heap else self._heap[0].due - time.monotonic()
                    self._cond.wait(timeout)
                if self._stop:
                    return
                item = heapq.heappop(self._heap)
            self._slots.acquire()
            threading.Thread(target=self._deliver, args=(item,), daemon=True).start()

    def _deliver(self, item: _Attempt) -> None:
        try:
            payload = self.outbox.pending.get((item.event_id, item.target))
            if payload is not None:
                target = self.targets[item.target]
                status, retry_after, error = (target.deliver(payload)
                                              if hasattr(target, "deliver")
                                              else post_json(target, payload))
        finally:
            self._slots.release()
        if payload is None:                  # acknowledged meanwhile: nothing to send
            self._done(item.event_id, item.target)
            return
        if status is not None and 200 <= status < 300:
            self.sent += 1
            self.outbox.ack(item.event_id, item.target)
            self._done(item.event_id, item.target)
            return
        retriable = status is None or status >= 500 or status == 429
        if not retriable or item.attempt >= target.max_retries:
            log.warning("webhook %s: giving up on %s %s after %d attempt(s): %s",
                        target.url, payload["event"], item.event_id, item.attempt + 1,
                        error or f"HTTP {status}")
            self.outbox.ack(item.event_id, item.target)
            self._done(item.event_id, item.target)
            return
        delay = min(2 ** item.attempt, 30)
        if retry_after is not None:
            delay = max(delay, min(retry_after, 300))
        log.info("webhook %s: %s failed (%s); retry in %ss", target.url, payload["event"],
                 error or f"HTTP {status}", delay)
        self._schedule(item.event_id, item.target, item.attempt + 1, time.monotonic() + delay)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()


def post_json(target, payload: dict) -> tuple[Optional[int], Optional[float], Optional[str]]:
    """One POST: (status or None, Retry-After seconds or None, error text or None)."""
    parts = urlsplit(target.url)
    conn_cls = (http.client.HTTPSConnection if parts.scheme == "https"
                else http.client.HTTPConnection)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"content-type": "application/json", "accept": "*/*",
               "user-agent": USER_AGENT, "x-gflow-event-id": payload["event_id"],
               **dict(target.headers)}
    try:
        conn = conn_cls(parts.hostname, parts.port, timeout=target.timeout_secs)
        try:
            public = {k: v for k, v in payload.items() if not k.startswith("_")}
            conn.request("POST", path, body=json.dumps(public).encode(), headers=headers)
            resp = conn.getresponse()
            resp.read()
            retry_after = resp.getheader("retry-after")
            try:
                retry = float(retry_after) if retry_after is not None else None
            except ValueError:
                retry = None
            return resp.status, retry, None
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
