"""The snapshot codec: 0.4.13's `state.msgpack` (version 4) and legacy `state.json` <-> StoreState."""

# Decoding is as tolerant as 0.4.13's loader (legacy `jobs` map or list, the very old
# positional SeqV2 array, missing optional keys); anything it cannot accept raises
# BadContent, which the caller turns into recovery mode. Encoding writes 0.4.13's exact
# version-4 layout, with our extra job fields as extra map keys 0.4.13 ignores.
# StoreState lives here because it is what this codec produces and consumes; the WAL
# and the recovery journal reuse these decoders, so all three agree on what is valid.

from __future__ import annotations

import io
import operator
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import msgpack

from gflow.models import (
    WIRE_KEYS, Job, JobState, job_from_wire, job_to_wire, reservation_from_wire,
    reservation_to_wire,
)

STATE_VERSION = 4
SNAPSHOT_NAME = "state.msgpack"
LEGACY_NAME = "state.json"
# "<crc32> <size>" of the state.msgpack this code wrote last (see own_snapshot): a file
# that still matches it holds only jobs we encoded ourselves, which load without being
# validated again. Never fsynced: a lost or stale one only means the slow, checked load.
SUM_NAME = "state.msgpack.sum"

SPEC_KEYS = (
    "script", "command", "conda_env", "run_dir", "parameters", "submitted_by",
    "submitted_at", "task_id", "redone_from", "auto_close_tmux", "run_name", "project",
    "depends_on", "depends_on_ids", "dependency_mode", "auto_cancel_on_dependency_failure",
)
SPEC_EXTRA_KEYS = ("env", "umask", "scheduled_at", "max_retries", "dependency_conditions",
                   "notify")
RUNTIME_KEYS = (
    "id", "state", "priority", "gpus", "gpu_sharing_mode", "gpu_memory_limit_mb",
    "time_limit", "memory_limit_mb", "gpu_ids", "group_id", "max_concurrent", "started_at",
    "finished_at", "reason",
)
RUNTIME_EXTRA_KEYS = ("exit_code", "reason_detail", "attempts", "suspended_at", "gpu_usage",
                      "executor_id")
_RUNTIME_REQUIRED = ("id", "state", "priority", "gpus")
_RESERVATION_REQUIRED = ("id", "user", "gpu_spec", "start_time", "duration", "status",
                         "created_at")

# 0.4.13's recovery mode hands out ids from here; a journal it wrote carries such a
# next_job_id, which we ignore so that our ids stay dense.
RUST_RECOVERY_ID = 2_000_000_000
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
    # Ours, under the top-level key "gflow_extras" (0.4.13 ignores it): quota overrides.
    extras: dict = field(default_factory=dict)
    # Our additions, filled by load():
    replay_note: Optional[str] = None    # anomalies met (torn WAL tail, bad journal...)
    wal_records: int = 0                 # WAL records replayed
    # True when allowed_gpu_indices came from a file (state, journal or a WAL meta
    # record): 0.4.13 lets the persisted list, even nil, override config and --gpus.
    gpus_persisted: bool = False
    # True when the loaded state differs from state.msgpack (journal merged, WAL
    # replayed): a snapshot soon folds it in and empties the journal.
    needs_snapshot: bool = False


class BadContent(Exception):
    """A state file or record that does not decode under 0.4.13's rules."""


# --- decoding (tolerant, as 0.4.13's loader) -------------------------------------------

def as_uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadContent(f"{what}: expected an unsigned integer, got {value!r}")
    return value


def _exact_time(value: Any, k_secs: str, k_nanos: str) -> dict:
    # Called only after models validated the value: a 2-array or a map with both keys.
    if isinstance(value, list):
        return {k_secs: value[0], k_nanos: value[1]}
    return {k_secs: value[k_secs], k_nanos: value[k_nanos]}


def normalize_job(raw: Any) -> dict:
    """A full job wire dict (with env) from a tolerant map; raises BadContent when invalid."""
    if not isinstance(raw, dict):
        raise BadContent(f"expected a job map, got {type(raw).__name__}")
    try:
        out = job_to_wire(job_from_wire(raw), with_env=True)
    except (ValueError, TypeError) as e:
        raise BadContent(str(e)) from None
    for key, (ks, kn) in _JOB_TIME_KEYS.items():
        if raw.get(key) is not None:
            out[key] = _exact_time(raw[key], ks, kn)
    return out


_STATE_VALUES = frozenset(s.value for s in JobState)
_ALL_TIME_KEYS = ("time_limit", "submitted_at", "started_at", "finished_at", "scheduled_at",
                  "suspended_at")


def trusted_job(job: dict, keys: frozenset) -> Optional[dict]:
    """`job` itself when it is a record this code wrote (`keys` exactly, as written by
    models.job_to_wire or our snapshot) and the fields the scheduler's unchecked decoder
    (models.job_from_trusted_wire) interprets have their types; None means: decode it
    with normalize_job. For such a record normalize_job would return an equal dict
    (a full record, the exact time integers kept), at a tenth of the cost."""
    if job.keys() != keys:
        return None
    jid = job["id"]
    if type(jid) is not int or not 0 <= jid <= 0xFFFFFFFF:
        return None
    if job["state"] not in _STATE_VALUES:
        return None
    for key in _ALL_TIME_KEYS:
        value = job[key]
        if value is not None and type(value) is not dict:
            return None
    if keys is _SNAPSHOT_JOB_KEYS:
        for key in _FILLED_KEYS:
            job[key] = _JOB_DEFAULTS[key]
    return job


def own_snapshot(data: bytes, sum_text: Optional[bytes],
                 data_sum: Optional[bytes] = None) -> bool:
    """Whether `data` (of snapshot_sum `data_sum`, if known) is the state.msgpack this
    code wrote last (SUM_NAME's content)."""
    return sum_text is not None and sum_text.strip() == (data_sum or snapshot_sum(data))


def snapshot_sum(data: bytes) -> bytes:
    return f"{zlib.crc32(data)} {len(data)}".encode()


def _check_gpu_spec(spec: Any) -> None:
    if isinstance(spec, dict) and len(spec) == 1:
        if "count" in spec:
            as_uint(spec["count"], "gpu_spec.count")
            return
        if "indices" in spec and isinstance(spec["indices"], list):
            for i in spec["indices"]:
                as_uint(i, "gpu_spec.indices")
            return
    raise BadContent(f"gpu_spec: expected {{'count': n}} or {{'indices': [..]}}, got {spec!r}")


def normalize_reservation(raw: Any) -> dict:
    """A reservation wire dict from a map (every key but cancelled_at required)."""
    if not isinstance(raw, dict):
        raise BadContent(f"expected a reservation map, got {type(raw).__name__}")
    for key in _RESERVATION_REQUIRED:
        if key not in raw:
            raise BadContent(f"reservation: missing field `{key}`")
    as_uint(raw["id"], "reservation id")
    if not isinstance(raw["user"], str):
        raise BadContent("reservation user: expected a string")
    _check_gpu_spec(raw["gpu_spec"])
    try:
        out = reservation_to_wire(reservation_from_wire(raw))
    except (ValueError, TypeError, KeyError) as e:
        raise BadContent(f"reservation: {e}") from None
    for key, (ks, kn) in _RESERVATION_TIME_KEYS.items():
        if raw.get(key) is not None:
            out[key] = _exact_time(raw[key], ks, kn)
    return out


def _opt_list(obj: dict, key: str) -> list:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadContent(f"{key}: expected an array")
    return value


def _legacy_jobs(value: Any) -> list[dict]:
    """0.4.13's legacy `jobs`: a list, or a map id -> Job with int or str keys."""
    out = []
    if isinstance(value, list):
        for pos, job in enumerate(value):
            if not isinstance(job, dict):
                raise BadContent("jobs: expected job maps")
            out.append(job if "id" in job else {**job, "id": pos + 1})
    elif isinstance(value, dict):
        for key, job in value.items():
            if not isinstance(job, dict):
                raise BadContent("jobs: expected job maps")
            if "id" not in job:
                try:
                    job = {**job, "id": int(key)}
                except (TypeError, ValueError):
                    raise BadContent(f"jobs: bad key {key!r}") from None
            out.append(job)
    else:
        raise BadContent("jobs: expected an array or a map")
    return out


def parse_state(obj: Any, *, trusted: bool = False) -> tuple[int, StoreState]:
    """(version, state) from a decoded state file, journal `scheduler` map or SeqV2 array.

    `trusted`: the file is one this code wrote (own_snapshot), so a job whose spec and
    runtime have exactly our keys and pass trusted_job's cheap checks is taken as it is,
    instead of being decoded and re-encoded (the scheduler decodes it once, into a Job)."""
    if isinstance(obj, list):
        obj = _seqv2_to_map(obj)
    if not isinstance(obj, dict):
        raise BadContent("top level is not a map")
    version = as_uint(obj.get("version", STATE_VERSION), "version")
    specs = _opt_list(obj, "job_specs")
    runtimes = _opt_list(obj, "job_runtimes")
    if len(specs) != len(runtimes):
        raise BadContent(f"job_specs has {len(specs)} entries "
                         f"but job_runtimes {len(runtimes)}")
    st = StoreState()
    if runtimes:
        for spec, rt in zip(specs, runtimes):
            job = pair_job(spec, rt, trusted)
            st.jobs[job["id"]] = job
    elif obj.get("jobs") is not None:
        for raw in _legacy_jobs(obj["jobs"]):
            job = normalize_job(raw)
            st.jobs[job["id"]] = job
    st.jobs = dict(sorted(st.jobs.items()))
    next_job_id = obj.get("next_job_id")
    st.next_job_id = 1 if next_job_id is None else as_uint(next_job_id, "next_job_id")
    allowed = obj.get("allowed_gpu_indices")
    if allowed is not None:
        if not isinstance(allowed, list):
            raise BadContent("allowed_gpu_indices: expected an array or nil")
        allowed = [as_uint(i, "allowed_gpu_indices") for i in allowed]
    st.allowed_gpu_indices = allowed
    for raw in _opt_list(obj, "reservations"):
        res = normalize_reservation(raw)
        st.reservations[res["id"]] = res
    if isinstance(obj.get("gflow_extras"), dict):
        st.extras = dict(obj["gflow_extras"])
    next_res = obj.get("next_reservation_id")
    st.next_reservation_id = (1 if next_res is None
                              else as_uint(next_res, "next_reservation_id"))
    return version, st


def pair_job(spec: Any, rt: Any, trusted: bool, *, in_place: bool = False) -> dict:
    """The job wire dict of one (job_specs[i], job_runtimes[i]) pair (the runtime's keys
    win); `in_place`: `spec` may be merged into (the caller drops both afterwards)."""
    if trusted and type(spec) is dict and type(rt) is dict:
        merged = spec if in_place else {**spec}
        merged.update(rt)           # as {**spec, **rt}: same keys, values and key order
        job = trusted_job(merged, _SNAPSHOT_JOB_KEYS)
        if job is not None:
            return job
    if not isinstance(spec, dict) or not isinstance(rt, dict):
        raise BadContent("job_specs/job_runtimes: expected maps")
    for key in _RUNTIME_REQUIRED:
        if key not in rt:
            raise BadContent(f"job runtime: missing field `{key}`")
    return normalize_job({**spec, **rt})


def parse_own_snapshot(data: bytes, decode_job: Optional[Callable[[dict], Any]] = None
                       ) -> Optional[tuple[int, StoreState]]:
    """parse_state(unpack(data), trusted=True) for a file this code wrote (own_snapshot),
    decoded as a stream, one job at a time: each job's spec and runtime maps are read,
    merged, checked and handed to `decode_job` (if given: the scheduler's Job decoder)
    before the next is read, so that the decoded file never exists whole in memory (at
    100k jobs it took twice what the jobs take, and that memory stayed fragmented).

    None when the file is not laid out as we write it, or anything in it fails: the
    caller then takes the full path (unpack + parse_state), which decides exactly as it
    always did (recovery mode for a bad file, the same detail text and salvage)."""
    try:
        return _parse_stream(data, decode_job)
    except Exception:  # noqa: BLE001 - the full path decides what a bad file means
        return None


_JOB_ARRAYS = ("job_specs", "job_runtimes")


def _parse_stream(data: bytes, decode_job) -> Optional[tuple[int, StoreState]]:
    top: dict = {}
    arrays: dict = {}       # "job_specs"/"job_runtimes" -> (offset of the first item, count)
    u = _stream(data, 0)
    for _ in range(u.read_map_header()):
        key = u.unpack()
        if key in top or key in arrays:
            return None                         # a repeated key: the last one would win
        if key in _JOB_ARRAYS:
            count = u.read_array_header()
            arrays[key] = (u.tell(), count)
            for _ in range(count):              # one item at a time: a small buffer
                u.skip()
        else:
            top[key] = u.unpack()
    if u.tell() != len(data) or len(arrays) != 2 or "jobs" in top:
        return None                             # trailing bytes, or not our layout
    (spec_at, count), (rt_at, rt_count) = arrays["job_specs"], arrays["job_runtimes"]
    if count != rt_count or not count:
        return None                             # parse_state says what that means
    version, st = parse_state(top)              # everything but the jobs
    specs, runtimes, jobs = _stream(data, spec_at), _stream(data, rt_at), st.jobs
    for _ in range(count):
        job = pair_job(specs.unpack(), runtimes.unpack(), True, in_place=True)
        jobs[job["id"]] = job if decode_job is None else decode_job(job)
    st.jobs = dict(sorted(jobs.items()))
    return version, st


def _stream(data: bytes, offset: int) -> msgpack.Unpacker:
    # BytesIO shares `data` (no copy); the unpacker reads it a chunk at a time.
    buf = io.BytesIO(data)
    buf.seek(offset)
    u = msgpack.Unpacker(buf, raw=False, strict_map_key=False, read_size=1 << 16,
                         max_buffer_size=max(len(data), 1 << 20))
    return u


def _seqv2_to_map(arr: list) -> dict:
    # The very old positional layout [version, [Job..], state_path, next_job_id,
    # allowed_gpu_indices]; array-encoded jobs are read in wire-key order (best effort:
    # anything that does not validate sends the file to recovery, untouched).
    if len(arr) < 2 or not isinstance(arr[1], list):
        raise BadContent("unrecognised array layout")
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


def salvage_max_id(obj: Any) -> int:
    """The highest job id readable from a file that failed validation (0 if none)."""
    best = 0

    def see(value):
        nonlocal best
        if (isinstance(value, int) and not isinstance(value, bool)
                and 0 < value < RUST_RECOVERY_ID):
            best = max(best, value)

    if isinstance(obj, list):
        try:
            obj = _seqv2_to_map(obj)
        except BadContent:
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


def migrate(version: int, st: StoreState) -> None:
    # 0.4.13's chain 0->1->2->3->4 only bumps the number, except v2->v3, which drops
    # reservations.
    if version <= 2:
        st.reservations.clear()
        st.next_reservation_id = 1


def unpack(data: bytes) -> Any:
    # strict_map_key=False: the legacy `jobs` map may have integer keys.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


# --- encoding ---------------------------------------------------------------------------

_JOB_DEFAULTS = job_to_wire(Job(), with_env=True)
# A full job record (what the WAL holds), a job as our snapshot writes it (spec and
# runtime merged), and what the latter lacks of the former (filled with defaults).
FULL_JOB_KEYS = frozenset(_JOB_DEFAULTS)
_SNAPSHOT_JOB_KEYS = frozenset(SPEC_KEYS + SPEC_EXTRA_KEYS + RUNTIME_KEYS + RUNTIME_EXTRA_KEYS)
_FILLED_KEYS = tuple(sorted(FULL_JOB_KEYS - _SNAPSHOT_JOB_KEYS))


_SPEC_ALL, _RUNTIME_ALL = SPEC_KEYS + SPEC_EXTRA_KEYS, RUNTIME_KEYS + RUNTIME_EXTRA_KEYS
_SPEC_VALUES, _RUNTIME_VALUES = operator.itemgetter(*_SPEC_ALL), operator.itemgetter(*_RUNTIME_ALL)


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


def sorted_reservations(state: StoreState) -> list[dict]:
    return sorted(state.reservations.values(),
                  key=lambda r: (_time_sort_key(r.get("start_time")), r.get("id", 0)))


def next_reservation_id(state: StoreState) -> int:
    return max([state.next_reservation_id] + [i + 1 for i in state.reservations])


def state_path_for(data_dir: Path) -> str:
    """The `state_path` 0.4.13 records: the absolute path of <data_dir>/state.json."""
    return os.path.join(os.path.abspath(data_dir), LEGACY_NAME)


def snapshot_map(state: StoreState, data_dir: Path) -> dict:
    """state.msgpack's content (msgpack.packb makes its bytes): 0.4.13's version-4 layout,
    our extras as extra keys."""
    jobs, next_job_id = _positional_jobs(state)
    specs, runtimes = [], []
    for job in jobs:
        try:                        # a full record (all of them, but in tests): C speed
            spec, runtime = _SPEC_VALUES(job), _RUNTIME_VALUES(job)
        except KeyError:
            spec = [job.get(k, _JOB_DEFAULTS[k]) for k in _SPEC_ALL]
            runtime = [job.get(k, _JOB_DEFAULTS[k]) for k in _RUNTIME_ALL]
        specs.append(dict(zip(_SPEC_ALL, spec)))
        runtimes.append(dict(zip(_RUNTIME_ALL, runtime)))
    top = {
        "version": STATE_VERSION,
        "job_specs": specs,
        "job_runtimes": runtimes,
        "state_path": state_path_for(data_dir),
        "next_job_id": next_job_id,
        "allowed_gpu_indices": state.allowed_gpu_indices,
        "reservations": sorted_reservations(state),
        "next_reservation_id": next_reservation_id(state),
    }
    if state.extras:
        top["gflow_extras"] = state.extras
    return top
