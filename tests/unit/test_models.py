"""Job states, the transitions table and the 0.4.13 wire encoding."""

from __future__ import annotations

import pytest

from gflow.models import (
    ALLOWED_TRANSITIONS, WIRE_KEYS, Job, JobState, can_transition, job_from_wire, job_to_wire,
    reason_display,
)

# spec/api.md §3.1, the Job object's 30 keys in their captured order (written out here, not
# taken from gflow.models, so that a change there cannot change what is expected).
SPEC_JOB_KEYS = [
    "id", "script", "command", "gpus", "conda_env", "run_dir", "priority", "depends_on",
    "depends_on_ids", "dependency_mode", "auto_cancel_on_dependency_failure", "task_id",
    "gpu_sharing_mode", "gpu_memory_limit_mb", "time_limit", "memory_limit_mb",
    "submitted_by", "redone_from", "auto_close_tmux", "parameters", "group_id",
    "max_concurrent", "run_name", "project", "state", "gpu_ids", "submitted_at",
    "started_at", "finished_at", "reason",
]


def test_transition_table_matches_0413():
    legal = {(s.value, d.value) for s, ds in ALLOWED_TRANSITIONS.items() for d in ds}
    assert legal == {("Queued", "Running"), ("Queued", "Hold"), ("Queued", "Cancelled"),
                     ("Hold", "Queued"), ("Hold", "Cancelled"), ("Running", "Finished"),
                     ("Running", "Failed"), ("Running", "Cancelled"), ("Running", "Timeout")}
    assert not can_transition(JobState.FINISHED, JobState.FAILED)
    assert not can_transition(JobState.RUNNING, JobState.QUEUED)


# spec/scheduler.md §2.3, written out: every other pair, each state to itself included,
# is refused.
LEGAL_0413 = {("Queued", "Running"), ("Queued", "Hold"), ("Queued", "Cancelled"),
              ("Hold", "Queued"), ("Hold", "Cancelled"),
              ("Running", "Finished"), ("Running", "Failed"), ("Running", "Cancelled"),
              ("Running", "Timeout")}
STATE_NAMES = ["Queued", "Hold", "Running", "Finished", "Failed", "Cancelled", "Timeout"]


@pytest.mark.parametrize("src", STATE_NAMES)
@pytest.mark.parametrize("dst", STATE_NAMES)
def test_can_transition_is_exactly_the_0413_table(src, dst):
    assert can_transition(JobState(src), JobState(dst)) is ((src, dst) in LEGAL_0413)


def test_no_state_may_transition_to_itself():
    assert [s.value for s in JobState if can_transition(s, s)] == []
    assert [s.value for s in JobState] == STATE_NAMES     # the enum is the spec's seven


@pytest.mark.parametrize("text,state", [("Queued", JobState.QUEUED), ("PD", JobState.QUEUED),
                                        ("pd", JobState.QUEUED), ("CA", JobState.CANCELLED),
                                        ("to", JobState.TIMEOUT)])
def test_state_parse(text, state):
    assert JobState.parse(text) is state


@pytest.mark.parametrize("text", ["queued", "running", "X", ""])
def test_state_parse_rejects(text):
    with pytest.raises(ValueError):
        JobState.parse(text)


def test_wire_round_trip_keeps_all_keys_in_order():
    job = Job(id=7, command="echo hi", gpus=2, time_limit=90.5, submitted_at=1795500107.855277,
              depends_on_ids=[3], reason={"DependencyFailed": 3}, parameters={"b": "2", "a": "1"},
              group_id="afd540d3-5174-42e4-b8e9-254872aee375", exit_code=1, env={"A": "B"})
    wire = job_to_wire(job)
    assert list(wire) == SPEC_JOB_KEYS + ["exit_code", "reason_detail", "gpu_usage"]
    # Issue 17's keys appear where set (all of them in the store's full record).
    assert list(job_to_wire(Job(max_retries=2, scheduled_at=5.0)))[-2:] == [
        "scheduled_at", "max_retries"]
    assert {"attempts", "dependency_conditions", "suspended_at", "pending_reason",
            "notify"} <= set(job_to_wire(job, with_env=True))
    assert WIRE_KEYS == tuple(SPEC_JOB_KEYS)
    assert wire["time_limit"] == {"secs": 90, "nanos": 500000000}
    assert wire["submitted_at"]["secs_since_epoch"] == 1795500107
    assert "env" not in wire and job_to_wire(job, with_env=True)["env"] == {"A": "B"}
    back = job_from_wire(job_to_wire(job, with_env=True))
    assert back.parameters == {"b": "2", "a": "1"} and list(back.parameters) == ["b", "a"]
    assert back.reason == {"DependencyFailed": 3} and back.time_limit == pytest.approx(90.5)
    assert back.env == {"A": "B"} and back.exit_code == 1


def test_missing_keys_take_0413_defaults():
    job = job_from_wire({})
    assert (job.priority, job.run_dir, job.submitted_by) == (10, ".", "unknown")
    assert job.auto_cancel_on_dependency_failure is False
    assert job.state is JobState.QUEUED


@pytest.mark.parametrize("body,field", [
    ({"gpus": None}, "gpus"), ({"gpus": -1}, "gpus"), ({"priority": 256}, "priority"),
    ({"state": "queued"}, "state"), ({"time_limit": {"secs": 60}}, "time_limit"),
    ({"group_id": "not-a-uuid"}, "group_id"), ({"parameters": {"a": 1}}, "parameters"),
    ({"depends_on_ids": ["x"]}, "depends_on_ids"), ({"reason": "Bogus"}, "reason"),
    ({"auto_close_tmux": "yes"}, "auto_close_tmux"),
])
def test_mistyped_fields_name_the_field(body, field):
    with pytest.raises(ValueError, match=field):
        job_from_wire(body)


def test_reason_display():
    assert reason_display({"DependencyFailed": 5}) == "DependencyFailed:5"
    assert reason_display("WaitingForResources") == "Resources"
    assert reason_display(None) is None


def test_trusted_decode_equals_checked_decode():
    from gflow.models import job_from_trusted_wire
    job = Job(id=3, command="x", time_limit=60.25, submitted_at=1795500107.5, started_at=None,
              state=JobState.TIMEOUT, reason={"DependencyFailed": 1}, gpu_ids=[0],
              parameters={"a": "1"}, exit_code=2, env={"K": "V"})
    wire = job_to_wire(job, with_env=True)
    assert job_from_trusted_wire(wire) == job_from_wire(wire)
