"""Issue 21: a job's empty lists and dicts are one shared frozen value each; changing a
job means giving it a new container, which touches no other job."""

from __future__ import annotations

import copy
import json
import pickle

import msgpack
import pytest

from gflow.models import (
    EMPTY_DICT, EMPTY_LIST, Job, job_from_trusted_wire, job_from_wire, job_to_wire, own_dict,
    own_list,
)
from test_api_routes import FakeClock, make_core
from test_core import settle, submit

CONTAINERS = ("depends_on_ids", "parameters", "attempts", "dependency_conditions")


def empties(job: Job) -> bool:
    return all(getattr(job, k) is (EMPTY_DICT if isinstance(getattr(job, k), dict)
                                   else EMPTY_LIST) for k in CONTAINERS)


def test_new_decoded_and_copied_jobs_share_the_empties():
    wire = job_to_wire(Job(id=1, command="x"), with_env=True)
    for job in (Job(), job_from_wire(wire), job_from_trusted_wire(wire), Job().copy(),
                copy.deepcopy(Job()), pickle.loads(pickle.dumps(Job()))):
        assert empties(job)
    full = job_from_wire({**wire, "depends_on_ids": [3], "parameters": {"a": "b"}})
    assert full.depends_on_ids == [3] and type(full.depends_on_ids) is list
    assert full.copy().parameters == {"a": "b"} and full.copy().parameters is not full.parameters


def test_the_shared_empties_refuse_every_change_in_place():
    changes = [lambda v: v.append(1), lambda v: v.extend([1]), lambda v: v.insert(0, 1),
               lambda v: v.__iadd__([1]), lambda v: v.__setitem__(slice(0, 0), [1])]
    for change in changes:
        with pytest.raises(TypeError):
            change(EMPTY_LIST)
    for change in (lambda d: d.__setitem__("a", "b"), lambda d: d.update(a="b"),
                   lambda d: d.setdefault("a", "b"), lambda d: d.__ior__({"a": "b"})):
        with pytest.raises(TypeError):
            change(EMPTY_DICT)
    assert EMPTY_LIST == [] and EMPTY_DICT == {} and not EMPTY_LIST and not EMPTY_DICT


def test_their_encodings_are_those_of_plain_empties():
    job = Job(id=7, command="x")
    wire = job_to_wire(job, with_env=True)
    assert all(type(wire[k]) in (list, dict) for k in CONTAINERS)
    assert json.dumps(wire) == json.dumps(job_to_wire(Job(
        id=7, command="x", depends_on_ids=[], parameters={}, attempts=[],
        dependency_conditions={}), with_env=True))
    assert msgpack.unpackb(msgpack.packb([EMPTY_LIST, EMPTY_DICT])) == [[], {}]


def test_own_list_and_own_dict_share_only_what_is_empty():
    assert own_list([]) is EMPTY_LIST and own_list(iter(())) is EMPTY_LIST
    assert own_dict({}) is EMPTY_DICT and own_dict((k, v) for k, v in ()) is EMPTY_DICT
    items = [1]
    assert own_list(items) == [1] and own_list(items) is not items
    assert own_dict([("a", "b")]) == {"a": "b"}


def test_a_retry_gives_one_job_an_attempt_and_the_others_none(tmp_path):
    core = make_core(tmp_path, FakeClock())
    first, second = submit(core, max_retries=1), submit(core, max_retries=1)
    assert empties(core.jobs[first]) and empties(core.jobs[second])
    settle(core, False)
    core.on_exited(first, {"exit_code": 3})
    assert [a["exit_code"] for a in core.jobs[first].attempts] == [3]
    core.on_exited(second, {"exit_code": 4})
    assert [a["exit_code"] for a in core.jobs[second].attempts] == [4]
    assert [a["exit_code"] for a in core.jobs[first].attempts] == [3]
