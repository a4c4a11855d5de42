"""Round trips, crash cases and 0.4.13 layout of the durable store (gflow.store)."""

import errno
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from gflow.errors import StoreError
from gflow.models import Job, JobState, Reservation, job_to_wire, reservation_to_wire
from gflow.store import (
    JOURNAL_NAME, RUNTIME_EXTRA_KEYS, RUNTIME_KEYS, SNAPSHOT_NAME, SPEC_EXTRA_KEYS, SPEC_KEYS,
    WAL_NAME, Store, StoreState,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "state"
TOP_KEYS = ["version", "job_specs", "job_runtimes", "state_path", "next_job_id",
            "allowed_gpu_indices", "reservations", "next_reservation_id"]
# spec/api.md §8.2, written out (not taken from gflow.store): the JobSpec and JobRuntime
# keys in order, then ours (DESIGN.md §2: `env` with the spec, `exit_code` and
# `reason_detail` with the runtime; 0.4.13 ignores unknown keys).
SPEC_0413 = ["script", "command", "conda_env", "run_dir", "parameters", "submitted_by",
             "submitted_at", "task_id", "redone_from", "auto_close_tmux", "run_name",
             "project", "depends_on", "depends_on_ids", "dependency_mode",
             "auto_cancel_on_dependency_failure"]
RUNTIME_0413 = ["id", "state", "priority", "gpus", "gpu_sharing_mode", "gpu_memory_limit_mb",
                "time_limit", "memory_limit_mb", "gpu_ids", "group_id", "max_concurrent",
                "started_at", "finished_at", "reason"]
SPEC_OURS = ["env", "umask", "scheduled_at", "max_retries", "dependency_conditions", "notify"]
RUNTIME_OURS = ["exit_code", "reason_detail", "attempts", "suspended_at", "gpu_usage",
                "executor_id"]


def mkjob(i, **kw):
    kw.setdefault("command", f"echo {i}")
    kw.setdefault("submitted_at", 1795500000.25 + i)
    return job_to_wire(Job(id=i, **kw), with_env=True)


def mkres(i, start):
    return reservation_to_wire(Reservation(id=i, user="bob", gpu_spec={"count": 1},
                                           start_time=start, duration=60.0,
                                           created_at=1795500000.0))


def sample_state():
    return StoreState(
        jobs={1: mkjob(1, env={"PATH": "/usr/bin", "HOME": "/home/a"}, exit_code=3,
                       reason_detail="exit code 3", state=JobState.FAILED,
                       finished_at=1795500009.5),
              2: mkjob(2, gpus=2, gpu_ids=[0, 1], state=JobState.RUNNING,
                       started_at=1795500010.123456, time_limit=90.5,
                       parameters={"lr": "0.1", "a": "b"}, depends_on_ids=[1])},
        reservations={1: mkres(1, 1795600000.0), 2: mkres(2, 1795500500.0)},
        next_job_id=3, next_reservation_id=3, allowed_gpu_indices=[0, 2],
    )


def load(d):
    store = Store(d, fsync=False)
    return store, store.load()


def same_content(a: StoreState, b: StoreState):
    assert a.jobs == b.jobs
    assert a.reservations == b.reservations
    assert a.next_job_id == b.next_job_id
    assert a.next_reservation_id == b.next_reservation_id
    assert a.allowed_gpu_indices == b.allowed_gpu_indices


# --- snapshot and WAL round trips --------------------------------------------------------

def test_snapshot_round_trip(tmp_path):
    d = tmp_path / "data"
    store = Store(d)  # real fsyncs here; the other tests skip them for speed
    fresh = store.load()
    assert fresh.mode == "normal" and fresh.jobs == {} and fresh.next_job_id == 1
    assert not fresh.gpus_persisted
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    state = sample_state()
    store.append({"op": "job", "job": state.jobs[1]})
    store.commit()
    store.snapshot(state)
    assert store.wal_bytes == 0
    store.close()
    assert stat.S_IMODE(os.stat(d / SNAPSHOT_NAME).st_mode) == 0o600
    assert not (d / (SNAPSHOT_NAME + ".tmp")).exists()
    _, back = load(d)
    same_content(back, state)
    assert back.gpus_persisted and back.mode == "normal" and back.replay_note is None


def test_wal_replay_without_snapshot(tmp_path):
    store, _ = load(tmp_path)
    state = sample_state()
    for jid, job in state.jobs.items():
        store.append({"op": "job", "job": job})
    for res in state.reservations.values():
        store.append({"op": "reservation", "reservation": res})
    store.append({"op": "meta", "next_job_id": 3, "next_reservation_id": 3,
                  "allowed_gpu_indices": [0, 2]})
    assert store.wal_bytes == 0  # nothing durable before commit
    store.commit()
    assert store.wal_bytes == os.path.getsize(tmp_path / WAL_NAME) > 0
    assert stat.S_IMODE(os.stat(tmp_path / WAL_NAME).st_mode) == 0o600
    store.close()
    _, back = load(tmp_path)
    same_content(back, state)
    assert back.wal_records == 5 and back.needs_snapshot and back.gpus_persisted


def test_uncommitted_records_are_lost(tmp_path):
    store, _ = load(tmp_path)
    store.append({"op": "job", "job": mkjob(1)})
    store.commit()
    store.append({"op": "job", "job": mkjob(2)})
    store.close()
    _, back = load(tmp_path)
    assert list(back.jobs) == [1]


def test_append_rejects_non_records(tmp_path):
    store, _ = load(tmp_path)
    with pytest.raises(ValueError):
        store.append({"op": "nope"})
    with pytest.raises(TypeError):
        store.append({"op": "job", "job": object()})


def commit_three_jobs(d):
    store, _ = load(d)
    for i in (1, 2, 3):
        store.append({"op": "job", "job": mkjob(i)})
        store.commit()
    store.close()
    return os.path.getsize(d / WAL_NAME)


def test_torn_last_frame_loses_only_that_record(tmp_path):
    size = commit_three_jobs(tmp_path)
    os.truncate(tmp_path / WAL_NAME, size - 3)
    store, back = load(tmp_path)
    assert list(back.jobs) == [1, 2]
    assert back.next_job_id == 3
    assert "torn" in back.replay_note
    good = os.path.getsize(tmp_path / WAL_NAME)
    assert good == store.wal_bytes < size - 3  # cut at once
    # A torn tail is the normal trace of a crash mid-append, not damage: nothing is set
    # aside (a damaged frame is, see below).
    assert not list(tmp_path.glob(WAL_NAME + ".corrupt.*"))
    # New records go after the good prefix and survive the next load.
    store.append({"op": "job", "job": mkjob(3, command="again")})
    store.commit()
    store.close()
    _, again = load(tmp_path)
    assert list(again.jobs) == [1, 2, 3] and again.jobs[3]["command"] == "again"
    assert again.replay_note is None


@pytest.mark.parametrize("cut", [1, 7, 8, 9, 20])
def test_a_crash_mid_append_at_any_byte_is_a_torn_tail(tmp_path, cut):
    """Cut the last frame after `cut` of its bytes (inside the header, right after it,
    inside the payload): the records before it come back, the tail is cut without
    setting anything aside, and the log takes new records right after the good prefix."""
    size = commit_three_jobs(tmp_path)
    raw = (tmp_path / WAL_NAME).read_bytes()
    first_len = int.from_bytes(raw[0:4], "little")
    second_len = int.from_bytes(raw[8 + first_len:12 + first_len], "little")
    third = 16 + first_len + second_len
    assert third < size
    os.truncate(tmp_path / WAL_NAME, third + cut)
    store, back = load(tmp_path)
    assert list(back.jobs) == [1, 2]
    assert os.path.getsize(tmp_path / WAL_NAME) == third == store.wal_bytes
    assert not list(tmp_path.glob(WAL_NAME + ".corrupt.*"))
    store.append({"op": "job", "job": mkjob(4)})
    store.commit()
    store.close()
    _, again = load(tmp_path)
    assert list(again.jobs) == [1, 2, 4] and again.replay_note is None


def test_corrupt_crc_stops_replay_there(tmp_path):
    commit_three_jobs(tmp_path)
    raw = bytearray((tmp_path / WAL_NAME).read_bytes())
    first_len = int.from_bytes(raw[0:4], "little")
    second = 8 + first_len
    raw[second + 8 + 5] ^= 0xFF  # a payload byte of the second frame
    (tmp_path / WAL_NAME).write_bytes(bytes(raw))
    _, back = load(tmp_path)
    assert list(back.jobs) == [1]
    assert "CRC" in back.replay_note
    assert os.path.getsize(tmp_path / WAL_NAME) == second
    assert list(tmp_path.glob(WAL_NAME + ".corrupt.*"))  # the damaged tail is kept


def test_snapshot_truncates_wal(tmp_path):
    store, _ = load(tmp_path)
    state = sample_state()
    for job in state.jobs.values():
        store.append({"op": "job", "job": job})
    store.commit()
    assert store.wal_bytes > 0
    store.snapshot(state)
    assert store.wal_bytes == 0 == os.path.getsize(tmp_path / WAL_NAME)
    store.append({"op": "job", "job": mkjob(3)})
    store.commit()
    store.close()
    _, back = load(tmp_path)
    assert list(back.jobs) == [1, 2, 3] and back.wal_records == 1


def test_ids_never_reused_after_replay(tmp_path):
    store, _ = load(tmp_path)
    for i in (1, 2, 3):
        store.append({"op": "job", "job": mkjob(i)})
    store.append({"op": "meta", "next_job_id": 2})  # lower than ids seen: ignored
    store.commit()
    store.close()
    _, back = load(tmp_path)
    assert back.next_job_id == 4
    store, _ = load(tmp_path)
    store.append({"op": "meta", "next_job_id": 10, "next_reservation_id": 7})
    store.append({"op": "reservation", "reservation": mkres(9, 1795600000.0)})
    store.commit()
    store.close()
    _, back = load(tmp_path)
    assert back.next_job_id == 10 and back.next_reservation_id == 10


def test_meta_subset_keeps_other_fields(tmp_path):
    store, _ = load(tmp_path)
    store.append({"op": "meta", "allowed_gpu_indices": [1]})
    store.append({"op": "meta", "next_reservation_id": 4})
    store.commit()
    _, back = load(tmp_path)
    assert back.allowed_gpu_indices == [1] and back.next_reservation_id == 4
    assert back.next_job_id == 1 and back.gpus_persisted


# --- the 0.4.13 layout --------------------------------------------------------------------

def test_snapshot_key_order_and_bytes(tmp_path):
    store, _ = load(tmp_path)
    state = sample_state()
    store.snapshot(state)
    raw = (tmp_path / SNAPSHOT_NAME).read_bytes()
    assert raw.startswith(b"\x88\xa7version\x04\xa9job_specs")
    top = msgpack.unpackb(raw, raw=False)
    assert list(top) == TOP_KEYS
    assert top["state_path"] == os.path.join(os.path.abspath(tmp_path), "state.json")
    assert top["next_job_id"] == 3 and top["next_reservation_id"] == 3
    assert top["allowed_gpu_indices"] == [0, 2]
    assert [list(s) for s in top["job_specs"]] == [SPEC_0413 + SPEC_OURS] * 2
    assert [list(r) for r in top["job_runtimes"]] == [RUNTIME_0413 + RUNTIME_OURS] * 2
    assert (list(SPEC_KEYS), list(RUNTIME_KEYS)) == (SPEC_0413, RUNTIME_0413)
    assert (list(SPEC_EXTRA_KEYS), list(RUNTIME_EXTRA_KEYS)) == (SPEC_OURS, RUNTIME_OURS)
    assert [r["id"] for r in top["job_runtimes"]] == [1, 2]  # index i holds id i+1
    assert top["job_specs"][0]["env"] == {"PATH": "/usr/bin", "HOME": "/home/a"}
    assert top["job_runtimes"][0]["exit_code"] == 3
    assert [r["id"] for r in top["reservations"]] == [2, 1]  # sorted by start_time
    assert top["job_runtimes"][1]["time_limit"] == {"secs": 90, "nanos": 500000000}
    assert msgpack.packb(top, use_bin_type=True) == raw
    # Rebuilt by hand in the documented order: the same bytes.
    jobs = [state.jobs[1], state.jobs[2]]
    manual = {
        "version": 4,
        "job_specs": [{k: j[k] for k in SPEC_0413 + SPEC_OURS} for j in jobs],
        "job_runtimes": [{k: j[k] for k in RUNTIME_0413 + RUNTIME_OURS} for j in jobs],
        "state_path": top["state_path"], "next_job_id": 3, "allowed_gpu_indices": [0, 2],
        "reservations": [state.reservations[2], state.reservations[1]],
        "next_reservation_id": 3,
    }
    assert msgpack.packb(manual, use_bin_type=True) == raw


def test_gaps_are_filled_with_placeholders(tmp_path):
    store, _ = load(tmp_path)
    store.snapshot(StoreState(jobs={1: mkjob(1), 3: mkjob(3)}, reservations={}))
    top = msgpack.unpackb((tmp_path / SNAPSHOT_NAME).read_bytes(), raw=False)
    assert [r["id"] for r in top["job_runtimes"]] == [1, 2, 3]
    assert top["job_runtimes"][1]["state"] == "Cancelled"
    assert top["next_job_id"] == 4
    _, back = load(tmp_path)
    assert back.jobs[2]["state"] == "Cancelled" and back.next_job_id == 4


def test_fixture_0413_msgpack_loads_and_rewrites_byte_identical(tmp_path):
    src = FIXTURES / "v4_0413_state.msgpack"
    original = src.read_bytes()
    shutil.copyfile(src, tmp_path / SNAPSHOT_NAME)
    store, back = load(tmp_path)
    assert back.mode == "normal" and back.replay_note is None
    assert list(back.jobs) == [1, 2, 3]
    assert back.jobs[3]["state"] == "Cancelled" and back.jobs[3]["reason"] == "CancelledByUser"
    assert back.jobs[3]["time_limit"] == {"secs": 600, "nanos": 0}
    assert back.jobs[2]["group_id"] == "afd540d3-5174-42e4-b8e9-254872aee375"
    assert back.jobs[1]["exit_code"] is None and back.jobs[1]["env"] is None
    assert back.next_job_id == 4 and back.next_reservation_id == 2
    assert back.allowed_gpu_indices == [0, 1] and back.gpus_persisted
    assert back.reservations[1]["gpu_spec"] == {"count": 1}
    store.snapshot(back)
    top = msgpack.unpackb((tmp_path / SNAPSHOT_NAME).read_bytes(), raw=False)
    for s in top["job_specs"]:
        for key in SPEC_OURS:
            del s[key]
    for r in top["job_runtimes"]:
        for key in RUNTIME_OURS:
            del r[key]
    top["state_path"] = "/home/alice/.local/share/gflow/state.json"
    # Nanoseconds included: exact integers survive the load.
    assert msgpack.packb(top, use_bin_type=True) == original


def test_fixture_v1_legacy_json_loads(tmp_path):
    src = FIXTURES / "v1_legacy_state.json"
    shutil.copyfile(src, tmp_path / "state.json")
    before = (tmp_path / "state.json").read_bytes()
    store, back = load(tmp_path)
    assert back.mode == "normal"
    assert list(back.jobs) == [1, 2]
    assert back.jobs[2]["depends_on"] == 1 and back.jobs[2]["priority"] == 5
    assert back.jobs[2]["submitted_at"] == {"secs_since_epoch": 1700000100,
                                            "nanos_since_epoch": 42}
    assert back.jobs[1]["run_dir"] == "." and back.jobs[1]["priority"] == 10  # defaults
    assert back.jobs[1]["auto_cancel_on_dependency_failure"] is False
    assert back.next_job_id == 3
    assert not (tmp_path / SNAPSHOT_NAME).exists()  # a migration alone writes nothing
    store.snapshot(back)
    assert (tmp_path / SNAPSHOT_NAME).exists()
    assert (tmp_path / "state.json").read_bytes() == before  # never written


@pytest.mark.parametrize("shape", ["list", "map"])
def test_legacy_state_json_jobs_list_and_map(tmp_path, shape):
    jobs = [mkjob(1), mkjob(2, state=JobState.RUNNING)]
    for j in jobs:
        del j["env"], j["exit_code"], j["reason_detail"]
    payload = jobs if shape == "list" else {str(j["id"]): j for j in reversed(jobs)}
    (tmp_path / "state.json").write_text(json.dumps(
        {"version": 1, "jobs": payload, "next_job_id": 3,
         "reservations": [mkres(1, 1795600000.0)], "next_reservation_id": 2}))
    _, back = load(tmp_path)
    assert list(back.jobs) == [1, 2] and back.jobs[2]["state"] == "Running"
    assert back.reservations == {} and back.next_reservation_id == 1  # v2->v3 cleared them


def test_legacy_jobs_map_with_int_keys_in_msgpack(tmp_path):
    jobs = {2: mkjob(2), 1: mkjob(1)}
    (tmp_path / SNAPSHOT_NAME).write_bytes(msgpack.packb(
        {"version": 3, "jobs": jobs, "next_job_id": 3}, use_bin_type=True))
    _, back = load(tmp_path)
    assert back.jobs == {1: mkjob(1), 2: mkjob(2)} and back.mode == "normal"


def test_seqv2_array_layout(tmp_path):
    (tmp_path / SNAPSHOT_NAME).write_bytes(msgpack.packb(
        [1, [mkjob(1)], "/x/state.json", 2, None], use_bin_type=True))
    _, back = load(tmp_path)
    assert list(back.jobs) == [1] and back.next_job_id == 2 and back.mode == "normal"


# --- recovery mode -------------------------------------------------------------------------

def test_version_999_enters_journal_mode_with_backup(tmp_path):
    raw = msgpack.packb({"version": 999, "job_specs": [], "job_runtimes": [],
                         "jobs": [mkjob(1), mkjob(2)], "next_job_id": 3}, use_bin_type=True)
    path = tmp_path / SNAPSHOT_NAME
    path.write_bytes(raw)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    store, back = load(tmp_path)
    assert back.mode == "journal"
    assert back.detail.startswith("State migration failed: State file version 999 is newer "
                                  "than supported version 4. Please upgrade gflowd.. gflowd "
                                  "entered recovery mode (journal)")
    assert ".backup." in back.state_backup
    assert Path(back.state_backup).read_bytes() == raw
    assert list(back.jobs) == [1, 2] and back.next_job_id == 3  # data stays visible
    back.jobs[3] = mkjob(3)
    store.snapshot(back)
    assert path.read_bytes() == raw and os.stat(path).st_mtime == 1_000_000_000


def test_garbage_enters_journal_mode_with_corrupt_copy(tmp_path):
    path = tmp_path / SNAPSHOT_NAME
    path.write_bytes(b"\xc1" * 9)
    _, back = load(tmp_path)
    assert back.mode == "journal" and back.jobs == {} and back.next_job_id == 1
    assert back.detail == (
        f"Failed to load state file from {tmp_path}: Failed to deserialize {path} "
        "(9 bytes, header=0xc1). gflowd entered recovery mode (journal) to avoid "
        "overwriting your state file.")
    assert ".corrupt." in back.state_backup
    assert Path(back.state_backup).read_bytes() == b"\xc1" * 9
    assert path.read_bytes() == b"\xc1" * 9
    assert not back.gpus_persisted


def test_invalid_content_salvages_ids(tmp_path):
    bad = mkjob(7)
    bad["state"] = "Exploded"  # 0.4.13 rejects unknown variants: the file is undecodable
    (tmp_path / SNAPSHOT_NAME).write_bytes(msgpack.packb(
        {"version": 4, "jobs": [bad], "next_job_id": 8}, use_bin_type=True))
    _, back = load(tmp_path)
    assert back.mode == "journal" and back.next_job_id == 8  # never reuses 1..7


def test_journal_mode_writes_one_snapshot_line(tmp_path):
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"\x00garbage")
    store, back = load(tmp_path)
    assert back.mode == "journal"
    state = sample_state()
    store.append({"op": "job", "job": state.jobs[1]})
    store.commit()  # the WAL keeps working in journal mode
    store.snapshot(state)
    store.snapshot(state)  # overwritten, not appended
    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert list(line) == ["ts", "kind", "scheduler"] and line["kind"] == "snapshot"
    sched = line["scheduler"]
    assert list(sched) == ["version", "jobs", "state_path", "next_job_id",
                           "allowed_gpu_indices", "reservations", "next_reservation_id"]
    assert [j["id"] for j in sched["jobs"]] == [1, 2]
    assert sched["jobs"][0] == state.jobs[1]
    assert sched["next_job_id"] == 3 and sched["version"] == 4
    assert (tmp_path / SNAPSHOT_NAME).read_bytes() == b"\x00garbage"
    assert stat.S_IMODE(os.stat(tmp_path / JOURNAL_NAME).st_mode) == 0o600
    assert store.wal_bytes == 0
    store.close()
    # Still broken at the next start: the journal carries the state and the ids.
    _, again = load(tmp_path)
    assert again.mode == "journal"
    same_content(again, state)


def test_repaired_state_merges_journal_then_snapshot_empties_it(tmp_path):
    store, _ = load(tmp_path)
    store.snapshot(StoreState(jobs={1: mkjob(1), 2: mkjob(2)}, reservations={},
                              next_job_id=3, allowed_gpu_indices=[0]))
    journal_jobs = [mkjob(1, state=JobState.RUNNING), mkjob(3)]
    (tmp_path / JOURNAL_NAME).write_text(json.dumps({
        "ts": 1, "kind": "snapshot", "scheduler": {
            "version": 4, "jobs": journal_jobs, "next_job_id": 4,
            "allowed_gpu_indices": None, "reservations": [], "next_reservation_id": 1}}) + "\n")
    store, back = load(tmp_path)
    assert list(back.jobs) == [1, 2, 3]
    assert back.jobs[1]["state"] == "Running"  # the journal wins per id
    assert back.jobs[2] == mkjob(2)            # the state's own jobs stay
    assert back.allowed_gpu_indices is None and back.next_job_id == 4
    assert back.needs_snapshot and "merged 2 jobs" in back.replay_note
    store.snapshot(back)
    assert os.path.getsize(tmp_path / JOURNAL_NAME) == 0
    _, again = load(tmp_path)
    same_content(again, back)


def test_journal_older_than_state_json_is_ignored(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text(json.dumps(
        {"ts": 1, "kind": "snapshot", "scheduler": {"jobs": [mkjob(1)]}}) + "\n")
    os.utime(tmp_path / JOURNAL_NAME, (1_000_000_000, 1_000_000_000))
    (tmp_path / "state.json").write_text(json.dumps({"version": 4, "jobs": []}))
    _, back = load(tmp_path)
    assert back.jobs == {}


def test_unparseable_journal_is_kept_aside(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text("not json\n")
    _, back = load(tmp_path)
    assert back.jobs == {} and "ignored" in back.replay_note
    assert list(tmp_path.glob(JOURNAL_NAME + ".corrupt.*"))


def test_unwritable_journal_means_read_only(tmp_path):
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"\xc1" * 9)
    (tmp_path / JOURNAL_NAME).mkdir()
    store, back = load(tmp_path)
    assert back.mode == "read_only" and JOURNAL_NAME in back.journal_error
    store.append({"op": "job", "job": mkjob(1)})
    with pytest.raises(StoreError):
        store.commit()
    with pytest.raises(StoreError):
        store.snapshot(back)


def test_directory_journal_is_harmless_in_normal_mode(tmp_path):
    (tmp_path / JOURNAL_NAME).mkdir()
    store, back = load(tmp_path)
    assert back.mode == "normal"
    store.snapshot(sample_state())


# --- faults -------------------------------------------------------------------------------

def enospc(op, path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_enospc_on_commit_keeps_records_buffered(tmp_path):
    store, _ = load(tmp_path)
    store.append({"op": "job", "job": mkjob(1)})
    store.commit()
    store.append({"op": "job", "job": mkjob(2)})
    store.fault = enospc
    with pytest.raises(StoreError, match="No space left"):
        store.commit()
    # Simulate the half-written frame a real ENOSPC can leave behind.
    with open(tmp_path / WAL_NAME, "ab") as f:
        f.write(b"\x40\x00\x00\x00junk")
    store.fault = None
    store.append({"op": "job", "job": mkjob(3)})
    store.commit()
    assert os.path.getsize(tmp_path / WAL_NAME) == store.wal_bytes
    store.close()
    _, back = load(tmp_path)
    assert list(back.jobs) == [1, 2, 3] and back.replay_note is None


def test_enospc_on_snapshot_leaves_files_alone(tmp_path):
    store, _ = load(tmp_path)
    first = sample_state()
    store.snapshot(first)
    before = (tmp_path / SNAPSHOT_NAME).read_bytes()
    store.append({"op": "job", "job": mkjob(3)})
    store.commit()
    wal = store.wal_bytes
    store.fault = lambda op, path: enospc(op, path) if op == "snapshot" else None
    changed = sample_state()
    changed.jobs[3] = mkjob(3)
    with pytest.raises(StoreError):
        store.snapshot(changed)
    assert (tmp_path / SNAPSHOT_NAME).read_bytes() == before
    assert not (tmp_path / (SNAPSHOT_NAME + ".tmp")).exists()
    assert store.wal_bytes == wal  # not truncated: its records are still needed
    store.fault = None
    store.close()
    _, back = load(tmp_path)
    assert list(back.jobs) == [1, 2, 3]


# --- property: whatever was committed comes back -----------------------------------------

times = st.none() | st.floats(1.6e9, 1.9e9, allow_nan=False)
job_changes = st.fixed_dictionaries({
    "state": st.sampled_from(list(JobState)),
    "priority": st.integers(0, 255),
    "command": st.text(max_size=20),
    "exit_code": st.none() | st.integers(-255, 255),
    "started_at": times,
    "time_limit": st.none() | st.floats(0, 1e6, allow_nan=False),
    "gpu_ids": st.none() | st.lists(st.integers(0, 7), max_size=3),
    "env": st.none() | st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5),
                                       max_size=3),
})
operations = st.lists(st.one_of(
    st.tuples(st.just("new"), job_changes),
    st.tuples(st.just("update"), st.integers(0, 1000), job_changes),
    st.tuples(st.just("gpus"), st.none() | st.lists(st.integers(0, 7), max_size=4)),
    st.tuples(st.just("commit")),
    st.tuples(st.just("snapshot")),
), max_size=25)


@pytest.mark.parametrize("with_snapshots", [False, True])
@settings(max_examples=40, deadline=None)
@given(ops=operations)
def test_committed_state_comes_back(with_snapshots, ops):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        store, _ = load(d)
        model = StoreState(jobs={}, reservations={})
        for op in ops:
            if op[0] == "new":
                jid = model.next_job_id
                model.jobs[jid] = mkjob(jid, **op[1])
                model.next_job_id = jid + 1
                store.append({"op": "job", "job": model.jobs[jid]})
                store.append({"op": "meta", "next_job_id": model.next_job_id})
            elif op[0] == "update" and model.jobs:
                jid = sorted(model.jobs)[op[1] % len(model.jobs)]
                model.jobs[jid] = mkjob(jid, **op[2])
                store.append({"op": "job", "job": model.jobs[jid]})
            elif op[0] == "gpus":
                model.allowed_gpu_indices = op[1]
                store.append({"op": "meta", "allowed_gpu_indices": op[1]})
            elif op[0] == "commit":
                store.commit()
            elif op[0] == "snapshot" and with_snapshots:
                store.snapshot(StoreState(
                    jobs=dict(model.jobs), reservations={}, next_job_id=model.next_job_id,
                    allowed_gpu_indices=model.allowed_gpu_indices))
        store.commit()
        store.close()
        _, back = load(d)
        same_content(back, model)
        assert back.mode == "normal" and back.replay_note is None
