"""The durable store: gflow 0.4.13's `state.msgpack` snapshot plus our CRC-framed write-ahead log `state.wal`."""

# Files in the data dir (spec/api.md §8.1, DESIGN.md §2 and §6):
#   state.msgpack          snapshot in 0.4.13's exact layout (version 4) + our extra keys
#   state.msgpack.tmp      temp file of the atomic snapshot write
#   state.json             legacy snapshot; read when state.msgpack is absent, never written
#   state.wal              our write-ahead log: every record since the last snapshot
#   state.journal.jsonl    0.4.13's recovery journal (one JSON line, kind "snapshot")
#
# WAL records (dicts, msgpack-encoded, applied in order at load; every one is an upsert,
# so replaying a record twice, or on top of a snapshot that already contains it, is
# harmless):
#   {"op": "job", "job": <full job wire dict, models.job_to_wire(job, with_env=True)>}
#   {"op": "reservation", "reservation": <models.reservation_to_wire(r)>}
#   {"op": "meta", "next_job_id": n, "next_reservation_id": m,
#    "allowed_gpu_indices": [..] | None}            (any subset of the three keys)
# The two counters only ever grow (a meta record with a lower value is ignored) and end
# above every id seen, so an id is never handed out twice.
#
# WAL framing: 4-byte little-endian payload length, 4-byte little-endian CRC32 of the
# payload, payload. Replay stops at the first frame that is incomplete (a crash
# mid-append) or fails its CRC; load() cuts the file there at once and reports it in
# StoreState.replay_note. Nothing here logs: the caller decides what to say.

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import msgpack

from gflow.errors import StoreError
from gflow.models import (
    WIRE_KEYS, Job, JobState, job_from_wire, job_to_wire, reservation_from_wire,
    reservation_to_wire,
)

STATE_VERSION = 4
SNAPSHOT_NAME = "state.msgpack"
LEGACY_NAME = "state.json"
WAL_NAME = "state.wal"
JOURNAL_NAME = "state.journal.jsonl"

SPEC_KEYS = (
    "script", "command", "conda_env", "run_dir", "parameters", "submitted_by",
    "submitted_at", "task_id", "redone_from", "auto_close_tmux", "run_name", "project",
    "depends_on", "depends_on_ids", "dependency_mode", "auto_cancel_on_dependency_failure",
)
SPEC_EXTRA_KEYS = ("env",)
RUNTIME_KEYS = (
    "id", "state", "priority", "gpus", "gpu_sharing_mode", "gpu_memory_limit_mb",
    "time_limit", "memory_limit_mb", "gpu_ids", "group_id", "max_concurrent", "started_at",
    "finished_at", "reason",
)
RUNTIME_EXTRA_KEYS = ("exit_code", "reason_detail")
_RUNTIME_REQUIRED = ("id", "state", "priority", "gpus")
_RESERVATION_REQUIRED = ("id", "user", "gpu_spec", "start_time", "duration", "status",
                         "created_at")

_FRAME = struct.Struct("<II")
_OPS = ("job", "reservation", "meta")
_RECOVERY_SUFFIX = ". gflowd entered recovery mode (journal) to avoid overwriting your state file."
# 0.4.13's recovery mode hands out ids from here; a journal it wrote carries such a
# next_job_id, which we ignore so that our ids stay dense.
_RUST_RECOVERY_ID = 2_000_000_000
# Beyond this many missing ids, padding the positional arrays would cost more than the
# compatibility it buys (only 0.4.13 needs positions); the arrays are then written sparse.
_MAX_PLACEHOLDERS = 100_000

# (seconds key, nanoseconds key) of every time-like field, so that the exact integers
# read from a file survive the float round trip through models.Job.
_JOB_TIME_KEYS = {
    "submitted_at": ("secs_since_epoch", "nanos_since_epoch"),
    "started_at": ("secs_since_epoch", "nanos_since_epoch"),
    "finished_at": ("secs_since_epoch", "nanos_since_epoch"),
    "time_limit": ("secs", "nanos"),
}
_RESERVATION_TIME_KEYS = {
    "start_time": ("secs_since_epoch", "nanos_since_epoch"),
    "created_at": ("secs_since_epoch", "nanos_since_epoch"),
    "cancelled_at": ("secs_since_epoch", "nanos_since_epoch"),
    "duration": ("secs", "nanos"),
}


@dataclass
class StoreState:
    """Everything persisted, as wire dicts; plus how load() found it."""

    jobs: dict[int, dict] = field(default_factory=dict)
    reservations: dict[int, dict] = field(default_factory=dict)
    next_job_id: int = 1
    next_reservation_id: int = 1
    allowed_gpu_indices: Optional[list[int]] = None
    mode: str = "normal"                 # "normal" | "journal" (recovery) | "read_only"
    detail: Optional[str] = None         # why recovery mode was entered (0.4.13's text)
    state_backup: Optional[str] = None   # path of the .backup.<secs> / .corrupt.<secs> copy
    journal_error: Optional[str] = None  # why the journal is unwritable (read_only)
    # Our additions, filled by load():
    replay_note: Optional[str] = None    # anomalies met (torn WAL tail, bad journal...)
    wal_records: int = 0                 # WAL records replayed
    # True when allowed_gpu_indices came from a file (state, journal or a WAL meta
    # record): 0.4.13 lets the persisted list, even nil, override config and --gpus.
    gpus_persisted: bool = False
    # True when the loaded state differs from state.msgpack (journal merged, WAL
    # replayed): a snapshot soon folds it in and empties the journal.
    needs_snapshot: bool = False


class _Bad(Exception):
    """A state file or record that does not decode under 0.4.13's rules."""


# --- decoding (tolerant, as 0.4.13's loader) -------------------------------------------

def _uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"{what}: expected an unsigned integer, got {value!r}")
    return value


def _exact_time(value: Any, k_secs: str, k_nanos: str) -> dict:
    # Called only after models validated the value: a 2-array or a map with both keys.
    if isinstance(value, list):
        return {k_secs: value[0], k_nanos: value[1]}
    return {k_secs: value[k_secs], k_nanos: value[k_nanos]}


def normalize_job(raw: Any) -> dict:
    """A full job wire dict (with env) from a tolerant map; raises _Bad when invalid."""
    if not isinstance(raw, dict):
        raise _Bad(f"expected a job map, got {type(raw).__name__}")
    try:
        out = job_to_wire(job_from_wire(raw), with_env=True)
    except (ValueError, TypeError) as e:
        raise _Bad(str(e)) from None
    for key, (ks, kn) in _JOB_TIME_KEYS.items():
        if raw.get(key) is not None:
            out[key] = _exact_time(raw[key], ks, kn)
    return out


def _check_gpu_spec(spec: Any) -> None:
    if isinstance(spec, dict) and len(spec) == 1:
        if "count" in spec:
            _uint(spec["count"], "gpu_spec.count")
            return
        if "indices" in spec and isinstance(spec["indices"], list):
            for i in spec["indices"]:
                _uint(i, "gpu_spec.indices")
            return
    raise _Bad(f"gpu_spec: expected {{'count': n}} or {{'indices': [..]}}, got {spec!r}")


def normalize_reservation(raw: Any) -> dict:
    """A reservation wire dict from a map (every key but cancelled_at required)."""
    if not isinstance(raw, dict):
        raise _Bad(f"expected a reservation map, got {type(raw).__name__}")
    for key in _RESERVATION_REQUIRED:
        if key not in raw:
            raise _Bad(f"reservation: missing field `{key}`")
    _uint(raw["id"], "reservation id")
    if not isinstance(raw["user"], str):
        raise _Bad("reservation user: expected a string")
    _check_gpu_spec(raw["gpu_spec"])
    try:
        out = reservation_to_wire(reservation_from_wire(raw))
    except (ValueError, TypeError, KeyError) as e:
        raise _Bad(f"reservation: {e}") from None
    for key, (ks, kn) in _RESERVATION_TIME_KEYS.items():
        if raw.get(key) is not None:
            out[key] = _exact_time(raw[key], ks, kn)
    return out


def _opt_list(obj: dict, key: str) -> list:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{key}: expected an array")
    return value


def _legacy_jobs(value: Any) -> list[dict]:
    """0.4.13's legacy `jobs`: a list, or a map id -> Job with int or str keys."""
    out = []
    if isinstance(value, list):
        for pos, job in enumerate(value):
            if not isinstance(job, dict):
                raise _Bad("jobs: expected job maps")
            out.append(job if "id" in job else {**job, "id": pos + 1})
    elif isinstance(value, dict):
        for key, job in value.items():
            if not isinstance(job, dict):
                raise _Bad("jobs: expected job maps")
            if "id" not in job:
                try:
                    job = {**job, "id": int(key)}
                except (TypeError, ValueError):
                    raise _Bad(f"jobs: bad key {key!r}") from None
            out.append(job)
    else:
        raise _Bad("jobs: expected an array or a map")
    return out


def _parse_state(obj: Any) -> tuple[int, StoreState]:
    """(version, state) from a decoded state file, journal `scheduler` map or SeqV2 array."""
    if isinstance(obj, list):
        obj = _seqv2_to_map(obj)
    if not isinstance(obj, dict):
        raise _Bad("top level is not a map")
    version = _uint(obj.get("version", STATE_VERSION), "version")
    specs = _opt_list(obj, "job_specs")
    runtimes = _opt_list(obj, "job_runtimes")
    if len(specs) != len(runtimes):
        raise _Bad(f"job_specs has {len(specs)} entries but job_runtimes {len(runtimes)}")
    st = StoreState()
    if runtimes:
        for spec, rt in zip(specs, runtimes):
            if not isinstance(spec, dict) or not isinstance(rt, dict):
                raise _Bad("job_specs/job_runtimes: expected maps")
            for key in _RUNTIME_REQUIRED:
                if key not in rt:
                    raise _Bad(f"job runtime: missing field `{key}`")
            job = normalize_job({**spec, **rt})  # the runtime's keys win
            st.jobs[job["id"]] = job
    elif obj.get("jobs") is not None:
        for raw in _legacy_jobs(obj["jobs"]):
            job = normalize_job(raw)
            st.jobs[job["id"]] = job
    st.jobs = dict(sorted(st.jobs.items()))
    next_job_id = obj.get("next_job_id")
    st.next_job_id = 1 if next_job_id is None else _uint(next_job_id, "next_job_id")
    allowed = obj.get("allowed_gpu_indices")
    if allowed is not None:
        if not isinstance(allowed, list):
            raise _Bad("allowed_gpu_indices: expected an array or nil")
        allowed = [_uint(i, "allowed_gpu_indices") for i in allowed]
    st.allowed_gpu_indices = allowed
    for raw in _opt_list(obj, "reservations"):
        res = normalize_reservation(raw)
        st.reservations[res["id"]] = res
    next_res = obj.get("next_reservation_id")
    st.next_reservation_id = 1 if next_res is None else _uint(next_res, "next_reservation_id")
    return version, st


def _seqv2_to_map(arr: list) -> dict:
    # The very old positional layout [version, [Job..], state_path, next_job_id,
    # allowed_gpu_indices]; array-encoded jobs are read in wire-key order (best effort:
    # anything that does not validate sends the file to recovery, untouched).
    if len(arr) < 2 or not isinstance(arr[1], list):
        raise _Bad("unrecognised array layout")
    jobs = []
    for job in arr[1]:
        if isinstance(job, list):
            job = dict(zip(WIRE_KEYS, job))
        jobs.append(job)
    out = {"version": arr[0], "jobs": jobs}
    if len(arr) > 3:
        out["next_job_id"] = arr[3]
    if len(arr) > 4:
        out["allowed_gpu_indices"] = arr[4]
    return out


def _salvage_max_id(obj: Any) -> int:
    """The highest job id readable from a file that failed validation (0 if none)."""
    best = 0

    def see(value):
        nonlocal best
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _RUST_RECOVERY_ID:
            best = max(best, value)

    if isinstance(obj, list):
        try:
            obj = _seqv2_to_map(obj)
        except _Bad:
            return 0
    if not isinstance(obj, dict):
        return 0
    nxt = obj.get("next_job_id")
    if isinstance(nxt, int) and not isinstance(nxt, bool):
        see(nxt - 1)
    for key in ("job_runtimes", "jobs"):
        group = obj.get(key)
        items = list(group.values()) if isinstance(group, dict) else group
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    see(item.get("id"))
    return best


def _migrate(version: int, st: StoreState) -> None:
    # 0.4.13's chain 0->1->2->3->4 only bumps the number, except v2->v3, which drops
    # reservations.
    if version <= 2:
        st.reservations.clear()
        st.next_reservation_id = 1


def _unpack(data: bytes) -> Any:
    # strict_map_key=False: the legacy `jobs` map may have integer keys.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


# --- encoding ---------------------------------------------------------------------------

_JOB_DEFAULTS = job_to_wire(Job(), with_env=True)


def _placeholder(job_id: int) -> dict:
    job = Job(id=job_id, state=JobState.CANCELLED,
              reason_detail=f"placeholder: no record of job {job_id} was kept")
    return job_to_wire(job, with_env=True)


def _positional_jobs(state: StoreState) -> tuple[list[dict], int]:
    """Jobs in 0.4.13's positional order (index i holds id i+1) and next_job_id."""
    ids = sorted(state.jobs)
    next_job_id = max(state.next_job_id, (ids[-1] + 1) if ids else 1)
    missing = (next_job_id - 1) - len(ids)
    if missing > _MAX_PLACEHOLDERS:
        return [state.jobs[i] for i in ids], next_job_id
    return [state.jobs[i] if i in state.jobs else _placeholder(i)
            for i in range(1, next_job_id)], next_job_id


def _time_sort_key(t: Any) -> tuple:
    if isinstance(t, dict):
        return (t.get("secs_since_epoch", 0), t.get("nanos_since_epoch", 0))
    return (0, 0)


def _sorted_reservations(state: StoreState) -> list[dict]:
    return sorted(state.reservations.values(),
                  key=lambda r: (_time_sort_key(r.get("start_time")), r.get("id", 0)))


def _next_reservation_id(state: StoreState) -> int:
    return max([state.next_reservation_id] + [i + 1 for i in state.reservations])


def state_path_for(data_dir: Path) -> str:
    """The `state_path` 0.4.13 records: the absolute path of <data_dir>/state.json."""
    return os.path.join(os.path.abspath(data_dir), LEGACY_NAME)


def encode_snapshot(state: StoreState, data_dir: Path) -> bytes:
    """state.msgpack's bytes: 0.4.13's version-4 layout, our extras as extra keys."""
    jobs, next_job_id = _positional_jobs(state)
    specs, runtimes = [], []
    for job in jobs:
        specs.append({k: job.get(k, _JOB_DEFAULTS[k]) for k in SPEC_KEYS + SPEC_EXTRA_KEYS})
        runtimes.append({k: job.get(k, _JOB_DEFAULTS[k])
                         for k in RUNTIME_KEYS + RUNTIME_EXTRA_KEYS})
    top = {
        "version": STATE_VERSION,
        "job_specs": specs,
        "job_runtimes": runtimes,
        "state_path": state_path_for(data_dir),
        "next_job_id": next_job_id,
        "allowed_gpu_indices": state.allowed_gpu_indices,
        "reservations": _sorted_reservations(state),
        "next_reservation_id": _next_reservation_id(state),
    }
    return msgpack.packb(top, use_bin_type=True)


def encode_journal(state: StoreState, data_dir: Path, *, ts: Optional[int] = None) -> bytes:
    """state.journal.jsonl's one line: 0.4.13's format, full jobs in the legacy `jobs` array."""
    ids = sorted(state.jobs)
    scheduler = {
        "version": STATE_VERSION,
        "jobs": [state.jobs[i] for i in ids],
        "state_path": state_path_for(data_dir),
        "next_job_id": max(state.next_job_id, (ids[-1] + 1) if ids else 1),
        "allowed_gpu_indices": state.allowed_gpu_indices,
        "reservations": _sorted_reservations(state),
        "next_reservation_id": _next_reservation_id(state),
    }
    line = {"ts": int(time.time()) if ts is None else ts, "kind": "snapshot",
            "scheduler": scheduler}
    # serde_json's compact form, UTF-8 rather than \u escapes.
    return (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _frame(record: dict) -> bytes:
    payload = msgpack.packb(record, use_bin_type=True)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _read_frames(data: bytes) -> tuple[list[Any], int, Optional[str]]:
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
            records.append(_unpack(payload))
        except Exception:  # any undecodable payload ends replay like a bad CRC
            return records, off, "undecodable frame"
        off = end
    return records, off, None


# --- the store --------------------------------------------------------------------------

class Store:
    """Owns the files of one data dir. Single writer: the scheduler process.

    Usage: `state = store.load()`; per mutation `store.append(record)`; per batch of
    mutations `store.commit()` (one fsync) before replying; `store.snapshot(state)`
    when `wal_bytes` grows (or at shutdown).
    """

    def __init__(self, data_dir: Path, *, fsync: bool = True):
        self.data_dir = Path(data_dir)
        self.fsync = fsync
        # Fault injection for tests: fault(op, path) is called before every write; an
        # exception instance it returns is raised as if the OS had raised it. ops:
        # "wal", "wal-truncate", "snapshot", "journal", "journal-truncate", "journal-probe".
        self.fault: Optional[Callable[[str, Path], Optional[BaseException]]] = None
        self.mode = "normal"
        self._buffer: list[bytes] = []
        self._wal_fd: Optional[int] = None
        self._wal_size = 0
        # Set when bytes past _wal_size may exist (a failed write, an uncut torn tail):
        # the next commit cuts them off so they never sit between good frames.
        self._tail_suspect = False
        self._wal_new = False

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
    def wal_bytes(self) -> int:
        """Committed WAL size: the caller snapshots when it grows past its threshold."""
        return self._wal_size

    # --- load ---

    def load(self) -> StoreState:
        """State file (or legacy state.json), then the journal rule, then the WAL.

        Never raises for bad content: an unreadable or too-new state file puts the
        returned state in recovery mode ("journal", or "read_only" when the journal
        cannot be written) with 0.4.13's detail text, and the file is left untouched.
        """
        self._ensure_dir()
        self._close_wal()
        self._buffer.clear()
        notes: list[str] = []
        st, salvaged = self._load_state_file()
        if self._journal_applies():
            self._merge_journal(st, notes)
        self._replay_wal(st, notes)
        # Ids are never reused: above every job seen anywhere, never 0.4.13's 2e9.
        st.next_job_id = max([st.next_job_id, salvaged + 1] + [i + 1 for i in st.jobs])
        st.next_reservation_id = _next_reservation_id(st)
        if st.mode == "journal":
            err = self._probe_journal()
            if err is not None:
                st.mode, st.journal_error = "read_only", err
        else:
            self._create_empty_journal()
        st.replay_note = "; ".join(notes) or None
        self.mode = st.mode
        return st

    def _ensure_dir(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {self.data_dir}: {e.strerror or e}") from e

    def _load_state_file(self) -> tuple[StoreState, int]:
        """(state, highest id salvaged from a broken file)."""
        if self.snapshot_path.exists():
            path, decode = self.snapshot_path, _unpack
        elif self.legacy_path.exists():
            path, decode = self.legacy_path, json.loads
        else:
            return StoreState(), 0
        try:
            data = path.read_bytes()
        except OSError as e:
            st = StoreState(mode="journal")
            st.detail = (f"Failed to load state file from {self.data_dir}: Failed to read "
                         f"{path}: {e.strerror or e}" + _RECOVERY_SUFFIX)
            return st, 0
        obj: Any = None
        try:
            obj = decode(data)
            version, st = _parse_state(obj)
        except (_Bad, ValueError, TypeError, RecursionError, msgpack.UnpackException):
            st = StoreState(mode="journal")
            st.state_backup = self._copy_aside(path, "corrupt")
            header = f"0x{data[0]:02x}" if data else "none"
            st.detail = (f"Failed to load state file from {self.data_dir}: Failed to "
                         f"deserialize {path} ({len(data)} bytes, header={header})"
                         + _RECOVERY_SUFFIX)
            return st, _salvage_max_id(obj)
        st.gpus_persisted = True
        if version > STATE_VERSION:
            # The unmigrated content stays visible; only the journal is written.
            st.mode = "journal"
            st.state_backup = self._copy_aside(path, "backup")
            st.detail = (f"State migration failed: State file version {version} is newer "
                         f"than supported version {STATE_VERSION}. Please upgrade gflowd."
                         + _RECOVERY_SUFFIX)
        else:
            _migrate(version, st)
        return st, 0

    def _copy_aside(self, path: Path, kind: str) -> Optional[str]:
        dst = path.with_name(f"{path.name}.{kind}.{int(time.time())}")
        try:
            shutil.copyfile(path, dst)
            os.chmod(dst, 0o600)
        except OSError:
            return None
        return str(dst)

    def _journal_applies(self) -> bool:
        # 0.4.13's rule (api.md §8.3 step 3): non-empty, and not older than state.json.
        try:
            js = os.stat(self.journal_path)
        except OSError:
            return False
        if not stat.S_ISREG(js.st_mode) or js.st_size == 0:
            return False
        try:
            return js.st_mtime >= os.stat(self.legacy_path).st_mtime
        except OSError:
            return True

    def _merge_journal(self, st: StoreState, notes: list[str]) -> None:
        # Unlike 0.4.13, which swaps the state for the journal's, the journal's jobs and
        # reservations are merged in (the journal wins per id), so nothing known to either
        # side is lost when a repaired state file meets a recovery-mode journal.
        try:
            with open(self.journal_path, "rb") as f:
                first = f.readline()
            line = json.loads(first)
            if not isinstance(line, dict) or line.get("kind") != "snapshot":
                raise _Bad("first line is not a snapshot")
            _, jst = _parse_state(line.get("scheduler"))
        except (OSError, _Bad, ValueError, TypeError, RecursionError) as e:
            # Kept aside, since the next snapshot empties the journal.
            copy = self._copy_aside(self.journal_path, "corrupt")
            notes.append(f"{JOURNAL_NAME} ignored ({e}); copied to {copy}")
            return
        st.jobs.update(jst.jobs)
        st.jobs = dict(sorted(st.jobs.items()))
        st.reservations.update(jst.reservations)
        st.allowed_gpu_indices = jst.allowed_gpu_indices
        st.gpus_persisted = True
        if jst.next_job_id < _RUST_RECOVERY_ID:
            st.next_job_id = max(st.next_job_id, jst.next_job_id)
        st.next_reservation_id = max(st.next_reservation_id, jst.next_reservation_id)
        st.needs_snapshot = True
        notes.append(f"merged {len(jst.jobs)} jobs from {JOURNAL_NAME}")

    def _replay_wal(self, st: StoreState, notes: list[str]) -> None:
        try:
            data = self.wal_path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as e:
            raise StoreError(f"cannot read {self.wal_path}: {e.strerror or e}") from e
        records, good, why = _read_frames(data)
        for rec in records:
            try:
                self._apply(st, rec)
            except _Bad as e:
                # A CRC-valid record we cannot apply is a bug, not a crash: skip it only.
                notes.append(f"{WAL_NAME}: skipped a record ({e})")
        st.wal_records = len(records)
        if records:
            st.needs_snapshot = True
        self._wal_size = good
        if why is not None:
            lost = len(data) - good
            if why in ("CRC mismatch", "undecodable frame"):
                # A complete but damaged frame may have good frames after it: keep them.
                aside = self.wal_path.with_name(f"{WAL_NAME}.corrupt.{int(time.time())}")
                try:
                    aside.write_bytes(data[good:])
                    os.chmod(aside, 0o600)
                except OSError:
                    pass
                notes.append(f"{WAL_NAME}: {why} at offset {good}; replay stopped after "
                             f"{len(records)} records, {lost} bytes discarded (kept in "
                             f"{aside.name})")
            else:
                notes.append(f"{WAL_NAME}: {why} at offset {good} (crash mid-append); "
                             f"{lost} bytes discarded after {len(records)} records")
            try:
                os.truncate(self.wal_path, good)
                if self.fsync:
                    fd = os.open(self.wal_path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            except OSError:
                self._tail_suspect = True  # the next commit cuts it instead

    @staticmethod
    def _apply(st: StoreState, rec: Any) -> None:
        if not isinstance(rec, dict):
            raise _Bad("record is not a map")
        op = rec.get("op")
        if op == "job":
            job = normalize_job(rec.get("job"))
            st.jobs[job["id"]] = job
        elif op == "reservation":
            res = normalize_reservation(rec.get("reservation"))
            st.reservations[res["id"]] = res
        elif op == "meta":
            if "next_job_id" in rec:
                st.next_job_id = max(st.next_job_id, _uint(rec["next_job_id"], "next_job_id"))
            if "next_reservation_id" in rec:
                st.next_reservation_id = max(
                    st.next_reservation_id,
                    _uint(rec["next_reservation_id"], "next_reservation_id"))
            if "allowed_gpu_indices" in rec:
                allowed = rec["allowed_gpu_indices"]
                if allowed is not None:
                    if not isinstance(allowed, list):
                        raise _Bad("allowed_gpu_indices: expected an array or nil")
                    allowed = [_uint(i, "allowed_gpu_indices") for i in allowed]
                st.allowed_gpu_indices = allowed
                st.gpus_persisted = True
        else:
            raise _Bad(f"unknown op {op!r}")

    def _probe_journal(self) -> Optional[str]:
        """None when the journal (and its temp file) can be written, else why not."""
        path = self.journal_path
        try:
            self._check_fault("journal-probe", path)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            tmp = path.with_name(path.name + ".tmp")
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))
            os.unlink(tmp)
        except OSError as e:
            return f"{path}: {e.strerror or e}"
        return None

    def _create_empty_journal(self) -> None:
        # 0.4.13 creates the (empty) journal at every start; harmless if it cannot.
        try:
            os.close(os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError:
            pass

    # --- write side ---

    def _check_fault(self, op: str, path: Path) -> None:
        if self.fault is not None:
            exc = self.fault(op, path)
            if exc is not None:
                raise exc

    def append(self, record: dict) -> None:
        """Buffer one WAL record; it is durable only after commit() returns."""
        if not isinstance(record, dict) or record.get("op") not in _OPS:
            raise ValueError(f"not a WAL record: {record!r}")
        # Encoded now, so an unencodable record fails here, at its author.
        self._buffer.append(_frame(record))

    def commit(self) -> None:
        """Write every buffered record, then one fsync (group commit).

        On failure raises StoreError and keeps the records buffered: a later commit
        rewrites them from the same offset, so a half-written frame never survives.
        """
        if not self._buffer:
            return
        if self.mode == "read_only":
            raise StoreError(f"state is read-only: {self.journal_path} cannot be written")
        data = b"".join(self._buffer)
        new_size = self._wal_size + len(data)
        try:
            self._check_fault("wal", self.wal_path)
            fd = self._open_wal()
            _pwrite_all(fd, data, self._wal_size)
            if self._tail_suspect:
                os.ftruncate(fd, new_size)
            if self.fsync:
                os.fsync(fd)
                if self._wal_new:
                    self._fsync_dir()
        except OSError as e:
            # After a failed write or fsync the page cache cannot be trusted: reopen and
            # rewrite everything on the next try rather than fsync again.
            self._close_wal()
            self._tail_suspect = True
            raise StoreError(f"cannot write {self.wal_path}: {e.strerror or e}") from e
        self._wal_new = False
        self._tail_suspect = False
        self._wal_size = new_size
        self._buffer.clear()

    def snapshot(self, state: StoreState) -> None:
        """Write the whole state atomically, then empty the WAL (and a merged journal).

        In journal (recovery) mode the journal line is written instead and state.msgpack
        is never touched. Buffered, uncommitted records stay buffered (they are upserts,
        so replaying them on top of this snapshot changes nothing).
        """
        if self.mode == "read_only":
            raise StoreError(f"state is read-only: {self.journal_path} cannot be written")
        if self.mode == "journal":
            self._atomic_write(self.journal_path, encode_journal(state, self.data_dir),
                               "journal")
        else:
            self._atomic_write(self.snapshot_path, encode_snapshot(state, self.data_dir),
                               "snapshot")
            # The journal goes before the WAL: if we die in between, the WAL still holds
            # every change since the journal was written, so replay repairs the merge.
            self._truncate_journal()
        self._truncate_wal()

    def close(self) -> None:
        """Release the WAL file; records not yet committed are dropped (never acknowledged)."""
        self._close_wal()
        self._buffer.clear()

    # --- file helpers ---

    def _open_wal(self) -> int:
        if self._wal_fd is None:
            self._wal_new = not self.wal_path.exists()
            self._wal_fd = os.open(self.wal_path, os.O_WRONLY | os.O_CREAT, 0o600)
        return self._wal_fd

    def _close_wal(self) -> None:
        if self._wal_fd is not None:
            try:
                os.close(self._wal_fd)
            except OSError:
                pass
            self._wal_fd = None

    def _fsync_dir(self) -> None:
        fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _atomic_write(self, path: Path, data: bytes, op: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            self._check_fault(op, path)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # a leftover temp file may have other bits
                _pwrite_all(fd, data, 0)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if self.fsync:
                self._fsync_dir()
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreError(f"cannot write {path}: {e.strerror or e}") from e

    def _truncate_journal(self) -> None:
        path = self.journal_path
        try:
            st = os.stat(path)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return
        try:
            self._check_fault("journal-truncate", path)
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            # Left in place, the stale journal would be merged over newer state at the
            # next start, so this must not pass silently.
            raise StoreError(f"cannot truncate {path}: {e.strerror or e}") from e

    def _truncate_wal(self) -> None:
        try:
            self._check_fault("wal-truncate", self.wal_path)
            fd = self._open_wal()
            os.ftruncate(fd, 0)
            if self.fsync:
                os.fsync(fd)
        except OSError as e:
            self._close_wal()
            self._tail_suspect = True
            raise StoreError(f"cannot truncate {self.wal_path}: {e.strerror or e}") from e
        self._wal_size = 0
        self._tail_suspect = False


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
