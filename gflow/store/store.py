"""The Store: one data dir's durable state, tying snapshot codec, WAL and recovery mode together."""

# Files in the data dir (spec/api.md §8.1, DESIGN.md §2 and §6):
#   state.msgpack          snapshot in 0.4.13's exact layout (version 4) + our extra keys
#   state.msgpack.tmp      temp file of the atomic snapshot write
#   state.json             legacy snapshot; read when state.msgpack is absent, never written
#   state.wal              our write-ahead log: every record since the last snapshot
#   state.wal.<n>          older WAL segments: what state.wal held when a background
#                          snapshot began; dropped once a snapshot holds them (see below)
#   state.journal.jsonl    0.4.13's recovery journal (one JSON line, kind "snapshot")
#   state.msgpack.sum      "<crc32> <size>" of the state.msgpack we wrote last
#   state.msgpack.jobs     a cache: that state.msgpack's jobs again, decoded fastest
# snapshot.py owns the first three, wal.py the WAL, recovery.py the journal and the
# copies aside, fastload.py the cache; this class decides which a load or write touches.
#
# Background snapshots (snapshot_in_background): state.wal is renamed to the next
# segment and a forked child (background.py) writes state.msgpack from its copy of the
# memory, while new records go to a fresh state.wal. On disk there is always the last
# complete state.msgpack plus every segment and state.wal, which load replays in order:
# so a kill at any moment (of the child or of the scheduler) loses nothing, and a
# replay of segments a newer state.msgpack already holds changes nothing (every record
# is an upsert and the last record of each key in them is what the snapshot holds).
# Only once the child exited 0 are the segments it covered deleted; a synchronous
# snapshot kills a running child first, so two writers never race on state.msgpack.

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import msgpack

from gflow.errors import StoreError
from gflow.store import background, fastload, recovery
from gflow.store.fileio import atomic_write, fsync_dir, gc_paused, replace_unsynced
from gflow.store.recovery import JOURNAL_NAME, encode_journal
from gflow.store.snapshot import (
    LEGACY_NAME, SNAPSHOT_NAME, SUM_NAME, StoreState, next_reservation_id, snapshot_map,
    snapshot_sum,
)
from gflow.store.wal import (
    WAL_NAME, WriteAheadLog, list_segments, replay_file, segment_path,
)


class Store:
    """Owns the files of one data dir. Single writer: the scheduler process.

    Usage: `state = store.load()`; per mutation `store.append(record)`; per batch of
    mutations `store.commit()` (one fsync) before replying; `store.snapshot(state)`
    when `wal_bytes` grows (or at shutdown).
    """

    def __init__(self, data_dir: Path, *, fsync: bool = True):
        self.data_dir = Path(data_dir)
        # Fault injection for tests: fault(op, path) is called before every write; an
        # exception instance it returns is raised as if the OS had raised it. ops:
        # "wal", "wal-truncate", "snapshot", "journal", "journal-truncate", "journal-probe".
        self.fault: Optional[Callable[[str, Path], Optional[BaseException]]] = None
        self.mode = "normal"
        self.journal_merged = False
        self._wal = WriteAheadLog(self.wal_path, fsync=fsync, check_fault=self._check_fault)
        self._segments: dict[int, int] = {}    # older WAL segments on disk: number -> bytes
        self._child: Optional[background.Child] = None

    # The WAL holds the one copy of the flag, so that setting store.fsync reaches it too.
    @property
    def fsync(self) -> bool:
        return self._wal.fsync

    @fsync.setter
    def fsync(self, value: bool) -> None:
        self._wal.fsync = value

    # paths
    @property
    def snapshot_path(self) -> Path:
        return self.data_dir / SNAPSHOT_NAME

    @property
    def legacy_path(self) -> Path:
        return self.data_dir / LEGACY_NAME

    @property
    def wal_path(self) -> Path:
        return self.data_dir / WAL_NAME

    @property
    def journal_path(self) -> Path:
        return self.data_dir / JOURNAL_NAME

    @property
    def pending(self) -> bool:
        """True when records are buffered that the next commit() makes durable."""
        return self._wal.pending

    @property
    def wal_bytes(self) -> int:
        """Committed WAL size, older segments included: the caller snapshots when it grows
        past its threshold (0: state.msgpack alone holds everything)."""
        return self._wal.size + sum(self._segments.values())

    # --- load ---

    def load(self, decode_job: Optional[Callable[[dict], Any]] = None) -> StoreState:
        """State file (or legacy state.json), then the journal rule, then the WAL.

        Never raises for bad content: an unreadable or too-new state file puts the
        returned state in recovery mode ("journal", or "read_only" when the journal
        cannot be written) with 0.4.13's detail text, and the file is left untouched.

        `decode_job` (the scheduler's models.job_from_trusted_wire): the returned jobs
        are `decode_job(wire dict)` instead of the wire dicts; those of our own snapshot
        are decoded while it is read, so that it never exists decoded whole in memory.
        """
        self._ensure_dir()
        self.close()
        notes: list[str] = []
        with gc_paused():
            st, salvaged = recovery.load_state_file(self.data_dir, decode_job)
            if recovery.journal_applies(self.data_dir):
                recovery.merge_journal(self.data_dir, st, notes)
            # A merged journal is folded into state.msgpack (and emptied) by the next
            # snapshot, which the scheduler writes at once; a replayed WAL needs none.
            self.journal_merged = st.needs_snapshot
            self._segments = {}
            for number in list_segments(self.data_dir):
                path = segment_path(self.data_dir, number)
                self._segments[number], _ = replay_file(path, st, notes, fsync=self.fsync)
            self._wal.replay(st, notes)
            if decode_job is not None:
                for jid, job in st.jobs.items():
                    if type(job) is dict:       # from the WAL, a journal, a checked file
                        st.jobs[jid] = decode_job(job)
        # Ids are never reused: above every job seen anywhere, never 0.4.13's 2e9.
        st.next_job_id = max(st.next_job_id, salvaged + 1, max(st.jobs, default=0) + 1)
        st.next_reservation_id = next_reservation_id(st)
        if st.mode == "journal":
            err = recovery.probe_journal(self.journal_path, self._check_fault)
            if err is not None:
                st.mode, st.journal_error = "read_only", err
        else:
            recovery.create_empty_journal(self.journal_path)
        st.replay_note = "; ".join(notes) or None
        self.mode = st.mode
        return st

    def _ensure_dir(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {self.data_dir}: {e.strerror or e}") from e

    # --- write side ---

    def _check_fault(self, op: str, path: Path) -> None:
        if self.fault is not None:
            exc = self.fault(op, path)
            if exc is not None:
                raise exc

    def append(self, record: dict) -> None:
        """Buffer one WAL record; it is durable only after commit() returns."""
        self._wal.append(record)

    def commit(self) -> None:
        """Write every buffered record, then one fsync (group commit).

        On failure raises StoreError and keeps the records buffered: a later commit
        rewrites them from the same offset, so a half-written frame never survives.
        """
        if not self._wal.pending:
            return
        if self.mode == "read_only":
            raise StoreError(f"state is read-only: {self.journal_path} cannot be written")
        self._wal.commit()

    def snapshot(self, state: StoreState) -> None:
        """Write the whole state atomically, then empty the WAL (and a merged journal).

        In journal (recovery) mode the journal line is written instead and state.msgpack
        is never touched. Buffered, uncommitted records stay buffered (they are upserts,
        so replaying them on top of this snapshot changes nothing).
        """
        if self.mode == "read_only":
            raise StoreError(f"state is read-only: {self.journal_path} cannot be written")
        self.stop_background()
        if self.mode == "journal":
            atomic_write(self.journal_path, encode_journal(state, self.data_dir), "journal",
                         fsync=self.fsync, check_fault=self._check_fault)
        else:
            with gc_paused():
                self._write_snapshot_files(state)
            # The journal goes before the WAL: if we die in between, the WAL still holds
            # every change since the journal was written, so replay repairs the merge.
            recovery.truncate_journal(self.journal_path, fsync=self.fsync,
                                      check_fault=self._check_fault)
        # Segments go before state.wal is emptied: a segment replayed over this snapshot
        # without the newer records of state.wal after it would bring back older values.
        self._drop_segments(list(self._segments))
        self._wal.truncate()

    # --- background snapshots (see the top of this module) ---

    def snapshot_in_background(self, make_state: Callable[[], StoreState]) -> bool:
        """Start writing state.msgpack from `make_state()`, called in a forked child.

        False (nothing started) unless the mode is normal, no record awaits its commit
        (the child's copy must hold nothing that is not durable) and no child runs;
        StoreError when state.wal cannot be renamed. Then poll_background() after each
        batch until it reports the end."""
        if self.mode != "normal" or self._wal.pending or self._child is not None:
            return False
        size = self._wal.size
        if size:
            number = max(self._segments, default=0) + 1
            self._wal.rotate(segment_path(self.data_dir, number))
            self._segments[number] = size
        covered = sorted(self._segments)
        if not covered:
            return False                # nothing that state.msgpack lacks
        try:
            pid = background.start(lambda: self._write_in_child(make_state))
        except OSError as e:
            # The segment stays: the next snapshot (in the background or not) covers it.
            raise StoreError(f"cannot start the snapshot writer: {e.strerror or e}") from e
        self._child = background.Child(pid, covered)
        return True

    def _write_in_child(self, make_state: Callable[[], StoreState]) -> None:
        self._write_snapshot_files(make_state())

    def _write_snapshot_files(self, state: StoreState) -> None:
        """state.msgpack (atomic, fsynced as configured), then its sum and its load cache
        (best effort): what a snapshot writes, in the loop or in the background writer."""
        top = snapshot_map(state, self.data_dir)
        data = msgpack.packb(top, use_bin_type=True)
        atomic_write(self.snapshot_path, data, "snapshot", fsync=self.fsync,
                     check_fault=self._check_fault)
        fastload.write(self.data_dir, top, self._write_sum(data))

    @property
    def background_pid(self) -> Optional[int]:
        """The pid of the snapshot writer while one runs (not yet seen to end)."""
        return self._child.pid if self._child is not None else None

    def poll_background(self) -> Optional[str]:
        """Never blocks. None while no writer ended since the last call (or none runs);
        "" when one succeeded (the segments it covered are deleted); else why it failed
        (its segments stay, so the next snapshot covers them)."""
        child = self._child
        if child is None:
            return None
        why = background.poll(child.pid)
        if why is None:
            return None
        self._child = None
        if why:
            return why
        try:
            # As after a synchronous snapshot: a merged journal is emptied (normally it
            # is empty already: the scheduler folds one in at once, synchronously).
            recovery.truncate_journal(self.journal_path, fsync=self.fsync,
                                      check_fault=self._check_fault)
            self._drop_segments(child.segments)
        except StoreError as e:
            return str(e)
        return ""

    def stop_background(self) -> None:
        """Kill a running writer and wait for it; its segments stay (nothing is lost)."""
        child, self._child = self._child, None
        if child is not None:
            background.stop(child.pid)

    def _drop_segments(self, numbers: list[int]) -> None:
        """Delete older WAL segments that state.msgpack now holds (fsynced: see snapshot)."""
        if not numbers:
            return
        try:
            for number in numbers:
                try:
                    os.unlink(segment_path(self.data_dir, number))
                except FileNotFoundError:
                    pass
                self._segments.pop(number, None)
            if self.fsync:
                fsync_dir(self.data_dir)
        except OSError as e:
            raise StoreError(f"cannot delete {WAL_NAME} segments: {e.strerror or e}") from e

    def _write_sum(self, data: bytes) -> Optional[bytes]:
        """Record which state.msgpack we just wrote (snapshot.own_snapshot), so that the next
        load need not check its jobs again; returns the sum, None when it failed. Best
        effort and never fsynced: a missing or stale sum only sends the next load down the
        checked path (and makes fastload's copy of the jobs unusable)."""
        data_sum = snapshot_sum(data)
        return data_sum if replace_unsynced(self.data_dir / SUM_NAME, data_sum) else None

    def close(self) -> None:
        """Release the WAL file; records not yet committed are dropped (never acknowledged).
        A running snapshot writer is stopped (its segments stay on disk)."""
        self.stop_background()
        self._wal.close()
