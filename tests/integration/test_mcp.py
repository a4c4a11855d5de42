"""gflow-mcp as an agent runs it: a stdio subprocess driven by the `mcp` client library against a real gflowd."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

import mcp  # noqa: E402,F401  (a test extra: pip install -e '.[test]'; missing must fail, not skip)

from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from gflow.mcp import TOOL_NAMES  # noqa: E402

VENV_BIN = Path(sys.executable).parent


def server_params(daemon) -> StdioServerParameters:
    exe = VENV_BIN / "gflow-mcp"
    command, args = (str(exe), []) if exe.exists() else (sys.executable, ["-m", "gflow.mcp"])
    # The agent's environment: the daemon's address and HOME, nothing else of the test's.
    return StdioServerParameters(command=command, args=args, env=dict(daemon.env),
                                 cwd=str(daemon.home))


def result(res):
    """(is_error, payload) of a CallToolResult, for mcp 1.x and 2.x field names."""
    is_error = getattr(res, "is_error", None)
    if is_error is None:
        is_error = getattr(res, "isError", False)
    text = "".join(getattr(c, "text", "") for c in res.content)
    if is_error:
        return True, text
    structured = getattr(res, "structured_content", None) or getattr(res, "structuredContent", None)
    if structured is not None:
        return False, structured.get("result", structured) if set(structured) == {"result"} \
            else structured
    return False, json.loads(text)


async def call(session, tool, **args):
    is_error, payload = result(await session.call_tool(tool, args))
    assert not is_error, f"{tool}({args}) failed: {payload}"
    return payload


async def until(fn, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def scenario(daemon):
    async with stdio_client(server_params(daemon)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            assert set(TOOL_NAMES) <= tools, tools

            # A dry run first: a free GPU, so it would start now on GPU 0.
            preview = await call(session, "preview_submit", command="echo hi", gpus=1)
            assert preview["would_start"] == "now" and preview["gpus"] == [0], preview
            assert preview["dry_run"] is True and "estimate" in preview["basis"]
            assert (await call(session, "list_jobs", state="all", user="all"))["total"] == 0

            # Submit a job that prints for a while, holding GPU 0 for at most 10 minutes.
            printer = ("for i in $(seq 1 400); do echo mcp-line-$i; sleep 0.1; done")
            sub = await call(session, "submit", command=printer, gpus=1, time_limit="10m",
                             name="agent-run")
            job = sub["id"]
            assert sub["run_name"] == "agent-run"
            await until(lambda: _state(session, job, "Running"), what="the job to run")

            # Its log, read as it grows: a tail first, then on from next_offset.
            async def has_lines():
                log = await call(session, "read_log", job_id=job)
                return log if "mcp-line-5" in log["text"] else None
            first = await until(has_lines, what="log output")
            assert first["available"] and first["next_offset"] <= first["size"]
            more = await until(lambda: _grew(session, job, first["next_offset"]),
                               what="more log output")
            assert more["offset"] == first["next_offset"] and more["text"].startswith("mcp-line-")

            # Both GPUs: not before the running job's 10-minute limit ends (an estimate).
            later = await call(session, "preview_submit", command="true", gpus=2)
            assert later["would_start"] == "later", later
            assert 500 < later["estimated_wait_secs"] <= 600 and later["gpus"] == [0, 1]
            # Once a job without a time limit is ahead, no time can be promised.
            big = (await call(session, "submit", command="true", gpus=2))["id"]
            why = await call(session, "explain", job_id=big)
            assert why["state"] == "Queued" and "waiting" in why["summary"].lower(), why
            later = await call(session, "preview_submit", command="true", gpus=2)
            assert later["would_start"] == "unknown" and later["blocked_by"] == [big], later
            assert any("no start time" in n for n in later["notes"]), later

            listed = await call(session, "list_jobs")
            assert {j["id"] for j in listed["jobs"]} >= {job, big}

            # Cancel both, the queued one first: cancelling the running job frees GPU 0,
            # and `big` (a `true`) would start and finish before its own cancel.
            # A second cancel is refused with a sentence, not a crash.
            queued = await call(session, "cancel", job_id=big)
            assert queued["state_before"] == "Queued" and queued["state"] == "Cancelled"
            done = await call(session, "cancel", job_id=job)
            assert done["state_before"] == "Running" and done["state"] == "Cancelled"
            is_error, text = result(await session.call_tool("cancel", {"job_id": job}))
            assert is_error and "is Cancelled" in text, text
            why = await call(session, "explain", job_id=job)
            assert why["reason"] == "CancelledByUser" and "Cancelled" in why["summary"]
            show = await call(session, "show_job", job_id=job)
            assert show["state"] == "Cancelled" and show["time_limit_secs"] == 600
            return job, big


async def _state(session, job, state):
    return (await call(session, "show_job", job_id=job))["state"] == state


async def _grew(session, job, offset):
    log = await call(session, "read_log", job_id=job, offset=offset, max_bytes=4096)
    return log if log["text"] else None


def test_gflow_mcp_lists_submits_reads_and_cancels(daemon):
    job, big = asyncio.run(asyncio.wait_for(scenario(daemon), timeout=120))
    assert daemon.job(job)["state"] == "Cancelled"
    assert daemon.job(big)["state"] == "Cancelled"
    # The job ran where the agent's server runs, as the user who runs it.
    assert daemon.job(job)["run_dir"] == str(daemon.home)


def test_gflow_mcp_refuses_what_the_daemon_refuses(daemon_factory, tmp_path):
    # Without a reachable daemon every tool answers with the client's sentence.
    down = daemon_factory(fake_gpus="1")            # never started
    # A daemon that cannot tell who its TCP callers are (no socket tables): an agent
    # reaching it over TCP is "someone else", who may read but not change a job.
    tables = tmp_path / "no-tables"
    tables.mkdir()
    up = daemon_factory(fake_gpus="1", extra_env={"GFLOW_PEER_TABLES": str(tables)})
    up.start()
    job = int(up.ok("gbatch", "sleep", "300").split("job", 1)[1].split()[0])
    stranger = server_params(up)
    # A socket path that does not exist: the client falls back to TCP.
    stranger.env = {**stranger.env, "GFLOW_DAEMON_SOCKET": str(tmp_path / "none.sock")}

    async def go():
        async with stdio_client(server_params(down)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                is_error, text = result(await session.call_tool("list_jobs", {}))
                assert is_error and "Could not connect to gflowd" in text, text
                is_error, text = result(await session.call_tool(
                    "submit", {"command": "true", "script": "x.sh"}))
                assert is_error and "exactly one of" in text, text
        async with stdio_client(stranger) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                seen = await call(session, "list_jobs", user="all")
                assert [j["id"] for j in seen["jobs"]] == [job]
                is_error, text = result(await session.call_tool("cancel", {"job_id": job}))
                assert is_error and "may not change anything" in text, text
    asyncio.run(asyncio.wait_for(go(), timeout=60))
    assert up.job(job)["state"] == "Running"


# --- the dry run's estimate, as a pure function ---------------------------------------------

def _t(secs: float) -> dict:
    return {"secs_since_epoch": int(secs), "nanos_since_epoch": 0}


def _running(job_id, gpu_ids, started, limit=None, user="alice"):
    return {"id": job_id, "state": "Running", "gpus": len(gpu_ids), "gpu_ids": gpu_ids,
            "started_at": _t(started), "submitted_by": user,
            "time_limit": None if limit is None else {"secs": limit, "nanos": 0}}


def test_estimate_walks_forward_through_time_limits():
    from gflow.mcp.preview import Request, estimate
    now = 1_800_000_000.0
    info = {"gpus": [{"index": i, "available": i == 3} for i in range(4)],
            "allowed_gpu_indices": None}
    jobs = [_running(1, [0], now - 100, limit=400), _running(2, [1, 2], now - 10, limit=1000),
            {"id": 3, "state": "Queued", "gpus": 2, "priority": 20, "depends_on_ids": []}]
    # Job 3 (priority 20) is ahead: it takes GPUs 0 and 3 when job 1 ends (t+300); we
    # then get 2 GPUs when job 2 ends (t+990).
    jobs[2]["time_limit"] = {"secs": 5000, "nanos": 0}
    out = estimate(info, jobs, Request(gpus=2, user="bob"), now)
    assert out["would_start"] == "later" and out["estimated_wait_secs"] == 990, out
    assert out["jobs_ahead"] == [3] and out["gpus"] == [1, 2]
    # One GPU is free now.
    assert estimate(info, jobs, Request(gpus=1), now)["would_start"] == "now"


def test_estimate_says_never_and_respects_reservations():
    from gflow.mcp.preview import Request, estimate
    now = 1_800_000_000.0
    info = {"gpus": [{"index": 0, "available": True}, {"index": 1, "available": True}],
            "allowed_gpu_indices": [0, 1],
            "reservations": [{"id": 7, "user": "carol", "gpu_count": 1, "gpu_indices": [1],
                              "start_time": now + 60, "end_time": now + 3600, "active": False}]}
    assert estimate(info, [], Request(gpus=3), now)["would_start"] == "never"
    # No time limit: it would still hold GPU 1 when carol's reservation starts.
    out = estimate(info, [], Request(gpus=2, user="bob"), now)
    assert out["would_start"] != "now" and any("reservation 7" in n for n in out["notes"])
    # Short enough to end before it starts: both GPUs now.
    out = estimate(info, [], Request(gpus=2, user="bob", time_limit=30), now)
    assert out["would_start"] == "now" and out["gpus"] == [0, 1]
    # carol herself may use it.
    assert estimate(info, [], Request(gpus=2, user="carol"), now)["would_start"] == "now"
    failed_dep = [{"id": 5, "state": "Failed"}]
    out = estimate(info, failed_dep, Request(gpus=1, depends_on=[5]), now)
    assert out["would_start"] == "never"
