"""Issue 21: the three ways a load may take our own state.msgpack give the same jobs.

state.msgpack.jobs (gflow/store/fastload.py, used when the state.msgpack it names is the
one we wrote last), the stream decode of state.msgpack (snapshot.parse_own_snapshot, when
the sum matches) and the checked decode (no sum) must give equal jobs, field for field
and type for type; a copy that does not match in every way is ignored. Also: loaded jobs
share texts but never a list or dict, and the first pass after a load is prepared in
slices (requests are answered in between)."""

import dataclasses
import shutil

import msgpack
import pytest

from gflow.models import (
    EMPTY_DICT, EMPTY_LIST, Job, JobState, job_from_trusted_wire, job_to_wire,
)
from gflow.store import SNAPSHOT_NAME, Store, StoreState
from gflow.store import fastload
from gflow.store.snapshot import SUM_NAME
from test_api_routes import FakeClock, make_core
from test_store_fast_load import varied_jobs

FAST = fastload.FAST_NAME


def more_jobs() -> dict:
    """varied_jobs() plus what the store's decoders treat specially: attempts, notify,
    a reason map, GPU usage, an executor id, suspension, a pending reason, odd texts."""
    jobs = varied_jobs()
    extra = [
        Job(id=5, command="python train.py --lr 0.1", submitted_at=1795500005.5,
            state=JobState.RUNNING, started_at=1795500006.25, gpus=1, gpu_ids=[3],
            attempts=[{"attempt": 1, "exit_code": 1, "gpu_ids": [3], "detail": "x"}],
            max_retries=3, notify={"email": ["a@b.c"], "on": ["job_failed"]},
            gpu_usage={"peak_memory_mb": 10, "mean_util_percent": 50.5, "samples": 3},
            executor_id="120_4", suspended_at=1795500007.0, conda_env="env",
            gpu_sharing_mode="Shared", gpu_memory_limit_mb=1000, task_id=4,
            redone_from=1, auto_close_tmux=True, dependency_mode="Any"),
        Job(id=6, command="ünïcode ✓", state=JobState.CANCELLED, submitted_by="bob",
            reason={"DependencyFailed": 5}, reason_detail="dependency failed",
            finished_at=1795500010.0, pending_reason="Quota", run_dir="/data/ü"),
        Job(id=7, command="true", state=JobState.TIMEOUT, reason="CancelledByUser",
            exit_code="SIGKILL"),
    ]
    jobs.update({j.id: job_to_wire(j, with_env=True) for j in extra})
    return jobs


def write_state(d, jobs=None, **kw) -> Store:
    store = Store(d, fsync=False)
    store.load()
    store.snapshot(StoreState(jobs=more_jobs() if jobs is None else jobs, next_job_id=9,
                              **kw))
    store.close()
    return store


def loaded_jobs(d) -> dict:
    store = Store(d, fsync=False)
    st = store.load(decode_job=job_from_trusted_wire)
    store.close()
    return st


def same(a: Job, b: Job) -> bool:
    for f in dataclasses.fields(Job):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x != y or type(x) is not type(y):
            return False
    return True


def three_ways(tmp_path):
    """(from state.msgpack.jobs, from the stream decode, from the checked decode)."""
    write_state(tmp_path)
    assert (tmp_path / FAST).exists()
    fast = loaded_jobs(tmp_path)
    (tmp_path / FAST).rename(tmp_path / "aside")
    stream = loaded_jobs(tmp_path)
    (tmp_path / SUM_NAME).rename(tmp_path / "sum-aside")
    checked = loaded_jobs(tmp_path)
    (tmp_path / "aside").rename(tmp_path / FAST)
    (tmp_path / "sum-aside").rename(tmp_path / SUM_NAME)
    return fast, stream, checked


def test_the_three_loads_give_the_same_jobs(tmp_path):
    fast, stream, checked = three_ways(tmp_path)
    assert list(fast.jobs) == list(stream.jobs) == list(checked.jobs) == [1, 2, 3, 4, 5, 6, 7, 8]
    for jid in fast.jobs:
        assert same(fast.jobs[jid], stream.jobs[jid]), jid
        assert same(fast.jobs[jid], checked.jobs[jid]), jid
    for attr in ("next_job_id", "next_reservation_id", "allowed_gpu_indices", "extras",
                 "reservations", "mode"):
        assert getattr(fast, attr) == getattr(stream, attr) == getattr(checked, attr)


def test_everything_but_the_jobs_comes_through_the_copy(tmp_path):
    from gflow.models import Reservation, reservation_to_wire
    res = Reservation(id=3, user="alice", gpu_spec={"count": 1}, start_time=1795600000.0,
                      duration=3600.0, created_at=1795500000.0)
    write_state(tmp_path, reservations={3: reservation_to_wire(res)},
                allowed_gpu_indices=[0, 2], extras={"quotas": {"users": {"a": {"x": 1}}}})
    fast = loaded_jobs(tmp_path)
    (tmp_path / FAST).unlink()
    stream = loaded_jobs(tmp_path)
    assert fast.reservations == stream.reservations and list(fast.reservations) == [3]
    assert fast.allowed_gpu_indices == stream.allowed_gpu_indices == [0, 2]
    assert fast.extras == stream.extras and fast.gpus_persisted and stream.gpus_persisted


def damage(path, how):
    raw = bytearray(path.read_bytes())
    if how == "flip":
        raw[-10] ^= 0x40                      # a byte of the last chunk: the CRC fails
    elif how == "truncate":
        raw = raw[:len(raw) // 2]
    elif how == "magic":
        raw[0:5] = b"xxxxx"
    path.write_bytes(bytes(raw))


def watch_rows(monkeypatch) -> list:
    """The rows the next loads take from state.msgpack.jobs (none: it was ignored)."""
    used, real = [], fastload.job_from_row
    monkeypatch.setattr(fastload, "job_from_row", lambda row: used.append(row) or real(row))
    return used


def test_a_good_copy_is_used(tmp_path, monkeypatch):
    write_state(tmp_path)
    used = watch_rows(monkeypatch)
    assert list(loaded_jobs(tmp_path).jobs) == [1, 2, 3, 4, 5, 6, 7, 8] and len(used) == 8


@pytest.mark.parametrize("how", ["flip", "truncate", "magic"])
def test_a_damaged_copy_is_ignored(tmp_path, how, monkeypatch):
    write_state(tmp_path)
    damage(tmp_path / FAST, how)
    used = watch_rows(monkeypatch)
    st = loaded_jobs(tmp_path)
    assert used == [] and list(st.jobs) == [1, 2, 3, 4, 5, 6, 7, 8] and st.mode == "normal"
    assert isinstance(st.jobs[5], Job) and st.jobs[5].attempts[0]["gpu_ids"] == [3]


def test_a_copy_of_another_state_msgpack_is_ignored(tmp_path, monkeypatch):
    write_state(tmp_path)
    copy = (tmp_path / FAST).read_bytes()
    write_state(tmp_path, jobs={1: more_jobs()[1]})     # a newer snapshot, its own copy
    (tmp_path / FAST).write_bytes(copy)                  # ... replaced by the old copy
    used = watch_rows(monkeypatch)
    st = loaded_jobs(tmp_path)
    assert used == []
    assert list(st.jobs) == [1] + list(range(2, 9)) and st.jobs[2].state == JobState.CANCELLED
    assert st.jobs[2].reason_detail.startswith("placeholder")   # from state.msgpack


def test_a_state_msgpack_we_did_not_write_last_ignores_the_copy(tmp_path, monkeypatch):
    write_state(tmp_path)
    top = msgpack.unpackb((tmp_path / SNAPSHOT_NAME).read_bytes(), raw=False)
    top["job_specs"][0]["command"] = "changed by someone else"
    (tmp_path / SNAPSHOT_NAME).write_bytes(msgpack.packb(top, use_bin_type=True))
    used = watch_rows(monkeypatch)
    st = loaded_jobs(tmp_path)
    assert used == [] and st.jobs[1].command == "changed by someone else"


def test_other_fields_or_marshal_format_ignore_the_copy(tmp_path, monkeypatch):
    write_state(tmp_path)
    monkeypatch.setattr(fastload, "FIELD_NAMES", fastload.FIELD_NAMES[:-1] + ("renamed",))
    used = watch_rows(monkeypatch)
    st = loaded_jobs(tmp_path)
    assert used == [] and list(st.jobs) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_failed_sum_write_leaves_no_copy(tmp_path, monkeypatch):
    write_state(tmp_path)
    assert (tmp_path / FAST).exists()
    monkeypatch.setattr(Store, "_write_sum", lambda self, data: None)
    write_state(tmp_path, jobs={1: more_jobs()[1]})
    assert not (tmp_path / FAST).exists()


def test_a_job_the_stream_load_would_refuse_leaves_no_copy(tmp_path):
    bad = dict(more_jobs()[4], state="Bogus")
    write_state(tmp_path, jobs={4: bad})
    assert (tmp_path / SNAPSHOT_NAME).exists() and not (tmp_path / FAST).exists()


def test_no_list_or_dict_that_can_change_is_shared_between_loaded_jobs(tmp_path):
    # Partial records: the snapshot fills the missing keys from one default each.
    write_state(tmp_path, jobs={i: {"id": i, "command": "x", "state": "Queued"}
                                for i in (1, 2, 3)})
    for st in (loaded_jobs(tmp_path), Store(tmp_path, fsync=False).load()):
        jobs = list(st.jobs.values())
        get = (lambda j, k: getattr(j, k)) if isinstance(jobs[0], Job) else dict.get
        for key in ("attempts", "parameters", "depends_on_ids", "dependency_conditions"):
            objs = [get(j, key) for j in jobs]
            if isinstance(jobs[0], Job):
                # Empty: the one frozen empty value all jobs share (models.EMPTY_LIST).
                assert len(jobs) == 8 and all(o is EMPTY_LIST or o is EMPTY_DICT
                                              for o in objs), key
            else:
                assert len({id(o) for o in objs}) == len(jobs) == 8, key
        if isinstance(jobs[0], Job):
            with pytest.raises(TypeError):
                jobs[0].attempts.append({"attempt": 1})
            jobs[0].attempts = [*jobs[0].attempts, {"attempt": 1}]     # as retries.py does
            assert all(j.attempts == [] for j in jobs[1:])


def test_repeated_texts_are_kept_once(tmp_path):
    write_state(tmp_path, jobs={i: job_to_wire(Job(id=i, command="python x.py", run_dir="/w",
                                                   submitted_by="alice",
                                                   reason_detail="waits"), with_env=True)
                                for i in (1, 2, 3)})
    for st in (loaded_jobs(tmp_path),):
        a, b = st.jobs[1], st.jobs[3]
        for key in ("command", "run_dir", "submitted_by", "gpu_sharing_mode", "reason_detail"):
            assert getattr(a, key) is getattr(b, key), key
    (tmp_path / FAST).unlink()
    a, b = loaded_jobs(tmp_path).jobs[1], loaded_jobs(tmp_path).jobs[3]
    assert a.command is b.command and a.run_dir is b.run_dir


def test_the_scheduler_loads_the_copy_and_its_jobs_work(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="4")
    for _ in range(3):
        assert core.handle("submit", {"command": "x", "submitted_by": "alice",
                                      "gpus": 1})[0] == 201
    core.run_pass()
    core.store.commit()
    core.store.snapshot(core.snapshot_state())
    core.store.close()
    assert (core.store.data_dir / FAST).exists()
    again = make_core(tmp_path, clock, gpus="4")
    assert [j.state for j in again.jobs.values()] == [JobState.RUNNING] * 3
    assert again.running == {1, 2, 3} and again.by_user == {"alice": [1, 2, 3]}
    assert again.next_job_id == 4
    shutil.rmtree(again.store.data_dir / "logs", ignore_errors=True)


# --- the first pass after a load, in slices --------------------------------------------

def test_a_big_first_pass_is_prepared_in_slices(tmp_path, monkeypatch):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="4")
    ids = [core.handle("submit", {"command": "x", "submitted_by": "alice", "gpus": 1})[1]["id"]
           for _ in range(7)]
    core.store.commit()
    core.store.close()
    monkeypatch.setattr(type(core), "PREPARE_SLICE", 2)
    fresh = make_core(tmp_path, clock, gpus="4")
    assert fresh.pass_wanted and fresh.next_deadline() is None
    slices = 0
    while True:
        decision = fresh.run_pass()
        if decision.starts:
            break
        slices += 1
        assert fresh.pass_wanted and fresh.next_deadline() == clock()   # the loop spins
        assert not fresh.running and fresh.last_pass_secs is None
    assert slices == 4                       # 7 candidates, 2 a slice, then the pass
    assert sorted(fresh.running) == ids[:4] and fresh.next_deadline() is None
    assert fresh.last_pass_secs is not None


def test_a_small_pass_is_not_sliced(tmp_path):
    clock = FakeClock()
    core = make_core(tmp_path, clock, gpus="4")
    jid = core.handle("submit", {"command": "x", "submitted_by": "alice", "gpus": 1})[1]["id"]
    assert core.run_pass().starts == [(jid, [0])]


def test_rows_are_what_the_scheduler_decoder_makes():
    """wire_row (the writer's shortcut) == job_row of models.job_from_trusted_wire."""
    from pathlib import Path

    from gflow.store.snapshot import pair_job, snapshot_map
    top = snapshot_map(StoreState(jobs=more_jobs(), next_job_id=9), Path("/nowhere"))
    for spec, rt in zip(top["job_specs"], top["job_runtimes"]):
        full = pair_job(spec, rt, True)
        row = fastload.wire_row(full)
        assert row == fastload.job_row(job_from_trusted_wire(full))
        # Rows (what marshal keeps) hold plain empty lists and dicts where the job holds
        # the shared frozen ones (models.EMPTY_LIST, EMPTY_DICT): job_from_row shares them.
        plain = {id(EMPTY_LIST): list, id(EMPTY_DICT): dict}
        assert [type(x) for x in row] == [plain.get(id(x), type(x)) for x in
                                          fastload.job_row(job_from_trusted_wire(full))]
        assert same(fastload.job_from_row(row), job_from_trusted_wire(full))


def test_a_worker_start_freezes_the_loaded_state_before_collections_resume(tmp_path):
    """Only under a worker's start (collections paused, nothing frozen yet): run in a
    fresh interpreter, as gc.freeze() lasts for the whole process."""
    import subprocess
    import sys
    from pathlib import Path
    code = ("import gc, sys, pathlib; sys.path.insert(0, {here!r})\n"
            "from test_api_routes import FakeClock, make_core\n"
            "{pause}\n"
            "make_core(pathlib.Path({tmp!r}), FakeClock())\n"
            "print(gc.get_freeze_count() > 0)\n")
    here = str(Path(__file__).resolve().parent)
    for pause, frozen in (("gc.disable()", "True"), ("", "False")):
        home = tmp_path / frozen
        home.mkdir()
        out = subprocess.run([sys.executable, "-c", code.format(here=here, pause=pause,
                                                                 tmp=str(home))],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == frozen


def test_the_background_writer_writes_the_copy_too(tmp_path, monkeypatch):
    import time
    store = Store(tmp_path, fsync=False)
    store.load()
    store.append({"op": "job", "job": more_jobs()[1]})
    store.commit()
    assert store.snapshot_in_background(lambda: StoreState(jobs=more_jobs(), next_job_id=9))
    deadline = time.monotonic() + 30
    while (why := store.poll_background()) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert why == ""
    store.close()
    used = watch_rows(monkeypatch)
    fast = loaded_jobs(tmp_path)
    assert len(used) == 8
    (tmp_path / FAST).unlink()
    stream = loaded_jobs(tmp_path)
    assert all(same(fast.jobs[i], stream.jobs[i]) for i in stream.jobs) and len(stream.jobs) == 8
