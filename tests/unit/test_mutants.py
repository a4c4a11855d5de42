"""Tests that kill mutants which survived `mutmut run` over the core (docs/testing.md lists
the runs; each test names the mutation it kills). Expected values come from the specs
(spec/scheduler.md, spec/api.md) and DESIGN.md, not from the code under test."""

from __future__ import annotations

import errno
import os
import stat
import zlib

import msgpack
import pytest

from gflow.errors import StoreError
from gflow.models import Job, job_to_wire
from gflow.store import WAL_NAME, Store
from gflow.store import wal as wal_module
from gflow.store.wal import WriteAheadLog, frame, read_frames


# --- gflow/store/wal.py -----------------------------------------------------------------------

def wal_job(i, **kw):
    kw.setdefault("command", f"echo {i}")
    return job_to_wire(Job(id=i, submitted_at=1795500000.0 + i, **kw), with_env=True)


def three_frames(d, big_last=False):
    """A WAL of three committed job records; returns the offset of the third frame."""
    store = Store(d, fsync=False)
    store.load()
    for i in (1, 2, 3):
        kw = {"command": "x" * 3000} if (big_last and i == 3) else {}
        store.append({"op": "job", "job": wal_job(i, **kw)})
        store.commit()
    store.close()
    raw = (d / WAL_NAME).read_bytes()
    off = 0
    for _ in range(2):
        off += 8 + int.from_bytes(raw[off:off + 4], "little")
    return off, len(raw)


@pytest.mark.parametrize("cut,why", [(3, "torn frame header"), (8, "torn frame"),
                                     (20, "torn frame")])
def test_torn_tail_note_names_the_place_and_the_loss(tmp_path, cut, why):
    # Kills: read_frames `<` -> `<=` (8 bytes left is a whole header), the note texts,
    # `lost = len(data) - good` -> `+`/None.
    third, _ = three_frames(tmp_path)
    os.truncate(tmp_path / WAL_NAME, third + cut)
    back = Store(tmp_path, fsync=False).load()
    assert back.replay_note == (f"{WAL_NAME}: {why} at offset {third} (crash mid-append); "
                                f"{cut} bytes discarded after 2 records")


def test_undecodable_frame_is_kept_aside_private(tmp_path):
    # Kills: the "undecodable frame" texts and branch, chmod 0o600 -> 385.
    third, size = three_frames(tmp_path)
    raw = bytearray((tmp_path / WAL_NAME).read_bytes()[:third])
    bad = b"\xc1"                                        # never valid msgpack
    raw += len(bad).to_bytes(4, "little") + zlib.crc32(bad).to_bytes(4, "little") + bad
    (tmp_path / WAL_NAME).write_bytes(bytes(raw))
    back = Store(tmp_path, fsync=False).load()
    assert list(back.jobs) == [1, 2]
    aside = list(tmp_path.glob(WAL_NAME + ".corrupt.*"))
    assert len(aside) == 1
    assert back.replay_note == (f"{WAL_NAME}: undecodable frame at offset {third}; replay "
                                f"stopped after 2 records, 9 bytes discarded (kept in "
                                f"{aside[0].name})")
    assert aside[0].read_bytes() == bytes(raw[third:])
    assert stat.S_IMODE(aside[0].stat().st_mode) == 0o600


def test_records_that_cannot_be_applied_are_skipped_and_named(tmp_path):
    # Kills: every BadContent text of apply_record, as_uint's field names, and
    # notes.append(None).
    bad = [[1, 2], {"op": "meta", "next_job_id": -1},
           {"op": "meta", "next_reservation_id": "x"},
           {"op": "meta", "allowed_gpu_indices": 3},
           {"op": "meta", "allowed_gpu_indices": [0, -2]}, {"op": "nope"}]
    data = frame({"op": "job", "job": wal_job(1)})
    data += b"".join(_raw_frame(r) for r in bad)
    data += frame({"op": "job", "job": wal_job(2)})
    (tmp_path / WAL_NAME).write_bytes(data)
    back = Store(tmp_path, fsync=False).load()
    assert list(back.jobs) == [1, 2]                      # the good ones around them stay
    assert back.replay_note.split("; ") == [f"{WAL_NAME}: skipped a record ({why})" for why in (
        "record is not a map",
        "next_job_id: expected an unsigned integer, got -1",
        "next_reservation_id: expected an unsigned integer, got 'x'",
        "allowed_gpu_indices: expected an array or nil",
        "allowed_gpu_indices: expected an unsigned integer, got -2",
        "unknown op 'nope'")]


def _raw_frame(record) -> bytes:
    """A well-framed record that need not be a valid one (frame() checks nothing either)."""
    payload = msgpack.packb(record, use_bin_type=True)
    return (len(payload).to_bytes(4, "little") + zlib.crc32(payload).to_bytes(4, "little")
            + payload)


def test_append_names_what_is_not_a_record(tmp_path):
    store = Store(tmp_path, fsync=False)
    store.load()
    with pytest.raises(ValueError, match=r"^not a WAL record: \{'op': 'nope'\}$"):
        store.append({"op": "nope"})


def test_a_new_log_starts_at_offset_zero(tmp_path):
    # Kills: WriteAheadLog.size = 1 / None before any replay.
    log = WriteAheadLog(tmp_path / WAL_NAME, fsync=False, check_fault=lambda op, path: None)
    log.append({"op": "meta", "next_job_id": 5})
    log.commit()
    records, good, why = read_frames((tmp_path / WAL_NAME).read_bytes())
    assert (records, why) == ([{"op": "meta", "next_job_id": 5}], None)
    assert good == log.size == (tmp_path / WAL_NAME).stat().st_size


@pytest.fixture
def syncs(monkeypatch):
    """Counts os.fsync calls and wal.fsync_dir calls."""
    calls = {"fsync": 0, "dir": 0}
    real_fsync = os.fsync

    def fsync(fd):
        calls["fsync"] += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(wal_module, "fsync_dir",
                        lambda d: calls.__setitem__("dir", calls["dir"] + 1))
    return calls


def test_group_commit_fsyncs_once_and_the_directory_only_for_a_new_log(tmp_path, syncs):
    # Kills: self.fsync = None, `_new = exists()` / None, `_new = True` after a commit.
    store = Store(tmp_path, fsync=True)
    store.load()
    base = dict(syncs)
    for i in (1, 2):
        store.append({"op": "job", "job": wal_job(i)})
    store.commit()
    assert (syncs["fsync"] - base["fsync"], syncs["dir"] - base["dir"]) == (1, 1)
    store.append({"op": "job", "job": wal_job(3)})
    store.commit()
    assert (syncs["fsync"] - base["fsync"], syncs["dir"] - base["dir"]) == (2, 1)
    store.close()
    again = Store(tmp_path, fsync=True)
    again.load()
    base = dict(syncs)
    again.append({"op": "job", "job": wal_job(4)})
    again.commit()                                          # the file existed: no dir fsync
    assert (syncs["fsync"] - base["fsync"], syncs["dir"] - base["dir"]) == (1, 0)


def test_a_cut_torn_tail_is_fsynced(tmp_path, syncs):
    # Kills: the fsync after os.truncate in replay (None fd, path, flags).
    third, _ = three_frames(tmp_path)
    os.truncate(tmp_path / WAL_NAME, third + 5)
    before = syncs["fsync"]
    store = Store(tmp_path, fsync=True)
    back = store.load()
    assert list(back.jobs) == [1, 2] and os.path.getsize(tmp_path / WAL_NAME) == third
    assert syncs["fsync"] > before


def test_a_tail_replay_could_not_cut_is_cut_by_the_next_commit(tmp_path, monkeypatch):
    # Kills: `_tail_suspect = True` -> False/None when os.truncate fails in replay.
    third, size = three_frames(tmp_path, big_last=True)
    os.truncate(tmp_path / WAL_NAME, size - 10)             # a long torn last frame
    real_truncate = os.truncate

    def failing(path, length):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "truncate", failing)
    store = Store(tmp_path, fsync=False)
    back = store.load()
    monkeypatch.setattr(os, "truncate", real_truncate)
    assert list(back.jobs) == [1, 2] and os.path.getsize(tmp_path / WAL_NAME) == size - 10
    store.append({"op": "meta", "next_job_id": 9})          # far shorter than the tail
    store.commit()
    store.close()
    assert os.path.getsize(tmp_path / WAL_NAME) == store.wal_bytes
    again = Store(tmp_path, fsync=False).load()
    assert again.replay_note is None and again.next_job_id == 9
    assert not list(tmp_path.glob(WAL_NAME + ".corrupt.*"))


def test_fault_hook_names_the_wal_operations(tmp_path):
    # Kills: check_fault("wal"/"wal-truncate", path) with another name or None.
    store = Store(tmp_path, fsync=False)
    state = store.load()
    seen = []
    store.fault = lambda op, path: seen.append((op, path.name))
    store.append({"op": "job", "job": wal_job(1)})
    store.commit()
    store.snapshot(state)
    assert ("wal", WAL_NAME) in seen and ("wal-truncate", WAL_NAME) in seen


def test_store_errors_say_what_failed_in_plain_words(tmp_path):
    # Kills: `e.strerror or e` -> `and` (the message would carry "[Errno 28] ...") and
    # StoreError(None), in replay, commit and truncate.
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    store = Store(tmp_path, fsync=False)
    state = store.load()
    wal_path = tmp_path / WAL_NAME
    store.fault = lambda op, path: enospc if op == "wal" else None
    store.append({"op": "job", "job": wal_job(1)})
    with pytest.raises(StoreError) as exc:
        store.commit()
    assert str(exc.value) == f"cannot write {wal_path}: No space left on device"
    store.fault = lambda op, path: enospc if op == "wal-truncate" else None
    with pytest.raises(StoreError) as exc:
        store.snapshot(state)
    assert str(exc.value) == f"cannot truncate {wal_path}: No space left on device"
    store.close()
    wal_path.unlink(missing_ok=True)
    wal_path.mkdir()                                         # unreadable as a file
    with pytest.raises(StoreError) as exc:
        Store(tmp_path, fsync=False).load()
    assert str(exc.value) == f"cannot read {wal_path}: Is a directory"


# --- gflow/models.py --------------------------------------------------------------------------

from gflow.models import (  # noqa: E402
    JobState, Reservation, ReservationStatus, job_from_trusted_wire, job_from_wire,
    reason_display, reason_is_valid, reservation_from_wire, reservation_to_wire,
)

# spec/api.md §2: JobStateReason is externally tagged; these are all the accepted shapes.
VALID_REASONS = [None, "CancelledByUser", "JobHeldUser", "WaitingForDependency",
                 "WaitingForResources", {"DependencyFailed": 0}, {"DependencyFailed": 5},
                 {"SystemError": "msg"}, {"SystemError": ""}]
INVALID_REASONS = ["Bogus", "waitingforresources", "WAITINGFORRESOURCES", "SystemError",
                   {"DependencyFailed": -1}, {"DependencyFailed": True},
                   {"DependencyFailed": "5"}, {"DependencyFailed": 1.5}, {"SystemError": 5},
                   {"systemerror": "x"}, {"Other": 1}, {"DependencyFailed": 1, "SystemError": "x"},
                   {}, ["DependencyFailed"], 5]


@pytest.mark.parametrize("reason", VALID_REASONS)
def test_every_0413_reason_shape_is_valid(reason):
    assert reason_is_valid(reason) is True


@pytest.mark.parametrize("reason", INVALID_REASONS, ids=repr)
def test_other_reason_shapes_are_not(reason):
    assert reason_is_valid(reason) is False


@pytest.mark.parametrize("reason,shown", [
    ("WaitingForDependency", "Dependency"), ("WaitingForResources", "Resources"),
    ("CancelledByUser", "CancelledByUser"), ("JobHeldUser", "JobHeldUser"),
    ({"DependencyFailed": 7}, "DependencyFailed:7"), ({"SystemError": "boom"}, "SystemError:boom"),
])
def test_reason_display_is_0413s(reason, shown):        # spec/cli.md §2.2
    assert reason_display(reason) == shown


def test_legacy_depends_on_is_added_once():
    assert Job(depends_on=3, depends_on_ids=[1, 2]).all_dependencies() == [1, 2, 3]
    assert Job(depends_on=2, depends_on_ids=[1, 2]).all_dependencies() == [1, 2]
    assert Job(depends_on=None, depends_on_ids=[4]).all_dependencies() == [4]


def test_job_copy_is_deep_for_its_lists_and_maps():
    job = Job(id=1, depends_on_ids=[1], parameters={"a": "1"}, gpu_ids=[0], env={"K": "V"},
              state=JobState.FAILED, time_limit=60.0)
    clone = job.copy()
    assert clone == job and clone is not job
    for name in ("depends_on_ids", "parameters", "gpu_ids", "env"):
        assert getattr(clone, name) is not getattr(job, name), name
    clone.depends_on_ids.append(2)
    clone.parameters["b"] = "2"
    clone.gpu_ids.append(1)
    clone.env["X"] = "Y"
    assert (job.depends_on_ids, job.parameters, job.gpu_ids, job.env) == (
        [1], {"a": "1"}, [0], {"K": "V"})
    bare = Job(id=2).copy()
    assert bare.gpu_ids is None and bare.env is None


@pytest.mark.parametrize("body,message", [
    ({"command": 5}, "command: expected a string, got 5"),
    ({"auto_close_tmux": "yes"}, "auto_close_tmux: expected a boolean, got 'yes'"),
    ({"gpus": -1}, "gpus: expected an integer in 0..=4294967295, got -1"),
    ({"priority": 256}, "priority: expected an integer in 0..=255, got 256"),
    ({"depends_on_ids": 3}, "depends_on_ids: expected a list of job ids, got 3"),
    ({"depends_on_ids": [1, -2]}, "depends_on_ids: expected an integer in 0..=4294967295, "
                                  "got -2"),
    ({"group_id": "nope"}, "group_id: Invalid UUID string: nope"),      # spec/api.md §2
])
def test_field_errors_name_the_field_and_the_value(body, message):
    with pytest.raises(ValueError) as exc:
        job_from_wire(body)
    assert str(exc.value) == message


def test_field_checks_accept_the_right_types():
    job = job_from_wire({"command": "x", "auto_close_tmux": True, "gpus": 4294967295,
                         "priority": 255, "depends_on_ids": [0, 4294967295]})
    assert (job.command, job.auto_close_tmux, job.gpus, job.priority, job.depends_on_ids) == (
        "x", True, 4294967295, 255, [0, 4294967295])


def test_enum_error_lists_the_variants():
    with pytest.raises(ValueError) as exc:
        job_from_wire({"gpu_sharing_mode": "shared"})
    assert "`Exclusive`, `Shared`" in str(exc.value)


@pytest.mark.parametrize("wire,expected", [
    ({"secs_since_epoch": 1795500107, "nanos_since_epoch": 500000000}, 1795500107.5),
    ([1795500107, 250000000], 1795500107.25),
])
def test_trusted_decode_reads_both_time_encodings(wire, expected):
    base = job_to_wire(Job(id=1, command="x"), with_env=True)
    for key in ("submitted_at", "started_at", "finished_at"):
        data = dict(base, **{key: wire})
        assert getattr(job_from_trusted_wire(data), key) == pytest.approx(expected, abs=1e-6)
    data = dict(base, time_limit={"secs": 90, "nanos": 500000000})
    assert job_from_trusted_wire(data).time_limit == pytest.approx(90.5)
    data = dict(base, time_limit=[90, 250000000])
    assert job_from_trusted_wire(data).time_limit == pytest.approx(90.25)


def test_trusted_decode_of_partial_and_foreign_maps():
    # A map with fewer keys, or with keys a Job does not have: the known ones are used,
    # missing ones take the Job defaults (state Queued).
    job = job_from_trusted_wire({"id": 3, "command": "x", "not_a_field": 1})
    assert (job.id, job.command, job.state, job.priority) == (3, "x", JobState.QUEUED, 10)
    full = job_to_wire(Job(id=4, command="y", state=JobState.RUNNING), with_env=True)
    assert job_from_trusted_wire(dict(full, extra_key=1)).state is JobState.RUNNING


# spec/api.md §5.15: a GpuReservation, as captured (keys in order; created_at's nanoseconds
# made .5 s, which a float holds exactly: in memory times are float seconds, ~0.2 µs apart).
RESERVATION_0413 = {"id": 3, "user": "carol", "gpu_spec": {"indices": [2]},
                    "start_time": {"secs_since_epoch": 1893490200, "nanos_since_epoch": 0},
                    "duration": {"secs": 3600, "nanos": 0}, "status": "Pending",
                    "created_at": {"secs_since_epoch": 1795500284,
                                   "nanos_since_epoch": 500000000},
                    "cancelled_at": None}


def test_reservation_wire_round_trip_is_0413s():
    r = reservation_from_wire(RESERVATION_0413)
    assert (r.id, r.user, r.gpu_spec, r.status) == (3, "carol", {"indices": [2]},
                                                    ReservationStatus.PENDING)
    assert (r.start_time, r.duration, r.cancelled_at) == (1893490200.0, 3600.0, None)
    assert r.created_at == 1795500284.5
    assert reservation_to_wire(r) == RESERVATION_0413
    assert list(reservation_to_wire(r)) == list(RESERVATION_0413)
    cancelled = dict(RESERVATION_0413, status="Cancelled",
                     cancelled_at={"secs_since_epoch": 1795500300, "nanos_since_epoch": 0})
    back = reservation_from_wire(cancelled)
    assert back.cancelled_at == 1795500300.0
    assert reservation_to_wire(back) == cancelled


@pytest.mark.parametrize("key", ["start_time", "duration", "created_at", "cancelled_at"])
def test_reservation_time_errors_name_the_field(key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        reservation_from_wire(dict(RESERVATION_0413, **{key: {"nope": 1}}))


# --- gflow/scheduler/policy.py ----------------------------------------------------------------

from gflow.scheduler.policy import (  # noqa: E402
    Candidate, Gpu, Occupant, PolicyInput, dependency_status, plan, time_bonus,
)


def policy_run(cands, occupants=(), n_gpus=2, mem=24576, **kw):
    gpu_list = kw.pop("gpu_list", None) or [Gpu(index=i, memory_mb=mem) for i in range(n_gpus)]
    return plan(PolicyInput(candidates=list(cands), occupants=list(occupants),
                            dep_states=kw.pop("dep_states", {}), gpus=gpu_list, **kw))


@pytest.mark.parametrize("limit,bonus", [(3600, 295), (43200.25, 249), (864, 299),
                                         (86400, 200), (10 * 86400, 200), (0, 300)])
def test_time_bonus_is_the_0413_formula(limit, bonus):
    # 200 + floor((1 - min(limit / 24 h, 1)) * 100) (spec/scheduler.md): 43200.25 s sits just
    # past a boundary, where dividing by anything but 86400 gives 250.
    assert time_bonus(limit) == bonus


def test_dependency_status_results():
    def status(deps, states, any_mode=False):
        return dependency_status(Candidate(id=9, user="a", deps=deps, dep_mode_any=any_mode),
                                 states)
    assert status((), {}) == ("ok", None)
    assert status((1, 2), {1: "Finished", 2: "Finished"}) == ("ok", None)
    assert status((1, 2), {1: "Finished", 2: "Running"}) == ("wait", 2)
    assert status((1, 2), {1: "Running", 2: "Failed"}) == ("never", 2)
    assert status((1, 2), {1: "Failed", 2: "Finished"}, True) == ("ok", None)
    assert status((1, 2, 3), {1: "Failed", 2: "Running", 3: "Queued"}, True) == ("wait", 2)
    assert status((1, 2, 3), {1: "Failed", 2: "Cancelled", 3: "Timeout"}, True) == ("never", 3)


def test_jobs_that_cannot_start_block_no_one_behind_them():
    # A waiting job is skipped, never the end of the pass: each of these comes first in the
    # order (priority 200) and must not stop the priority-1 job behind it.
    blockers = [
        Candidate(id=1, user="a", priority=200, deps=(50,)),                        # waits
        Candidate(id=2, user="a", priority=200, deps=(51,), auto_cancel=False),     # never
        Candidate(id=3, user="a", priority=200, gpus=9),                            # never fits
        Candidate(id=4, user="a", priority=200, group_id="g", max_concurrent=1),    # group full
        Candidate(id=5, user="a", priority=200, memory_mb=800),                     # memory
    ]
    behind = Candidate(id=10, user="a", priority=1, gpus=1)
    occupants = [Occupant(id=20, user="a", group_id="g", memory_mb=500)]
    d = policy_run(blockers + [behind], occupants, dep_states={50: "Running", 51: "Failed"},
                   total_memory_mb=1000)
    assert d.starts == [(10, [0])]
    assert {i: code for i, (code, _) in d.waiting.items()} == {
        1: "WaitingForDependency", 2: "WaitingForDependency", 3: "WaitingForResources",
        4: "WaitingForResources", 5: "WaitingForResources"}
    assert d.waiting[1][1] == "waiting for job 50"
    assert d.waiting[2][1] == "dependency can never be met: job 51 did not finish"
    assert d.waiting[4][1] == "group limit: 1 of 1 running"
    assert d.waiting[5][1] == "waiting: 800 MB of memory, 500 MB free"


def test_never_fits_reasons():
    gpus2 = [Gpu(index=0, memory_mb=1000), Gpu(index=1, memory_mb=1000)]
    d = policy_run([Candidate(id=1, user="a", gpus=3)], gpu_list=gpus2)
    assert d.waiting[1] == ("WaitingForResources",
                            "can never run here: needs 3 GPUs; this machine has 2")
    d = policy_run([Candidate(id=1, user="a", gpus=1)], gpu_list=gpus2, allowed=frozenset())
    assert d.waiting[1] == ("WaitingForResources", "can never run here: needs 1 GPU; "
                                                   "0 of this machine's 2 are allowed")
    d = policy_run([Candidate(id=1, user="a", memory_mb=2001)], total_memory_mb=2000)
    assert d.waiting[1] == ("WaitingForResources", "can never run here: needs 2001 MB of "
                                                   "memory, the machine has 2000 MB")
    # Exactly the machine's memory fits; with its size unknown nothing is "never".
    assert policy_run([Candidate(id=1, user="a", memory_mb=2000)],
                      total_memory_mb=2000).starts == [(1, [])]
    assert policy_run([Candidate(id=1, user="a", memory_mb=10 ** 9)]).starts == [(1, [])]
    d = policy_run([Candidate(id=1, user="a", group_id="g", max_concurrent=0)])
    assert d.waiting[1][1] == ("can never run: its group's limit is 0 (raise it with "
                               "gctl set-limit)")


def test_group_limits_count_running_members():
    members = [Occupant(id=20, user="a", group_id="g"), Occupant(id=21, user="a", group_id="g")]
    cand = Candidate(id=1, user="a", group_id="g", max_concurrent=2)
    assert policy_run([cand], members).waiting[1][1] == "group limit: 2 of 2 running"
    assert policy_run([cand], members[:1]).starts == [(1, [])]
    lone = Candidate(id=2, user="a", group_id="h", max_concurrent=1)   # nobody of h runs
    assert policy_run([lone], members).starts == [(2, [])]
    # Starting members in this pass count too.
    two = [Candidate(id=3, user="a", group_id="k", max_concurrent=1),
           Candidate(id=4, user="a", group_id="k", max_concurrent=1)]
    d = policy_run(two)
    assert d.starts == [(3, [])] and d.waiting[4][1] == "group limit: 1 of 1 running"


def test_memory_of_every_occupant_is_counted():
    occ = [Occupant(id=20, user="a", memory_mb=1000), Occupant(id=21, user="a", memory_mb=1000),
           Occupant(id=22, user="a")]                        # no limit: claims nothing
    d = policy_run([Candidate(id=1, user="a", memory_mb=1500)], occ, total_memory_mb=3000)
    assert d.waiting[1][1] == "waiting: 1500 MB of memory, 1000 MB free"
    d = policy_run([Candidate(id=1, user="a", memory_mb=1000)], occ, total_memory_mb=3000)
    assert d.starts == [(1, [])]
    # What this pass starts is counted for the jobs after it.
    d = policy_run([Candidate(id=1, user="a", memory_mb=600),
                    Candidate(id=2, user="a", memory_mb=600)], total_memory_mb=1000)
    assert d.starts == [(1, [])] and d.waiting[2][1] == "waiting: 600 MB of memory, 400 MB free"


def test_waiting_jobs_count_as_ahead_in_the_reason():
    occ = [Occupant(id=20, user="a", gpu_ids=(0, 1))]
    cands = [Candidate(id=1, user="a", gpus=2, priority=30),
             Candidate(id=2, user="a", gpus=1, priority=20),
             Candidate(id=3, user="a", gpus=1, priority=10)]
    d = policy_run(cands, occ)
    assert d.waiting[1][1] == "waiting: 2 GPUs, 0 free"
    assert d.waiting[2][1] == "waiting: 1 GPUs, 0 free; priority: 1 jobs ahead"
    assert d.waiting[3][1] == "waiting: 1 GPUs, 0 free; priority: 2 jobs ahead"


def test_memory_starvation_keeps_memory_for_the_old_job():
    occ = [Occupant(id=20, user="a", memory_mb=600)]
    old = Candidate(id=1, user="a", priority=50, memory_mb=800, queued_since=0.0)
    small = Candidate(id=2, user="a", priority=1, memory_mb=100)
    # Fresh: the small job may use the free memory.
    d = policy_run([old, small], occ, total_memory_mb=1000, now=1800.0, starvation_secs=1800)
    assert d.starts == [(2, [])] and not d.protecting
    # Waited longer than starvation_secs: nobody else takes memory.
    d = policy_run([old, small], occ, total_memory_mb=1000, now=1800.5, starvation_secs=1800)
    assert d.starts == [] and d.protecting
    assert d.waiting[1][1] == ("waiting: 800 MB of memory, 400 MB free "
                               "(kept for a job that waited too long)")
    assert d.waiting[2][1] == ("waiting: 100 MB of memory, 400 MB free "
                               "(kept for a job that waited too long)")


def test_gpu_starvation_detail():
    occ = [Occupant(id=20, user="a", gpu_ids=(0,))]
    old = Candidate(id=1, user="a", priority=50, gpus=2, queued_since=0.0)
    small = Candidate(id=2, user="a", priority=1, gpus=1)
    d = policy_run([old, small], occ, now=1800.0, starvation_secs=1800)
    assert d.starts == [(2, [1])]
    d = policy_run([old, small], occ, now=1801.0, starvation_secs=1800)
    assert d.starts == [] and d.protecting
    assert d.waiting[2][1] == ("waiting: GPUs kept for a job that has waited too long; "
                               "priority: 1 jobs ahead")


def test_shared_gpu_memory_accounting():
    one = [Gpu(index=0, memory_mb=1000)]
    two = [Occupant(id=20, user="a", gpu_ids=(0,), shared=True, gpu_memory_mb=300),
           Occupant(id=21, user="a", gpu_ids=(0,), shared=True, gpu_memory_mb=300)]
    fits = Candidate(id=1, user="a", gpus=1, shared=True, gpu_memory_mb=400)
    too_big = Candidate(id=2, user="a", gpus=1, shared=True, gpu_memory_mb=401)
    assert policy_run([fits], two, gpu_list=one).starts == [(1, [0])]      # 600 + 400 = 1000
    assert policy_run([too_big], two, gpu_list=one).starts == []
    # A shared occupant without a memory figure claims nothing; a whole GPU's worth fits.
    bare = [Occupant(id=22, user="a", gpu_ids=(0,), shared=True)]
    whole = Candidate(id=3, user="a", gpus=1, shared=True, gpu_memory_mb=1000)
    assert policy_run([whole], bare, gpu_list=one).starts == [(3, [0])]
    assert policy_run([whole], [], gpu_list=one).starts == [(3, [0])]
    # What this pass places is counted for the next shared job.
    d = policy_run([Candidate(id=4, user="a", gpus=1, shared=True, gpu_memory_mb=600),
                    Candidate(id=5, user="a", gpus=1, shared=True, gpu_memory_mb=600)],
                   gpu_list=one)
    assert d.starts == [(4, [0])] and 5 in d.waiting


def test_shared_jobs_skip_unusable_gpus_and_look_further():
    gpus = [Gpu(index=0, memory_mb=1000, foreign=True), Gpu(index=1, memory_mb=1000),
            Gpu(index=2, memory_mb=1000)]
    shared = Candidate(id=1, user="a", gpus=1, shared=True, gpu_memory_mb=500)
    # GPU 0: a foreign process and no gflow job -> skipped, GPU 1 taken.
    assert policy_run([shared], gpu_list=gpus).starts == [(1, [1])]
    # GPU 0 with a foreign process but already shared by a gflow job: usable.
    on0 = [Occupant(id=20, user="a", gpu_ids=(0,), shared=True, gpu_memory_mb=100)]
    assert policy_run([shared], on0, gpu_list=gpus).starts == [(1, [0])]
    # GPU 1 full: skipped, GPU 2 taken.
    full1 = [Occupant(id=21, user="a", gpu_ids=(1,), shared=True, gpu_memory_mb=900)]
    gpus_clean = [Gpu(index=1, memory_mb=1000), Gpu(index=2, memory_mb=1000)]
    assert policy_run([shared], full1, gpu_list=gpus_clean).starts == [(1, [2])]
    # An exclusive job never goes where a shared one is or a foreign process runs.
    excl = Candidate(id=2, user="a", gpus=1)
    assert policy_run([excl], full1, gpu_list=gpus_clean).starts == [(2, [2])]
    assert policy_run([excl], gpu_list=gpus).starts == [(2, [1])]


# --- second round (survivors of the run on HEAD 2026-12-06) -----------------------------------

from dataclasses import fields as dataclass_fields  # noqa: E402

from gflow.models import duration_from_wire, time_from_wire  # noqa: E402


def test_state_parse_error_names_the_text():
    with pytest.raises(ValueError) as exc:
        JobState.parse("queued")
    assert str(exc.value) == "unknown job state 'queued'"


def test_job_from_wire_refuses_what_is_not_a_map():
    with pytest.raises(ValueError) as exc:
        job_from_wire([1, 2])
    assert str(exc.value) == "expected a job object, got list"


@pytest.mark.parametrize("env", [{"A": 1}, {1: "a"}, ["A=B"], "A=B"], ids=repr)
def test_env_must_map_strings_to_strings(env):
    with pytest.raises(ValueError) as exc:
        job_from_wire({"env": env})
    assert str(exc.value) == "env: expected a map of strings to strings"


def test_env_of_strings_is_kept():
    assert job_from_wire({"env": {"A": "B"}}).env == {"A": "B"}


def test_both_time_encodings_and_their_bounds():
    # spec/api.md §2: {"secs_since_epoch", "nanos_since_epoch"} or the 2-array; u64 / u32
    # nanoseconds below one second.
    assert time_from_wire([1795500107, 500000000]) == 1795500107.5
    assert duration_from_wire([90, 250000000]) == 90.25
    assert time_from_wire({"secs_since_epoch": 2**64 - 1, "nanos_since_epoch": 999_999_999})
    for bad, message in [
        ([1, 2, 3], "start_time: expected {'secs_since_epoch', 'nanos_since_epoch'}, got "
                    "[1, 2, 3]"),
        (5, "start_time: expected {'secs_since_epoch', 'nanos_since_epoch'}, got 5"),
        ({"secs_since_epoch": 2**64, "nanos_since_epoch": 0},
         f"start_time: expected an integer in 0..={2**64 - 1}, got {2**64}"),
        ({"secs_since_epoch": -1, "nanos_since_epoch": 0},
         f"start_time: expected an integer in 0..={2**64 - 1}, got -1"),
        ({"secs_since_epoch": 1, "nanos_since_epoch": 1_000_000_000},
         "start_time: expected an integer in 0..=999999999, got 1000000000"),
        ({"secs_since_epoch": 1}, "start_time: missing field `nanos_since_epoch`"),
    ]:
        with pytest.raises(ValueError) as exc:
            time_from_wire(bad, "start_time")
        assert str(exc.value) == message


def test_trusted_decode_of_a_list_duration_is_exact():
    base = job_to_wire(Job(id=1, command="x"), with_env=True)
    assert job_from_trusted_wire(dict(base, time_limit=[90, 250000000])).time_limit == 90.25


def test_trusted_decode_drops_a_foreign_key_even_when_the_count_matches():
    # As many keys as a Job has fields, one of them foreign: it must still be filtered.
    blank = Job(id=5, command="x")
    data = {f.name: getattr(blank, f.name) for f in dataclass_fields(Job) if f.name != "project"}
    data["state"] = "Queued"
    data["not_a_field"] = 1
    assert len(data) == len(dataclass_fields(Job))
    job = job_from_trusted_wire(data)
    assert (job.id, job.command, job.project) == (5, "x", None)


def test_memory_jobs_without_a_limit_need_none():
    full = [Occupant(id=20, user="a", memory_mb=1000)]
    d = policy_run([Candidate(id=1, user="a"), Candidate(id=2, user="a", memory_mb=100)],
                   full, total_memory_mb=1000)
    assert d.starts == [(1, [])]
    assert d.waiting[2][1] == "waiting: 100 MB of memory, 0 MB free"


def test_every_start_of_a_pass_claims_its_memory():
    d = policy_run([Candidate(id=i, user="a", memory_mb=m) for i, m in ((1, 300), (2, 300),
                                                                        (3, 500))],
                   total_memory_mb=1000)
    assert d.starts == [(1, []), (2, [])]
    assert d.waiting[3][1] == "waiting: 500 MB of memory, 400 MB free"


def test_memory_waiters_count_as_ahead():
    occ = [Occupant(id=20, user="a", memory_mb=900, gpu_ids=(0, 1))]
    d = policy_run([Candidate(id=1, user="a", priority=30, memory_mb=500),
                    Candidate(id=2, user="a", priority=20, memory_mb=500),
                    Candidate(id=3, user="a", priority=10, gpus=1)], occ, total_memory_mb=1000)
    assert d.waiting[3][1] == "waiting: 1 GPUs, 0 free; priority: 2 jobs ahead"


def test_starvation_counts_from_when_the_job_was_queued():
    occ = [Occupant(id=20, user="a", memory_mb=600)]
    old = Candidate(id=1, user="a", priority=50, memory_mb=800, queued_since=10_000.0)
    small = Candidate(id=2, user="a", priority=1, memory_mb=100)
    d = policy_run([old, small], occ, total_memory_mb=1000, now=11_000.0, starvation_secs=1800)
    assert d.starts == [(2, [])] and not d.protecting      # waited 1000 s of 1800


def test_shared_placements_of_one_pass_add_up():
    one = [Gpu(index=0, memory_mb=1000)]
    shared = lambda i, m: Candidate(id=i, user="a", gpus=1, shared=True,  # noqa: E731
                                    gpu_memory_mb=m)
    assert policy_run([shared(1, 500), shared(2, 500)], gpu_list=one).starts == [
        (1, [0]), (2, [0])]                                  # 500 + 500 = 1000 fits
    d = policy_run([shared(1, 300), shared(2, 300), shared(3, 500)], gpu_list=one)
    assert [s[0] for s in d.starts] == [1, 2] and 3 in d.waiting
    d = policy_run([shared(1, None), shared(2, 1000)], gpu_list=one)
    assert [s[0] for s in d.starts] == [1, 2]                # no figure claims nothing
    full = [Occupant(id=20, user="a", gpu_ids=(0,), shared=True, gpu_memory_mb=1000)]
    assert policy_run([shared(3, None)], full, gpu_list=one).starts == [(3, [0])]


def test_max_concurrent_without_a_group_limits_nothing():
    assert policy_run([Candidate(id=1, user="a", max_concurrent=0)]).starts == [(1, [])]


# --- third round ------------------------------------------------------------------------------

from gflow.models import duration_to_wire, time_to_wire  # noqa: E402


def test_times_and_durations_on_the_wire():
    # spec/api.md §2: {"secs_since_epoch", "nanos_since_epoch"} / {"secs", "nanos"}, nanos
    # below one second even when rounding reaches it.
    assert duration_to_wire(90.75) == {"secs": 90, "nanos": 750000000}
    assert duration_to_wire(0.9999999999) == {"secs": 0, "nanos": 999999999}
    assert time_to_wire(12.75) == {"secs_since_epoch": 12, "nanos_since_epoch": 750000000}
    assert time_to_wire(0.9999999999) == {"secs_since_epoch": 0, "nanos_since_epoch": 999999999}


def test_job_wire_carries_its_times_and_the_umask_only_in_the_full_record():
    job = Job(id=1, started_at=1795500010.5, finished_at=1795500020.25, umask=0o027)
    wire = job_to_wire(job)
    assert wire["started_at"] == {"secs_since_epoch": 1795500010, "nanos_since_epoch": 500000000}
    assert wire["finished_at"] == {"secs_since_epoch": 1795500020,
                                   "nanos_since_epoch": 250000000}
    assert "umask" not in wire
    assert job_to_wire(job, with_env=True)["umask"] == 0o027


def test_time_errors_without_a_field_name_say_time_or_duration():
    for decode, name in ((time_from_wire, "time"), (duration_from_wire, "duration")):
        with pytest.raises(ValueError, match=f"^{name}: expected "):
            decode(5)
