"""`state.msgpack.jobs`: our own state.msgpack once more, in the form that loads fastest."""

# Decoding state.msgpack costs most of a start: at 100k jobs, 0.4 s in msgpack alone
# (every job is two maps of 42 named fields) and as much again to check and convert the
# jobs. Beside each state.msgpack it writes, the store writes this file: the same jobs
# as the scheduler's decoder (models.job_from_trusted_wire) makes of them, each as the
# plain list of its field values (job_row), marshalled a chunk at a time, and the rest of
# the file (every top-level entry but the two job arrays) as msgpack. Loading it takes a
# fifth of the time, a chunk at a time, so the decoded file never exists whole in memory.
#
# It is only a cache: state.msgpack stays the one authority (0.4.13 reads only it). This
# file names the state.msgpack it was written with (its snapshot_sum) and carries a CRC
# of its own body; it is used only when state.msgpack is the one we wrote last
# (snapshot.own_snapshot: its CRC is computed at every load), its sum is the one named,
# the CRC holds, and the field names and marshal format are this interpreter's. Else,
# or on any failure, it is ignored and state.msgpack is decoded as ever. It is written
# after state.msgpack and its sum, never fsynced (a torn or stale file fails the checks);
# a failed write removes it.
#
# Rows are marshal version 4, which writes an object met twice once and refers back to
# it: each chunk's rows are first copied through marshal version 2 (which shares
# nothing), so that no list or dict is met twice and two jobs never end up holding the
# same one; then the texts models.share_strings keeps once (_SHARED_TEXTS) are interned,
# so that a load makes each of them once per chunk, already interned (share_strings
# then finds them kept); with the empties below, Store.load at 100k jobs takes ~0.30 s
# instead of ~0.38 s with version 2 (in-process, load average 3). The rows are made from
# the maps state.msgpack was packed from, by the checks of the stream load (pair_job)
# and the conversions of its decoder (wire_row: those of models.job_from_trusted_wire),
# so the jobs are equal, field for field, to those that load makes of the file (msgpack
# gives back the plain values it was given: the store's maps hold lists, never tuples).

from __future__ import annotations

import json
import marshal
import operator
import sys
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import msgpack

from gflow.models import Job, JobState, _pair_fast, job_from_trusted_wire, share_strings
from gflow.store.fileio import replace_unsynced
from gflow.store.snapshot import StoreState, pair_job, parse_state, unpack

FAST_NAME = "state.msgpack.jobs"
_MAGIC = b"gflow state.msgpack.jobs 1\n"
_JOB_ARRAYS = ("job_specs", "job_runtimes")
_CHUNK = 1000                 # jobs per marshalled list: a small buffer on either side
_MARSHAL_VERSION = 4
# marshal's format is this interpreter's: a copy written by another is not read.
_FORMAT = [_MARSHAL_VERSION, marshal.version, "%d.%d" % sys.version_info[:2]]
FIELD_NAMES = tuple(f.name for f in fields(Job))
_STATE_AT = FIELD_NAMES.index("state")
_STATES = {s.value: s for s in JobState}
_VALUES = operator.attrgetter(*FIELD_NAMES)
_ITEMS = operator.itemgetter(*FIELD_NAMES)
_TIMES_AT = [FIELD_NAMES.index(k) for k in ("time_limit", "submitted_at", "started_at",
                                             "finished_at", "scheduled_at", "suspended_at")]
# The texts models.share_strings interns (a unit test checks that the two agree).
_SHARED_TEXTS = ("command", "run_dir", "submitted_by", "gpu_sharing_mode", "conda_env",
                 "project", "reason_detail")
_SHARED_AT = [FIELD_NAMES.index(k) for k in _SHARED_TEXTS]
# The fields share_strings gives the one shared frozen empty value (models.EMPTY_LIST,
# EMPTY_DICT) when they are empty: written as None, which it replaces the same way, so
# a load makes no list or dict for them only to drop it (four per job).
_EMPTIES_AT = [FIELD_NAMES.index(k) for k in ("depends_on_ids", "parameters", "attempts",
                                               "dependency_conditions")]


def usable_for(decode_job) -> bool:
    """Whether the file holds what `decode_job` makes of state.msgpack's jobs."""
    return decode_job is job_from_trusted_wire


def job_row(job: Job) -> list:
    """The job's field values in Job's field order, its state as its text."""
    row = list(_VALUES(job))
    row[_STATE_AT] = job.state.value
    return row


def wire_row(full: dict) -> list:
    """job_row(job_from_trusted_wire(full)) for a full job record, without the Job."""
    row = list(_ITEMS(full))
    for i in _TIMES_AT:
        if row[i] is not None:
            row[i] = _pair_fast(row[i])         # as job_from_trusted_wire converts them
    return row


def job_from_row(row: list) -> Job:
    job = Job(*row)
    job.state = _STATES[job.state]
    share_strings(job)
    return job


def _for_load(rows: list) -> list:
    """`rows` (a copy of their own) with the kept texts interned and the empties None."""
    intern = sys.intern
    for row in rows:
        for i in _SHARED_AT:
            if type(row[i]) is str:
                row[i] = intern(row[i])
        for i in _EMPTIES_AT:
            if not row[i]:
                row[i] = None
    return rows


def encode(top: dict, snapshot_sum: bytes) -> bytes:
    """The file's bytes for `top` (what the state.msgpack of `snapshot_sum` was packed
    from: snapshot.snapshot_map). Raises BadContent where the stream load would find a
    job it cannot take (the caller then writes no file)."""
    specs, runtimes = top["job_specs"], top["job_runtimes"]
    if len(specs) != len(runtimes):
        raise ValueError("job arrays of different lengths")
    rest = msgpack.packb({k: v for k, v in top.items() if k not in _JOB_ARRAYS},
                         use_bin_type=True)
    chunks = [rest]
    for i in range(0, len(specs), _CHUNK):
        rows = [wire_row(pair_job(s, r, True))      # a full record: all of FIELD_NAMES
                for s, r in zip(specs[i:i + _CHUNK], runtimes[i:i + _CHUNK])]
        chunks.append(marshal.dumps(_for_load(marshal.loads(marshal.dumps(rows, 2))),
                                    _MARSHAL_VERSION))
    body = b"".join(chunks)
    header = {"of": snapshot_sum.decode(), "count": len(specs), "fields": FIELD_NAMES,
              "marshal": _FORMAT, "crc": zlib.crc32(body),
              "chunks": [len(c) for c in chunks]}
    return _MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def decode(raw: bytes, snapshot_sum: bytes) -> Optional[tuple[int, StoreState]]:
    """parse_own_snapshot(state.msgpack, job_from_trusted_wire) from a file that mirrors
    the state.msgpack of `snapshot_sum`; None when it does not or fails any check."""
    try:
        if not raw.startswith(_MAGIC):
            return None
        end = raw.index(b"\n", len(_MAGIC))
        header = json.loads(raw[len(_MAGIC):end])
        body = memoryview(raw)[end + 1:]
        sizes = header["chunks"]
        if (header.get("of") != snapshot_sum.decode()
                or tuple(header.get("fields") or ()) != FIELD_NAMES
                or header.get("marshal") != _FORMAT
                or sum(sizes) != len(body) or zlib.crc32(body) != header["crc"]):
            return None
        rest: Any = unpack(body[:sizes[0]])
        if not isinstance(rest, dict) or any(k in rest for k in (*_JOB_ARRAYS, "jobs")):
            return None
        version, st = parse_state(rest)
        jobs, at = st.jobs, sizes[0]
        for size in sizes[1:]:
            for row in marshal.loads(body[at:at + size]):
                job = job_from_row(row)
                jobs[job.id] = job
            at += size
        if len(jobs) != header["count"]:
            return None
        st.jobs = dict(sorted(jobs.items()))
        return version, st
    except Exception:  # noqa: BLE001 - a cache that fails in any way is not used
        return None


def read(data_dir: Path, snapshot_sum: bytes) -> Optional[tuple[int, StoreState]]:
    try:
        with open(data_dir / FAST_NAME, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return decode(raw, snapshot_sum)


def write(data_dir: Path, top: dict, snapshot_sum: Optional[bytes]) -> None:
    """Write the file for the state.msgpack of `snapshot_sum`, packed from `top` (None:
    its sum could not be written, so the file would never be used). Best effort: when
    anything fails, no file is left that could be taken for this state.msgpack.
    Runs in the background snapshot writer too: no logging, no locks, no imports."""
    try:
        data = None if snapshot_sum is None else encode(top, snapshot_sum)
    except Exception:  # noqa: BLE001 - best effort: the next load reads state.msgpack
        data = None
    replace_unsynced(data_dir / FAST_NAME, data)
