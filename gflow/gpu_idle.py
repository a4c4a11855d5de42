"""Idle GPU holders (memory held at low utilisation for too long) and the processes an admin told gflow to ignore."""

# The tracker is pure: the caller passes the time of every sample, so tests drive it
# with a fake clock. A process is identified by (pid, start time): a later process that
# gets the same pid starts with a clean record, and an ignore entry ends with its process.

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

ProcKey = tuple            # (pid, start time or None)


@dataclass
class _Idle:
    since: float
    flagged: bool = False


class IdleTracker:
    """Since when each GPU process has held memory below `util_percent`; flagged once
    that has lasted `after_secs`."""

    def __init__(self, util_percent: float, after_secs: float):
        self.util_percent = util_percent
        self.after_secs = after_secs
        self._idle: dict[ProcKey, _Idle] = {}

    def is_idle_sample(self, holds_memory: bool, util: Optional[float]) -> bool:
        """Unknown utilisation is never idle: we only flag what we can see."""
        return holds_memory and util is not None and util < self.util_percent

    def observe(self, now: float, samples: Iterable[tuple]) -> list:
        """One poll's (key, holds_memory, util) for every GPU process; returns the keys
        that became flagged with this sample. Processes not in `samples` are gone."""
        seen = set()
        newly = []
        for key, holds, util in samples:
            seen.add(key)
            if not self.is_idle_sample(holds, util):
                self._idle.pop(key, None)      # busy again: a new idle spell starts later
                continue
            rec = self._idle.get(key)
            if rec is None:
                rec = self._idle[key] = _Idle(now)
            if not rec.flagged and now - rec.since >= self.after_secs:
                rec.flagged = True
                newly.append(key)
        for key in [k for k in self._idle if k not in seen]:
            del self._idle[key]
        return newly

    def idle_secs(self, key: ProcKey, now: float) -> Optional[float]:
        rec = self._idle.get(key)
        return None if rec is None else max(0.0, now - rec.since)

    def flagged(self, key: ProcKey) -> bool:
        rec = self._idle.get(key)
        return rec is not None and rec.flagged


@dataclass
class IgnoreList:
    """GPU processes an admin took out of the scheduler's way (`gctl gpu-process
    ignore`): their GPU counts as free, their memory still counts as used. Kept in a
    small JSON file beside the state, written before the request is answered."""

    path: Optional[str] = None
    entries: dict = field(default_factory=dict)     # pid -> entry dict

    @classmethod
    def load(cls, path) -> "IgnoreList":
        out = cls(None if path is None else str(path))
        if path is None:
            return out
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            return out
        for entry in data.get("ignored", []) if isinstance(data, dict) else []:
            if isinstance(entry, dict) and isinstance(entry.get("pid"), int) \
                    and not isinstance(entry.get("pid"), bool):
                out.entries[entry["pid"]] = entry
        return out

    def save(self) -> None:
        """Atomically: a temp file, fsynced, renamed (OSError to the caller)."""
        if self.path is None:
            return
        tmp = f"{self.path}.tmp"
        data = json.dumps({"ignored": [self.entries[p] for p in sorted(self.entries)]},
                          indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def has(self, pid: int) -> bool:
        return pid in self.entries

    def add(self, entry: dict) -> None:
        self.entries[entry["pid"]] = entry

    def remove(self, pid: int) -> Optional[dict]:
        return self.entries.pop(pid, None)

    def expire(self, alive: Callable[[int, Optional[float]], bool],
               on_gpu: set) -> list:
        """Drop the entries whose process has ended; returns them. A process we could
        not see (no start time: another PID namespace) ends when no GPU reports it."""
        gone = []
        for pid, entry in list(self.entries.items()):
            started = entry.get("started_at")
            ended = (not alive(pid, started)) if started is not None else pid not in on_gpu
            if ended:
                gone.append(self.entries.pop(pid))
        return gone
