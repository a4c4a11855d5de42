"""The write-ahead log `state.wal`: CRC-framed records, group commit, replay up to a torn tail."""

# WAL records (dicts, msgpack-encoded, applied in order at load; every one is an upsert,
# so replaying a record twice, or on top of a snapshot that already contains it, is
# harmless):
#   {"op": "job", "job": <full job wire dict, models.job_to_wire(job, with_env=True)>}
#   {"op": "reservation", "reservation": <models.reservation_to_wire(r)>}
#   {"op": "meta", "next_job_id": n, "next_reservation_id": m,
#    "allowed_gpu_indices": [..] | None}            (any subset of the three keys)
#   {"op": "meta", "extras": {"quotas": {...}}}     (ours: each key replaces the stored one)
# The two counters only ever grow (a meta record with a lower value is ignored) and end
# above every id seen, so an id is never handed out twice.
#
# WAL framing: 4-byte little-endian payload length, 4-byte little-endian CRC32 of the
# payload, payload. Replay stops at the first frame that is incomplete (a crash
# mid-append) or fails its CRC; replay() cuts the file there at once and reports it in
# the notes that become StoreState.replay_note. Nothing here logs: the caller decides
# what to say.
#
# Segments: a background snapshot (store.py) first renames state.wal to `state.wal.<n>`
# (rotate), so that its records stay on disk until the snapshot holds them. Load replays
# every segment in ascending number, then state.wal; each file is framed the same way.

from __future__ import annotations

import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Optional

import msgpack

from gflow.errors import StoreError
from gflow.store.fileio import FaultCheck, fsync_dir, pwrite_all
from gflow.store.snapshot import (
    FULL_JOB_KEYS, BadContent, StoreState, as_uint, normalize_job, normalize_reservation,
    trusted_job, unpack,
)

WAL_NAME = "state.wal"
_SEGMENT_RE = re.compile(r"^state\.wal\.(\d+)$")

_FRAME = struct.Struct("<II")
_OPS = ("job", "reservation", "meta")


def frame(record: dict) -> bytes:
    """One record's frame: length, CRC32, msgpack payload."""
    payload = msgpack.packb(record, use_bin_type=True)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def read_frames(data: bytes) -> tuple[list[Any], int, Optional[str]]:
    """(records, length of the valid prefix, why replay stopped early or None)."""
    records, off = [], 0
    while off < len(data):
        if len(data) - off < _FRAME.size:
            return records, off, "torn frame header"
        length, crc = _FRAME.unpack_from(data, off)
        end = off + _FRAME.size + length
        if end > len(data):
            return records, off, "torn frame"
        payload = data[off + _FRAME.size:end]
        if zlib.crc32(payload) != crc:
            return records, off, "CRC mismatch"
        try:
            records.append(unpack(payload))
        except Exception:  # any undecodable payload ends replay like a bad CRC
            return records, off, "undecodable frame"
        off = end
    return records, off, None


def apply_record(st: StoreState, rec: Any) -> None:
    """Apply one decoded WAL record to `st`; raises BadContent when it is not valid."""
    if not isinstance(rec, dict):
        raise BadContent("record is not a map")
    op = rec.get("op")
    if op == "job":
        # A CRC-valid record is one we wrote: a full record (models.job_to_wire(...,
        # with_env=True)) is taken as it is, anything else is checked and normalised.
        raw = rec.get("job")
        job = trusted_job(raw, FULL_JOB_KEYS) if type(raw) is dict else None
        if job is None:
            job = normalize_job(raw)
        st.jobs[job["id"]] = job
    elif op == "reservation":
        res = normalize_reservation(rec.get("reservation"))
        st.reservations[res["id"]] = res
    elif op == "meta":
        if "next_job_id" in rec:
            st.next_job_id = max(st.next_job_id, as_uint(rec["next_job_id"], "next_job_id"))
        if "next_reservation_id" in rec:
            st.next_reservation_id = max(
                st.next_reservation_id,
                as_uint(rec["next_reservation_id"], "next_reservation_id"))
        if "allowed_gpu_indices" in rec:
            allowed = rec["allowed_gpu_indices"]
            if allowed is not None:
                if not isinstance(allowed, list):
                    raise BadContent("allowed_gpu_indices: expected an array or nil")
                allowed = [as_uint(i, "allowed_gpu_indices") for i in allowed]
            st.allowed_gpu_indices = allowed
            st.gpus_persisted = True
        if isinstance(rec.get("extras"), dict):       # ours: {"quotas": {...}}, replaced per key
            st.extras.update(rec["extras"])
    else:
        raise BadContent(f"unknown op {op!r}")


def segment_path(data_dir: Path, number: int) -> Path:
    """An older WAL file, `state.wal.<n>`: what state.wal held when a background snapshot
    began (store.py). Load replays the segments in ascending order, then state.wal."""
    return data_dir / f"{WAL_NAME}.{number}"


def list_segments(data_dir: Path) -> list[int]:
    """The numbers of the older WAL files in `data_dir`, ascending (replay order)."""
    try:
        names = os.listdir(data_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_SEGMENT_RE.match, names) if m)


def replay_file(path: Path, st: StoreState, notes: list[str], *,
                fsync: bool) -> tuple[int, bool]:
    """Apply every intact record of one WAL file to `st` and cut a torn or damaged tail
    off it; (length of its valid prefix, False when that cut failed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror or e}") from e
    records, good, why = read_frames(data)
    for rec in records:
        try:
            apply_record(st, rec)
        except BadContent as e:
            # A CRC-valid record we cannot apply is a bug, not a crash: skip it only.
            notes.append(f"{path.name}: skipped a record ({e})")
    st.wal_records += len(records)
    if records:
        st.needs_snapshot = True
    if why is None:
        return good, True
    lost = len(data) - good
    if why in ("CRC mismatch", "undecodable frame"):
        # A complete but damaged frame may have good frames after it: keep them.
        aside = path.with_name(f"{path.name}.corrupt.{int(time.time())}")
        try:
            aside.write_bytes(data[good:])
            os.chmod(aside, 0o600)
        except OSError:
            pass
        notes.append(f"{path.name}: {why} at offset {good}; replay stopped after "
                     f"{len(records)} records, {lost} bytes discarded (kept in "
                     f"{aside.name})")
    else:
        notes.append(f"{path.name}: {why} at offset {good} (crash mid-append); "
                     f"{lost} bytes discarded after {len(records)} records")
    try:
        os.truncate(path, good)
        if fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError:
        return good, False
    return good, True


class WriteAheadLog:
    """One data dir's state.wal: the records buffered for the next commit, the committed
    size, and the open file descriptor. Single writer: the Store that owns it."""

    def __init__(self, path: Path, *, fsync: bool, check_fault: FaultCheck):
        self.path = path
        self.fsync = fsync
        self._check_fault = check_fault
        self._buffer: list[bytes] = []
        self._fd: Optional[int] = None
        self.size = 0  # committed bytes: every frame below this offset is durable
        # Set when bytes past `size` may exist (a failed write, an uncut torn tail):
        # the next commit cuts them off so they never sit between good frames.
        self._tail_suspect = False
        self._new = False

    @property
    def pending(self) -> bool:
        """True when records are buffered that commit() has not yet made durable."""
        return bool(self._buffer)

    def replay(self, st: StoreState, notes: list[str]) -> None:
        """Apply every intact record to `st`, then cut a torn or damaged tail off the file."""
        self.size, cut = replay_file(self.path, st, notes, fsync=self.fsync)
        if not cut:
            self._tail_suspect = True  # the next commit cuts it instead

    def rotate(self, dest: Path) -> None:
        """Rename the file to `dest` (an older segment: see segment_path); the next
        commit starts a fresh file. Buffered records stay buffered, for that file.

        No fsync of the directory here: the first commit to the fresh file fsyncs it
        (a new file), which makes the rename durable before any newer record is."""
        self._close_fd()
        try:
            if self._tail_suspect:
                os.truncate(self.path, self.size)      # never carry bytes past `size`
            os.rename(self.path, dest)
        except OSError as e:
            raise StoreError(f"cannot rename {self.path}: {e.strerror or e}") from e
        self.size = 0
        self._tail_suspect = False

    def append(self, record: dict) -> None:
        """Buffer one record; it is durable only after commit() returns."""
        if not isinstance(record, dict) or record.get("op") not in _OPS:
            raise ValueError(f"not a WAL record: {record!r}")
        # Encoded now, so an unencodable record fails here, at its author.
        self._buffer.append(frame(record))

    def commit(self) -> None:
        """Write every buffered record, then one fsync (group commit).

        On failure raises StoreError and keeps the records buffered: a later commit
        rewrites them from the same offset, so a half-written frame never survives.
        """
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        new_size = self.size + len(data)
        try:
            self._check_fault("wal", self.path)
            fd = self._open()
            pwrite_all(fd, data, self.size)
            if self._tail_suspect:
                os.ftruncate(fd, new_size)
            if self.fsync:
                os.fsync(fd)
                if self._new:
                    fsync_dir(self.path.parent)
        except OSError as e:
            # After a failed write or fsync the page cache cannot be trusted: reopen and
            # rewrite everything on the next try rather than fsync again.
            self._close_fd()
            self._tail_suspect = True
            raise StoreError(f"cannot write {self.path}: {e.strerror or e}") from e
        self._new = False
        self._tail_suspect = False
        self.size = new_size
        self._buffer.clear()

    def truncate(self) -> None:
        """Empty the file (a snapshot now holds its records); buffered records stay."""
        try:
            self._check_fault("wal-truncate", self.path)
            fd = self._open()
            os.ftruncate(fd, 0)
            if self.fsync:
                os.fsync(fd)
        except OSError as e:
            self._close_fd()
            self._tail_suspect = True
            raise StoreError(f"cannot truncate {self.path}: {e.strerror or e}") from e
        self.size = 0
        self._tail_suspect = False

    def close(self) -> None:
        """Release the file and drop uncommitted records (they were never acknowledged)."""
        self._close_fd()
        self._buffer.clear()

    def _open(self) -> int:
        if self._fd is None:
            self._new = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
