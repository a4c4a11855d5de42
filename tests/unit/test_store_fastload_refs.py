"""Issue 21: the load cache (state.msgpack.jobs) is marshal version 4, which writes an
object met twice once and refers back to it: texts come back shared and interned, a list
or dict shared in the written maps never comes back shared between two jobs."""

import sys

from gflow.models import Job, JobState, job_from_trusted_wire, job_to_wire, share_strings
from gflow.store import Store, StoreState
from gflow.store import fastload


def fresh(text: str) -> str:
    """An equal str that is not the interned one (as a decoder makes them)."""
    return "".join(list(text))


def loaded(d, monkeypatch) -> dict:
    used, real = [], fastload.job_from_row
    monkeypatch.setattr(fastload, "job_from_row", lambda row: used.append(1) or real(row))
    store = Store(d, fsync=False)
    st = store.load(decode_job=job_from_trusted_wire)
    store.close()
    assert len(used) == len(st.jobs)            # every job came from the cache
    return st.jobs


def write(d, jobs: dict) -> None:
    store = Store(d, fsync=False)
    store.load()
    store.snapshot(StoreState(jobs=jobs, next_job_id=max(jobs) + 1))
    store.close()


def test_the_texts_kept_once_are_those_share_strings_keeps():
    job = Job(id=1)
    names = [n for n in fastload.FIELD_NAMES if n not in ("id", "state")]
    kept_copy = {n: sys.intern(fresh(f"text of {n}")) for n in names}
    for n in names:
        setattr(job, n, fresh(kept_copy[n]))
    share_strings(job)
    kept = {n for n in names if getattr(job, n) is kept_copy[n]}
    assert kept == set(fastload._SHARED_TEXTS)


def test_texts_come_back_interned_across_chunks(tmp_path, monkeypatch):
    n = fastload._CHUNK + 5                     # two chunks: refs never cross one
    write(tmp_path, {i: job_to_wire(Job(id=i, command=fresh("python x.py"),
                                        run_dir=fresh("/w"), submitted_by=fresh("alice"),
                                        reason_detail=fresh("waits"), project=fresh("p"),
                                        conda_env=fresh("env")), with_env=True)
                     for i in range(1, n + 1)})
    jobs = loaded(tmp_path, monkeypatch)
    a, b = jobs[1], jobs[n]
    for key in fastload._SHARED_TEXTS:
        x = getattr(a, key)
        assert x is getattr(b, key) and sys.intern(x) is x, key


def test_a_list_or_dict_shared_when_written_is_never_shared_when_loaded(tmp_path, monkeypatch):
    gpu_ids, params, env = [0, 1], {"lr": "0.1"}, {"A": "1"}
    attempt = {"attempt": 1, "exit_code": 1, "gpu_ids": [0]}
    jobs = {}
    for i in (1, 2, 3):
        wire = job_to_wire(Job(id=i, command="x", state=JobState.FAILED), with_env=True)
        # One object in every map: the maps a snapshot is packed from may share them.
        wire.update(gpu_ids=gpu_ids, parameters=params, env=env, attempts=[attempt])
        jobs[i] = wire
    write(tmp_path, jobs)
    got = loaded(tmp_path, monkeypatch)
    for key in ("gpu_ids", "parameters", "env", "attempts"):
        objs = [getattr(j, key) for j in got.values()]
        assert objs[0] == objs[1] == objs[2] and len({id(o) for o in objs}) == 3, key
    firsts = [j.attempts[0] for j in got.values()]
    assert len({id(o) for o in firsts}) == 3
    got[1].gpu_ids.append(2)
    got[1].attempts[0]["exit_code"] = 9
    assert got[2].gpu_ids == [0, 1] and got[3].attempts[0]["exit_code"] == 1


def test_empty_and_filled_containers_come_back_as_the_stream_load_makes_them(tmp_path,
                                                                           monkeypatch):
    from gflow.models import EMPTY_DICT, EMPTY_LIST
    filled = Job(id=1, command="x", depends_on_ids=[7], parameters={"a": "1"},
                 attempts=[{"attempt": 1}], dependency_conditions={"7": "afterany"})
    write(tmp_path, {1: job_to_wire(filled, with_env=True),
                     2: job_to_wire(Job(id=2, command="x"), with_env=True)})
    got = loaded(tmp_path, monkeypatch)
    one, two = got[1], got[2]
    assert (one.depends_on_ids, one.parameters, one.attempts, one.dependency_conditions) == (
        [7], {"a": "1"}, [{"attempt": 1}], {"7": "afterany"})
    assert type(one.depends_on_ids) is list and type(one.parameters) is dict
    assert two.depends_on_ids is EMPTY_LIST and two.attempts is EMPTY_LIST
    assert two.parameters is EMPTY_DICT and two.dependency_conditions is EMPTY_DICT
