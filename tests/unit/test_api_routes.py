"""Every HTTP route through Flask's test client, backed by a real scheduler core and store."""

from __future__ import annotations

import json
import os

import pytest

from gflow.api.app import create_app
from gflow.config import load_config
from gflow.gpu import GpuInventory
from gflow.identity import caller_for_uid
from gflow.ipc import RequestClient
from gflow.paths import Paths
from gflow.scheduler.core import SchedulerCore
from gflow.store import Store


class FakeClock:
    def __init__(self, t: float = 1_795_500_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class CoreBridge:
    """Stands in for the channel to the scheduler worker: handle, commit, pass, commit."""
    Unavailable = RequestClient.Unavailable

    def __init__(self, core: SchedulerCore):
        self.core = core

    def request(self, op, payload=None, timeout=30, caller=None):
        reply = self.core.handle(op, payload, caller)
        self.core.store.commit()
        if self.core.pass_wanted:
            self.core.run_pass()
            self.core.store.commit()
        self.core.launcher_outbox.clear()
        self.core.events.clear()
        return reply


def make_core(tmp_path, clock, gpus="4", config_text=None):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cfg_path = None
    if config_text:
        cfg_path = home / "gflow.toml"
        cfg_path.write_text(config_text)
    # The lab-account mode: these tests name made-up owners ("alice", "bob").
    config = load_config(cfg_path, env={"HOME": str(home), "GFLOW_RUN_AS": "daemon"})
    paths = Paths.from_env({"HOME": str(home)})
    core = SchedulerCore(store=Store(paths.data_dir, fsync=False),
                         gpu_inventory=GpuInventory(gpus), config=config, paths=paths,
                         clock=clock, total_memory_mb=65536)
    core.load()
    return core


# Requests come from this test's own account, as from a `gflowd` owner's own client
# (the daemon's account is an admin); tests of other callers set their own.
OWN = caller_for_uid(os.getuid(), "unix").to_wire()


def client_for(app, caller=OWN):
    client = app.test_client()
    if caller is not None:
        client.environ_base["gflow.caller"] = caller
    return client


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def core(tmp_path, clock):
    return make_core(tmp_path, clock)


@pytest.fixture
def client(core):
    app = create_app(CoreBridge(core))
    return client_for(app)


def submit(client, **fields):
    body = {"command": "echo hi", "submitted_by": "alice", **fields}
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 201, resp.data
    return resp.get_json()["id"]


# --- system ----------------------------------------------------------------------------

def test_root_and_health(client):
    assert client.get("/").data == b"Hello, World!"
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "ok" and isinstance(body["pid"], int)
    assert resp.headers["x-request-id"]


def test_unknown_route_and_wrong_method(client):
    assert client.get("/nope").status_code == 404
    resp = client.delete("/jobs")
    assert resp.status_code == 405 and resp.data == b""


def test_info(client):
    body = client.get("/info").get_json()
    assert [g["index"] for g in body["gpus"]] == [0, 1, 2, 3]
    # 0.4.13's keys, then ours (GPU insight: state, memory, utilisation, processes, jobs).
    ours = {"state", "memory_total_mb", "memory_used_mb", "utilization_percent", "processes",
            "jobs"}
    assert all(set(g) == {"uuid", "index", "available"} | ours for g in body["gpus"])
    assert all(g["available"] is True and g["state"] == "free" for g in body["gpus"])
    assert body["allowed_gpu_indices"] is None
    assert body["gpu_allocation_strategy"] == "sequential"


# --- jobs ------------------------------------------------------------------------------

def test_submit_defaults_and_job_shape(client):
    resp = client.post("/jobs", json={"command": "echo hi"})
    assert resp.status_code == 201
    assert resp.get_json() == {"id": 1, "run_name": "gflow-job-1"}
    job = client.get("/jobs/1").get_json()
    keys = list(job)
    assert keys[:3] == ["id", "script", "command"] and keys[29] == "reason"
    assert keys[30:32] == ["exit_code", "reason_detail"]
    assert not {"scheduled_at", "attempts", "pending_reason"} & set(keys)   # only when set
    # The owner is the verified caller (0.4.13 wrote "unknown" for a body without one).
    assert job["submitted_by"] == OWN["user"] and job["priority"] == 10
    assert job["state"] == "Running" and job["gpu_ids"] == []      # started by the pass
    assert set(job["submitted_at"]) == {"secs_since_epoch", "nanos_since_epoch"}


@pytest.mark.parametrize("body,status,needle", [
    (b"{not json", 400, "JSON"),
    (json.dumps({"gpus": "two", "command": "x"}).encode(), 400, "gpus"),
    (json.dumps({"priority": 300, "command": "x"}).encode(), 400, "priority"),
    (json.dumps({"command": "x", "depends_on_ids": [99]}).encode(), 400,
     "Dependency job 99 does not exist"),
    (json.dumps({"command": "x", "gpu_sharing_mode": "Shared"}).encode(), 400,
     "Shared jobs must include a GPU memory limit"),
    (json.dumps([1, 2]).encode(), 400, "expected a JSON object"),
    (json.dumps({"script": None, "command": None}).encode(), 400, "script"),
])
def test_submit_rejects_bad_bodies(client, body, status, needle):
    resp = client.post("/jobs", data=body, content_type="application/json")
    assert resp.status_code == status
    assert needle in resp.get_json()["error"]
    assert client.get("/jobs").get_json() == []            # nothing half-created


def test_body_size_limit(tmp_path, clock):
    core = make_core(tmp_path, clock)
    app = create_app(CoreBridge(core), max_body_bytes=2048)
    resp = client_for(app).post("/jobs", data=b"{" + b" " * 4096 + b"}",
                                  content_type="application/json")
    assert resp.status_code == 413


def test_batch(client):
    resp = client.post("/jobs/batch", json=[{"command": "a"}, {"command": "b", "gpus": 1}])
    assert resp.status_code == 201
    assert resp.get_json() == [{"id": 1, "run_name": "gflow-job-1"},
                               {"id": 2, "run_name": "gflow-job-2"}]
    assert client.post("/jobs/batch", json=[]).status_code == 400
    assert client.post("/jobs/batch", json=[{"command": "x"}] * 1001).status_code == 413
    bad = client.post("/jobs/batch", json=[{"command": "ok"}, {"command": "x", "gpus": -1}])
    assert bad.status_code == 400
    assert len(client.get("/jobs").get_json()) == 2        # all or nothing
    assert client.post("/jobs/batch", json={"command": "x"}).status_code == 400


def test_list_filters(client, clock):
    submit(client, submitted_by="alice", gpus=9)            # never fits: stays queued
    clock.t += 100
    submit(client, submitted_by="bob", gpus=9)
    submit(client, submitted_by="bob")
    ids = lambda q: [j["id"] for j in client.get("/jobs" + q).get_json()]
    assert ids("") == [1, 2, 3]
    assert ids("?state=Queued") == [1, 2] and ids("?state=PD,R") == [1, 2, 3]
    assert ids("?state=bogus") == [1, 2, 3]                # all-invalid: filter ignored
    assert ids("?user=bob") == [2, 3] and ids("?user=") == []
    assert ids("?limit=1&offset=1") == [2] and ids("?limit=0") == []
    assert ids(f"?created_after={int(clock.t)}") == [2, 3]
    assert client.get("/jobs?limit=x").status_code == 400


def test_get_job_404_has_empty_body_and_bad_ids_are_400(client):
    resp = client.get("/jobs/7")
    assert resp.status_code == 404 and resp.data == b""
    for raw in ("abc", "-1", "99999999999"):
        resp = client.get(f"/jobs/{raw}")
        assert resp.status_code == 400 and b"Cannot parse" in resp.data


def test_resolve_dependency(client):
    for _ in range(3):
        submit(client)
    q = "/jobs/resolve-dependency?username=alice&shorthand="
    assert client.get(q + "%40").get_json() == {"job_id": 3}
    assert client.get(q + "%40~2").get_json() == {"job_id": 2}
    assert client.get(q + "%40~1").get_json() == {"job_id": 3}
    for bad in ("%40~0", "%40~9", "5", "x"):
        resp = client.get(q + bad)
        assert resp.status_code == 400 and "Cannot resolve" in resp.get_json()["error"]
    assert client.get("/jobs/resolve-dependency?username=alice").status_code == 400


def test_transitions_and_409(client):
    a = submit(client, gpus=9)                              # stays queued
    assert client.post(f"/jobs/{a}/hold").status_code == 200
    assert client.get(f"/jobs/{a}").get_json()["state"] == "Hold"
    resp = client.post(f"/jobs/{a}/hold")
    assert resp.status_code == 409 and "cannot hold" in resp.get_json()["error"]
    assert client.post(f"/jobs/{a}/release").status_code == 200
    assert client.post(f"/jobs/{a}/cancel").status_code == 200
    job = client.get(f"/jobs/{a}").get_json()
    assert job["state"] == "Cancelled" and job["reason"] == "CancelledByUser"
    assert client.post(f"/jobs/{a}/cancel").status_code == 409
    assert client.post(f"/jobs/{a}/finish").status_code == 409
    resp = client.post("/jobs/42/cancel")
    assert resp.status_code == 404 and resp.data == b"null"
    assert client.post(f"/jobs/{a}/explode").status_code == 404


def test_finish_and_fail_from_the_0413_wrapper(client):
    a = submit(client)
    b = submit(client, depends_on_ids=[a], dependency_mode="All",
               auto_cancel_on_dependency_failure=True)
    assert client.post(f"/jobs/{a}/fail").status_code == 200
    assert client.get(f"/jobs/{a}").get_json()["state"] == "Failed"
    child = client.get(f"/jobs/{b}").get_json()
    assert child["state"] == "Cancelled" and child["reason"] == {"DependencyFailed": a}


def test_patch_update(client):
    a = submit(client, gpus=9, conda_env="x", time_limit={"secs": 60, "nanos": 0})
    resp = client.patch(f"/jobs/{a}", json={"priority": 99, "conda_env": None,
                                            "time_limit": None, "parameters": {"b": "2"}})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["updated_fields"] == ["conda_env", "priority", "parameters", "time_limit"]
    assert body["job"]["conda_env"] is None and body["job"]["time_limit"] is None
    assert list(body["job"]) == sorted(body["job"])
    assert client.patch(f"/jobs/{a}", json={}).get_json()["updated_fields"] == []
    assert client.patch("/jobs/77", json={"priority": 1}).status_code == 404
    assert client.patch(f"/jobs/{a}", json={"priority": "high"}).status_code == 400
    assert client.patch(f"/jobs/{a}", json={"depends_on_ids": [a]}).status_code == 400
    assert "Circular" in client.patch(f"/jobs/{a}",
                                      json={"depends_on_ids": [a]}).get_json()["error"]
    assert client.patch(f"/jobs/{a}", json={"gpus": None}).status_code == 400
    done = submit(client)
    assert client.patch(f"/jobs/{done}", json={"priority": 1}).status_code == 409


def test_redo_copies_the_full_spec(client):
    a = submit(client, project="p1", run_name="mine", depends_on_ids=[], priority=7)
    assert client.post(f"/jobs/{a}/redo", json={}).status_code == 409     # still running
    client.post(f"/jobs/{a}/cancel")
    resp = client.post(f"/jobs/{a}/redo", json={"overrides": {"priority": 50},
                                                 "submitted_by": "bob"})
    assert resp.status_code == 201
    new = client.get(f"/jobs/{resp.get_json()['id']}").get_json()
    assert (new["project"], new["run_name"], new["priority"], new["redone_from"],
            new["submitted_by"]) == ("p1", "mine", 50, a, "bob")
    assert client.post("/jobs/99/redo", json={}).status_code == 404


def test_log_path(client, core):
    a = submit(client)
    assert client.get(f"/jobs/{a}/log").status_code == 404      # no file yet
    core.paths.logs_dir.mkdir(parents=True, exist_ok=True)
    core.paths.job_log(a).write_text("x")
    assert client.get(f"/jobs/{a}/log").get_json() == str(core.paths.job_log(a))
    assert client.get("/jobs/55/log").status_code == 404


def test_set_gpus(client):
    assert client.post("/gpus", json={"allowed_indices": [0, 2]}).get_json() == \
        {"allowed_gpu_indices": [0, 2]}
    assert client.get("/info").get_json()["allowed_gpu_indices"] == [0, 2]
    resp = client.post("/gpus", json={"allowed_indices": [7]})
    assert resp.status_code == 400 and "only 4 GPUs detected" in resp.get_json()["error"]
    assert client.post("/gpus", json={}).get_json() == {"allowed_gpu_indices": None}
    assert client.post("/gpus", json={"allowed_indices": "all"}).status_code == 400


def test_group_limit(client):
    gid = "afd540d3-5174-42e4-b8e9-254872aee375"
    client.post("/jobs/batch", json=[{"command": "x", "group_id": gid, "max_concurrent": 1,
                                      "gpus": 9}] * 3)
    resp = client.post(f"/groups/{gid}/max-concurrency", json={"max_concurrent": 5})
    assert resp.get_json() == {"group_id": gid, "max_concurrent": 5, "updated_jobs": 3}
    assert client.post("/groups/not-a-uuid/max-concurrency",
                       json={"max_concurrent": 1}).status_code == 400
    other = "00000000-0000-0000-0000-000000000000"
    assert client.post(f"/groups/{other}/max-concurrency",
                       json={"max_concurrent": 1}).status_code == 404
    assert client.post(f"/groups/{gid}/max-concurrency", json={}).status_code == 400


# --- reservations --------------------------------------------------------------------------

def test_reservation_lifecycle(client, clock):
    start = int(clock.t) + 1800
    body = {"user": "alice", "gpu_count": 2, "duration_secs": 3600,
            "start_time": {"secs_since_epoch": start, "nanos_since_epoch": 0}}
    resp = client.post("/reservations", json=body)
    assert resp.status_code == 200 and resp.get_json() == {"reservation_id": 1}
    listed = client.get("/reservations").get_json()
    assert listed[0]["status"] == "Pending" and listed[0]["gpu_spec"] == {"count": 2}
    assert client.get("/reservations/1").get_json()["user"] == "alice"
    resp = client.get("/reservations/9")
    assert resp.status_code == 404 and resp.data == b"Reservation 9 not found"
    clock.t = start + 1
    assert client.get("/reservations/1").get_json()["status"] == "Active"
    assert [r["id"] for r in client.get("/reservations?active_only=true").get_json()] == [1]
    assert client.delete("/reservations/1").status_code == 200
    assert client.delete("/reservations/1").status_code == 409
    assert client.get("/reservations?status=cancelled").get_json()[0]["id"] == 1
    assert client.get("/reservations?status=bogus").status_code == 400
    assert client.get("/reservations?active_only=1").status_code == 400


@pytest.mark.parametrize("change,needle", [
    ({"gpu_count": None}, "Must specify either gpu_count or gpu_indices"),
    ({"gpu_indices": [0]}, "Cannot specify both"),
    ({"gpu_count": 0}, "greater than 0"),
    ({"gpu_count": 9}, "only 4 GPUs available"),
    ({"gpu_count": None, "gpu_indices": [7]}, "out of range"),
    ({"gpu_count": None, "gpu_indices": []}, "cannot be empty"),
    ({"duration_secs": 90}, "whole number of minutes"),
    ({"start_time": {"secs_since_epoch": 1000, "nanos_since_epoch": 0}}, "in the past"),
])
def test_reservation_errors_are_plain_text(client, clock, change, needle):
    body = {"user": "alice", "gpu_count": 1, "duration_secs": 3600,
            "start_time": {"secs_since_epoch": int(clock.t) + 600, "nanos_since_epoch": 0}}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    resp = client.post("/reservations", json=body)
    assert resp.status_code == 400
    assert resp.content_type.startswith("text/plain")
    assert needle in resp.data.decode()


def test_reservation_conflicts_per_time_slice(client, clock):
    t0 = int(clock.t) + 600

    def make(gpus, start, dur=3600, **kw):
        return client.post("/reservations", json={
            "user": kw.get("user", "a"), "gpu_count": gpus, "duration_secs": dur,
            "start_time": {"secs_since_epoch": start, "nanos_since_epoch": 0}})

    assert make(3, t0).status_code == 200
    assert make(3, t0 + 3600).status_code == 200          # back to back: no overlap
    assert make(1, t0 + 1800).status_code == 200          # 3+1 <= 4 in both slices
    resp = make(1, t0 + 1800)
    assert resp.status_code == 400 and "Reservation conflicts" in resp.data.decode()


# --- stats, metrics, debug ---------------------------------------------------------------

def test_stats(client, clock):
    a = submit(client, gpus=1)
    clock.t += 10
    client.post(f"/jobs/{a}/finish")
    submit(client, gpus=9)
    body = client.get("/stats").get_json()
    assert body["total_jobs"] == 2 and body["completed_jobs"] == 1
    assert body["queued_jobs"] == 1 and body["success_rate"] == 100.0
    assert body["top_jobs"][0]["runtime_secs"] == pytest.approx(10.0)
    assert body["total_gpu_hours"] == pytest.approx(10 / 3600)
    assert client.get("/stats?user=nobody").get_json()["total_jobs"] == 0
    assert client.get("/stats?since=-5").status_code == 200
    assert client.get("/stats?since=x").status_code == 400


def test_metrics_and_debug(client):
    a = submit(client)
    text = client.get("/metrics").data.decode()
    assert "gflow_jobs_running 1.0" in text and "gflow_gpus_total 4.0" in text
    state = client.get("/debug/state").get_json()
    assert state["next_job_id"] == a + 1 and state["jobs"][0]["id"] == a
    dj = client.get(f"/debug/jobs/{a}").get_json()
    assert "runtime_seconds" in dj and dj["time_remaining_seconds"] is None
    assert client.get("/debug/jobs/99").status_code == 404
    assert client.get("/debug/metrics").get_json()["jobs_by_state"] == {"Running": 1}


def test_project_policy(tmp_path, clock):
    core = make_core(tmp_path, clock, config_text='[projects]\nknown_projects = ["ml"]\n'
                                                  'require_project = true\n')
    client = client_for(create_app(CoreBridge(core)))
    resp = client.post("/jobs", json={"command": "x"})
    assert resp.status_code == 400 and "Project is required" in resp.get_json()["error"]
    resp = client.post("/jobs", json={"command": "x", "project": "cv"})
    assert "Unknown project 'cv'. Known projects: ml" == resp.get_json()["error"]
    resp = client.post("/jobs", json={"command": "x", "project": "x" * 65})
    assert "too long" in resp.get_json()["error"]
    resp = client.post("/jobs", json={"command": "x", "project": "  ml "})
    assert resp.status_code == 201
    assert client.get("/jobs/1").get_json()["project"] == "ml"


# --- the OpenAPI document ------------------------------------------------------------------

def test_openapi_validates_and_lists_every_route(client):
    from openapi_spec_validator import validate
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    app = client.application
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<raw_id>", "{id}").replace("<group_id>", "{group_id}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    # The generic /jobs/{id}/<action> rule is documented as its five concrete actions.
    served.discard(("/jobs/{id}/<action>", "post"))
    for action in ("finish", "fail", "cancel", "hold", "release"):
        served.add((f"/jobs/{{id}}/{action}", "post"))
    assert served == documented


def test_an_anonymous_caller_reads_but_never_changes(core):
    anonymous = client_for(create_app(CoreBridge(core)), caller=None)
    owner = client_for(create_app(CoreBridge(core)))
    job_id = submit(owner)
    assert anonymous.get("/jobs").status_code == 200
    assert anonymous.get(f"/jobs/{job_id}").status_code == 200
    for method, path, body in (("post", "/jobs", {"command": "x"}),
                               ("post", f"/jobs/{job_id}/cancel", None),
                               ("post", "/gpus", {"allowed_indices": [0]})):
        resp = getattr(anonymous, method)(path, json=body)
        assert resp.status_code == 403, (path, resp.data)
        assert "anonymous callers may not change anything" in resp.get_json()["error"]
    assert owner.get(f"/jobs/{job_id}").get_json()["state"] == "Running"


def test_another_account_is_refused_with_one_sentence(core):
    other = {"uid": 4242, "user": "mallory", "groups": ["mallory"], "via": "tcp"}
    owner = client_for(create_app(CoreBridge(core)))
    mallory = client_for(create_app(CoreBridge(core)), caller=other)
    job_id = submit(owner)
    owner_name = owner.get(f"/jobs/{job_id}").get_json()["submitted_by"]
    for action in ("cancel", "hold", "finish", "fail"):
        resp = mallory.post(f"/jobs/{job_id}/{action}")
        assert resp.status_code == 403
        assert resp.get_json()["error"] == (
            f"job {job_id} belongs to {owner_name}; only {owner_name} or a gflow admin may "
            f"{action} it")
    resp = mallory.get(f"/jobs/{job_id}?env=1")
    assert resp.status_code == 403
    resp = mallory.post("/jobs", json={"command": "x", "submitted_by": owner_name})
    assert resp.status_code == 403 and "only a gflow admin may submit jobs as" in resp.data.decode()
    assert owner.get(f"/jobs/{job_id}").get_json()["state"] == "Running"


def test_private_logs_are_for_owner_and_admins(tmp_path, clock):
    core = make_core(tmp_path, clock, config_text="[security]\nprivate_logs = true\n")
    other = {"uid": 4242, "user": "mallory", "groups": ["mallory"], "via": "unix"}
    owner = client_for(create_app(CoreBridge(core)))
    mallory = client_for(create_app(CoreBridge(core)), caller=other)
    job_id = submit(owner)
    core.paths.job_log(job_id).parent.mkdir(parents=True, exist_ok=True)
    core.paths.job_log(job_id).write_text("secret output\n")
    assert owner.get(f"/jobs/{job_id}/log").status_code == 200
    resp = mallory.get(f"/jobs/{job_id}/log")
    assert resp.status_code == 403
    assert "may read the log of it" in resp.get_json()["error"]
    anonymous = client_for(create_app(CoreBridge(core)), caller=None)
    assert anonymous.get(f"/jobs/{job_id}/log").status_code == 403
    # Without private_logs (the default), everyone reads logs, as in 0.4.13.
    (tmp_path / "public").mkdir()
    public = make_core(tmp_path / "public", clock)
    pub_owner = client_for(create_app(CoreBridge(public)))
    pub_id = submit(pub_owner)
    public.paths.job_log(pub_id).parent.mkdir(parents=True, exist_ok=True)
    public.paths.job_log(pub_id).write_text("shared output\n")
    pub_other = client_for(create_app(CoreBridge(public)), caller=other)
    assert pub_other.get(f"/jobs/{pub_id}/log").status_code == 200


def test_a_buffer_file_gives_waitress_the_body_in_order_however_it_sends():
    """waitress reads a chunk, sends part of it, then skips what was sent: the body it
    sends from a BufferFile over a bytearray is the bytearray, for any partial sends."""
    import random
    from waitress.buffers import ReadOnlyFileBasedBuffer
    from gflow.api.replies import BufferFile
    data = bytearray(random.Random(7).randbytes(100_003))
    buf = ReadOnlyFileBasedBuffer(BufferFile(data))
    assert buf.prepare(len(data)) == len(data)
    sent, rng = bytearray(), random.Random(3)
    while len(buf):
        chunk = buf.get(rng.randrange(1, 9000))
        n = rng.randrange(0, len(chunk) + 1)           # a partial send, or none
        sent += chunk[:n]
        buf.skip(n, True)
    assert sent == data
    assert bytes(BufferFile(data).read()) == data
    f = BufferFile(data)
    f.seek(-3, 2)
    assert f.tell() == len(data) - 3 and bytes(f.read(10)) == data[-3:]


def test_closing_a_buffer_file_drops_the_body_and_gives_free_heap_back(monkeypatch):
    import gc
    import weakref
    from gflow.api import replies

    class Body(bytearray):
        pass
    body = Body(b"x" * 1000)
    gone, trims = weakref.ref(body), []
    monkeypatch.setattr(replies, "release_free_heap",
                        lambda: trims.append(gone() is None))
    f = replies.BufferFile(body)
    del body
    gc.collect()
    assert gone() is not None                 # the file keeps the body while it is sent
    f.close()
    assert trims == [True]                    # freed first, then the heap trimmed


def test_a_large_listing_is_served_from_a_file_wrapper_with_its_length(client, monkeypatch):
    """Large JSON bodies reach waitress as a file (no copy into its buffer): the body, its
    Content-Length and HEAD's headers are what a bytes body would give."""
    from gflow.api import replies
    monkeypatch.setattr(replies, "FILE_BODY_MIN", 1000)
    wrapped = []
    real_wrap = replies.wrap_file
    monkeypatch.setattr(replies, "wrap_file",
                        lambda environ, f: wrapped.append(f) or real_wrap(environ, f))
    ids = [submit(client) for _ in range(5)]
    resp = client.get("/jobs")
    assert resp.status_code == 200 and resp.content_type == "application/json"
    assert len(wrapped) == 1
    assert int(resp.headers["content-length"]) == len(resp.data) > 1000
    assert [j["id"] for j in resp.get_json()] == ids
    head = client.head("/jobs")
    assert head.status_code == 200 and head.data == b""
    assert int(head.headers["content-length"]) == len(resp.data)
    small = client.get("/jobs?limit=1")           # under the threshold: plain bytes
    assert len(wrapped) == 2                         # the HEAD above; not this one
    assert [j["id"] for j in small.get_json()] == ids[:1]
