"""Recovery mode: copies aside of a state file we cannot load, 0.4.13's journal, read-only."""

# 0.4.13's rules (spec/api.md §8.3): an unreadable, undecodable or too-new state file is
# never overwritten; it is copied to `<name>.corrupt.<secs>` / `<name>.backup.<secs>`,
# the daemon runs in "journal" mode and writes its snapshots to state.journal.jsonl
# (one JSON line, kind "snapshot"), and when even the journal cannot be written it runs
# "read_only". A non-empty journal not older than state.json is read back at the next
# start. The detail texts are 0.4.13's, since users and scripts match on them.

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any, Callable, Optional

import msgpack

from gflow.errors import StoreError
from gflow.store import fastload
from gflow.store.fileio import FaultCheck, copy_aside
from gflow.store.snapshot import (
    LEGACY_NAME, RUST_RECOVERY_ID, SNAPSHOT_NAME, STATE_VERSION, SUM_NAME, BadContent,
    StoreState, migrate, next_reservation_id, own_snapshot, parse_own_snapshot, parse_state,
    salvage_max_id, snapshot_sum, sorted_reservations, state_path_for, unpack,
)

JOURNAL_NAME = "state.journal.jsonl"

_RECOVERY_SUFFIX = ". gflowd entered recovery mode (journal) to avoid overwriting your state file."


def load_state_file(data_dir: Path, decode_job: Optional[Callable[[dict], Any]] = None
                    ) -> tuple[StoreState, int]:
    """(state, highest id salvaged from a broken file) from state.msgpack or state.json.

    A file that cannot be read or decoded, or is newer than we support, gives a state
    in "journal" mode with 0.4.13's detail text; the file itself is left untouched.
    `decode_job`: see Store.load (jobs of our own snapshot may come back decoded).
    """
    snapshot_path, legacy_path = data_dir / SNAPSHOT_NAME, data_dir / LEGACY_NAME
    if snapshot_path.exists():
        path, decode = snapshot_path, unpack
    elif legacy_path.exists():
        path, decode = legacy_path, json.loads
    else:
        return StoreState(), 0
    try:
        data = path.read_bytes()
    except OSError as e:
        st = StoreState(mode="journal")
        st.detail = (f"Failed to load state file from {data_dir}: Failed to read "
                     f"{path}: {e.strerror or e}" + _RECOVERY_SUFFIX)
        return st, 0
    obj: Any = None
    trusted, parsed = False, None
    recorded = _read_sum(data_dir / SUM_NAME) if path is snapshot_path else None
    if recorded is not None:
        data_sum = snapshot_sum(data)
        trusted = own_snapshot(data, recorded, data_sum)
        if trusted and fastload.usable_for(decode_job):
            parsed = fastload.read(data_dir, data_sum)      # None unless it mirrors `data`
    try:
        if parsed is None and trusted:
            parsed = parse_own_snapshot(data, decode_job)
        if parsed is None:
            obj = decode(data)
            parsed = parse_state(obj, trusted=trusted)
        version, st = parsed
    except (BadContent, ValueError, TypeError, RecursionError, msgpack.UnpackException):
        st = StoreState(mode="journal")
        st.state_backup = copy_aside(path, "corrupt")
        header = f"0x{data[0]:02x}" if data else "none"
        st.detail = (f"Failed to load state file from {data_dir}: Failed to "
                     f"deserialize {path} ({len(data)} bytes, header={header})"
                     + _RECOVERY_SUFFIX)
        return st, salvage_max_id(obj)
    st.gpus_persisted = True
    if version > STATE_VERSION:
        # The unmigrated content stays visible; only the journal is written.
        st.mode = "journal"
        st.state_backup = copy_aside(path, "backup")
        st.detail = (f"State migration failed: State file version {version} is newer "
                     f"than supported version {STATE_VERSION}. Please upgrade gflowd."
                     + _RECOVERY_SUFFIX)
    else:
        migrate(version, st)
    return st, 0


def _read_sum(path: Path) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except OSError:
        return None


def journal_applies(data_dir: Path) -> bool:
    """Whether load() reads the journal back (api.md §8.3 step 3)."""
    # 0.4.13's rule: non-empty, and not older than state.json.
    try:
        js = os.stat(data_dir / JOURNAL_NAME)
    except OSError:
        return False
    if not stat.S_ISREG(js.st_mode) or js.st_size == 0:
        return False
    try:
        return js.st_mtime >= os.stat(data_dir / LEGACY_NAME).st_mtime
    except OSError:
        return True


def merge_journal(data_dir: Path, st: StoreState, notes: list[str]) -> None:
    """Merge the journal's snapshot line into `st` (the journal wins per id)."""
    # Unlike 0.4.13, which swaps the state for the journal's, the journal's jobs and
    # reservations are merged in, so nothing known to either side is lost when a
    # repaired state file meets a recovery-mode journal.
    journal_path = data_dir / JOURNAL_NAME
    try:
        with open(journal_path, "rb") as f:
            first = f.readline()
        line = json.loads(first)
        if not isinstance(line, dict) or line.get("kind") != "snapshot":
            raise BadContent("first line is not a snapshot")
        _, jst = parse_state(line.get("scheduler"))
    except (OSError, BadContent, ValueError, TypeError, RecursionError) as e:
        # Kept aside, since the next snapshot empties the journal.
        copy = copy_aside(journal_path, "corrupt")
        notes.append(f"{JOURNAL_NAME} ignored ({e}); copied to {copy}")
        return
    st.jobs.update(jst.jobs)
    st.jobs = dict(sorted(st.jobs.items()))
    st.reservations.update(jst.reservations)
    st.allowed_gpu_indices = jst.allowed_gpu_indices
    st.gpus_persisted = True
    if jst.next_job_id < RUST_RECOVERY_ID:
        st.next_job_id = max(st.next_job_id, jst.next_job_id)
    st.next_reservation_id = max(st.next_reservation_id, jst.next_reservation_id)
    st.needs_snapshot = True
    notes.append(f"merged {len(jst.jobs)} jobs from {JOURNAL_NAME}")


def probe_journal(path: Path, check_fault: FaultCheck) -> Optional[str]:
    """None when the journal (and its temp file) can be written, else why not."""
    try:
        check_fault("journal-probe", path)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        tmp = path.with_name(path.name + ".tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))
        os.unlink(tmp)
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    return None


def create_empty_journal(path: Path) -> None:
    """Create the journal if missing, as 0.4.13 does at every start."""
    # Harmless if it cannot: nothing reads an absent journal.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError:
        pass


def truncate_journal(path: Path, *, fsync: bool, check_fault: FaultCheck) -> None:
    """Empty a non-empty journal once a normal snapshot holds everything it had."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return
    try:
        check_fault("journal-truncate", path)
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        # Left in place, the stale journal would be merged over newer state at the
        # next start, so this must not pass silently.
        raise StoreError(f"cannot truncate {path}: {e.strerror or e}") from e


def encode_journal(state: StoreState, data_dir: Path, *, ts: Optional[int] = None) -> bytes:
    """state.journal.jsonl's one line: 0.4.13's format, full jobs in the legacy `jobs` array."""
    ids = sorted(state.jobs)
    scheduler = {
        "version": STATE_VERSION,
        "jobs": [state.jobs[i] for i in ids],
        "state_path": state_path_for(data_dir),
        "next_job_id": max(state.next_job_id, (ids[-1] + 1) if ids else 1),
        "allowed_gpu_indices": state.allowed_gpu_indices,
        "reservations": sorted_reservations(state),
        "next_reservation_id": next_reservation_id(state),
    }
    line = {"ts": int(time.time()) if ts is None else ts, "kind": "snapshot",
            "scheduler": scheduler}
    # serde_json's compact form, UTF-8 rather than \u escapes.
    return (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
