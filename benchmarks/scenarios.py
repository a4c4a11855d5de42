"""The eight scenarios. Each runs on one side (ours or theirs) and returns its metrics as
{metric: {"samples": [...], "value": float, "note": str, ...}}; `value` is what the table
shows (a median unless the metric says otherwise)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import loadgen
from .daemons import (BenchError, Daemon, alive, job_body, process_name, to_epoch,
                      wait_gone)
from .report import MetricSpec, Target, median, percentile

SUBMITTED = re.compile(r"Submitted batch job (\d+)")


@dataclass
class Context:
    ours_bin: Path
    theirs_bin: Path
    workdir: Path
    quick: bool = False
    runs: int | None = None             # overrides the per-scenario run counts
    keep: bool = False
    storm_seconds: float | None = None
    scale_sizes: list[int] | None = None
    python_loadgen: bool = False
    log: callable = print
    info: dict = field(default_factory=dict)

    def n_runs(self, default: int, quick: int = 1) -> int:
        if self.runs is not None:
            return self.runs
        return quick if self.quick else default


def metric(samples, note: str = "", value=None, **extra) -> dict:
    samples = [s for s in samples if s is not None]
    return {"samples": samples, "value": median(samples) if value is None else value,
            "note": note, **extra}


def timed(fn, *args, **kw) -> float:
    t0 = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t0


def run_cli_timed(d: Daemon, *argv) -> tuple[float, int]:
    """Wall time of one cold client run and its peak RSS (kB) via wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([d.tool(argv[0]), *map(str, argv[1:])], env=d.env, cwd=d.home,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace").strip()[-300:]
        raise BenchError(f"{d.side}: {' '.join(map(str, argv))} -> rc {proc.returncode}: {err}")
    proc.stderr.close()
    return elapsed, usage.ru_maxrss


def finished_all(d: Daemon, jobs: list[dict]) -> None:
    if any(j["state"] != "Finished" for j in jobs):
        raise BenchError(f"{d.side}: not every job finished: "
                         f"{d.describe_jobs([j['id'] for j in jobs])}")


def repeated(ctx: Context, runs: int, one_run) -> tuple[list, list[str]]:
    """Run one_run() `runs` times; a failed run is recorded, not fatal, while another
    run succeeds (0.4.13 sometimes strands a chain: the failure is itself a result)."""
    samples, failures = [], []
    for i in range(runs):
        try:
            samples.append(one_run())
        except BenchError as exc:
            failures.append(str(exc))
            ctx.log(f"run {i + 1}/{runs} failed: {exc}")
    if not samples:
        raise BenchError(f"all {runs} runs failed; first: {failures[0]}")
    return samples, failures


def failure_note(failures: list[str], runs: int) -> str:
    if not failures:
        return ""
    return f"{len(failures)} of {runs} runs failed, e.g. {failures[0]}"


# -- chain20 ----------------------------------------------------------------------------
def chain20(ctx: Context, make) -> dict:
    side = make.side
    links = 20
    if ctx.quick and side == "theirs":
        links = 5               # ~1.1 s a link: scaled to 20 links below
    runs = ctx.n_runs(3)

    def one_run():
        with make(ctx) as d:
            t0 = time.time()
            ids = [int(SUBMITTED.search(d.cli("gbatch", "true").stdout).group(1))]
            for _ in range(links - 1):
                out = d.cli("gbatch", "--depends-on", "@", "true").stdout
                ids.append(int(SUBMITTED.search(out).group(1)))
            submit = time.time() - t0
            jobs = d.wait_jobs_final(ids, timeout=30 + 3 * links)
            finished_all(d, jobs)
            makespan = max(to_epoch(j["finished_at"]) for j in jobs) - t0
            return makespan * 20 / links, submit * 20 / links

    results, failures = repeated(ctx, runs, one_run)
    notes = [f"--quick: theirs ran a {links}-job chain, scaled x{20 // links}"
             if links != 20 else "", failure_note(failures, runs)]
    note = "; ".join(n for n in notes if n)
    return {"makespan": metric([r[0] for r in results], note, failures=failures),
            "submit 20 (CLI)": metric([r[1] for r in results], note)}


# -- burst100 ---------------------------------------------------------------------------
def burst100(ctx: Context, make) -> dict:
    side = make.side
    size = 100
    if side == "theirs" and ctx.quick:
        size = 10               # ~1 s a job: scaled to 100 jobs below
    runs = ctx.n_runs(3 if side == "ours" else 1)

    def one_run():
        with make(ctx) as d:
            t0 = time.time()
            d.cli("gbatch", "--array", f"1-{size}", "true")
            jobs = d.wait_jobs_final(range(1, size + 1), timeout=60 + 3 * size, interval=0.1)
            finished_all(d, jobs)
            return (max(to_epoch(j["finished_at"]) for j in jobs) - t0) * 100 / size

    samples, failures = repeated(ctx, runs, one_run)
    notes = [failure_note(failures, runs)]
    if size != 100:
        notes.append(f"--quick: theirs ran --array 1-{size}, scaled x{100 // size}")
    elif side == "theirs" and runs == 1 and ctx.runs is None:
        notes.append("theirs: one run (~100 s each)")
    return {"makespan": metric(samples, "; ".join(n for n in notes if n), failures=failures)}


# -- storm ------------------------------------------------------------------------------
STORM_CONNECTIONS = {"acks/s": 4, "acks/s 32 clients": 32}     # metric -> connections


def storm(ctx: Context, make) -> dict:
    seconds = ctx.storm_seconds or (1.0 if ctx.quick else 3.0)
    body = json.dumps(job_body("true", gpus=64)).encode()   # never starts: no processes
    out = {}
    for name, connections in STORM_CONNECTIONS.items():
        samples, clients, checks = [], set(), []
        for _ in range(ctx.n_runs(3)):
            with make(ctx) as d:
                res = loadgen.run("127.0.0.1", d.port, "/jobs", body, connections=connections,
                                  seconds=seconds, expect_status=201,
                                  force_python=ctx.python_loadgen)
                clients.add(res["client"])
                if res["bad"]:
                    raise BenchError(f"{d.side}: storm got {res['bad']} non-201 answers "
                                     f"(first: {res['first_bad_status']})")
                # Every acknowledged job exists: the next id follows them.
                next_id = d.submit(job_body("true", gpus=64))
                checks.append(next_id - 1 - res["ok"])
                samples.append(res["ok"] / res["seconds"])
        note = (f"{connections} keep-alive connections, {seconds:g} s a run, client: "
                f"{', '.join(sorted(clients))}; ours fsyncs every acknowledged job, 0.4.13 "
                "saves every 30 s")
        # Up to one request per connection is still in flight at the deadline: the server
        # stores it, the client does not count it. Fewer ids than acknowledgements = lost
        # jobs.
        if any(c < 0 or c > connections for c in checks):
            note += f"; ids minus acknowledged jobs: {checks} (expected 0..{connections})"
        out[name] = metric(samples, note, id_checks=checks)
    return out


# -- cli --------------------------------------------------------------------------------
def cli(ctx: Context, make) -> dict:
    runs = 5 if ctx.quick else 20
    with make(ctx) as d:
        status, payload = d.request("POST", "/jobs/batch",
                                    body=[job_body("true", gpus=64) for _ in range(20)])
        if status != 201:
            raise BenchError(f"{d.side}: POST /jobs/batch -> {status} {payload[:200]!r}")
        out = {}
        for name, argv in (("gqueue -a", ("gqueue", "-a")),
                           ("gbatch", ("gbatch", "--gpus", "64", "true"))):
            run_cli_timed(d, *argv)                              # warm the page cache
            times = [run_cli_timed(d, *argv)[0] for _ in range(runs)]
            out[name] = metric(times)
        out["gbatch"]["note"] = ("gbatch --gpus 64 true: the job is acknowledged but never "
                                 "starts, so 0.4.13's 1 s tmux start stall is not measured")
        out["gqueue -a"]["note"] = f"20 queued jobs in the state; {runs} cold runs each"
    return out


# -- scale ------------------------------------------------------------------------------
def curl_get(d: Daemon, path: str) -> tuple[float, int]:
    """(seconds, bytes) of one GET on a new connection, read to the end."""
    curl = shutil.which("curl")
    if curl:
        res = subprocess.run([curl, "-s", "-o", "/dev/null", "-w",
                              "%{http_code} %{time_total} %{size_download}",
                              f"http://127.0.0.1:{d.port}{path}"],
                             capture_output=True, text=True, timeout=300)
        code, seconds, size = res.stdout.split()
        if code != "200":
            raise BenchError(f"{d.side}: GET {path} -> {code}")
        return float(seconds), int(size)
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300)
    t0 = time.perf_counter()
    conn.request("GET", path)
    payload = conn.getresponse().read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed, len(payload)


SCALE_BATCH = 1000                      # jobs per POST /jobs/batch


def size_label(n: int) -> str:
    """10000 -> "10k", 1000000 -> "1m", 2500 -> "2500"."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def scale_batch() -> bytes:
    return json.dumps([job_body("true", gpus=64) for _ in range(SCALE_BATCH)]).encode()


def fill(d: Daemon, have: int, size: int, batch: bytes | None = None
         ) -> tuple[int, float, list]:
    """POST /jobs/batch (1000 queued jobs a call) from `have` jobs in d up to `size`.
    Returns (jobs now in d, seconds, [(jobs, seconds since the start)] every tenth)."""
    batch = batch or scale_batch()
    before = have
    step = max(SCALE_BATCH, (size - before) // 10)
    progress = []
    t0 = time.perf_counter()
    while have < size:
        status, payload = d.request("POST", "/jobs/batch", raw=batch)
        if status != 201:
            raise BenchError(f"{d.side}: POST /jobs/batch -> {status} {payload[:200]!r} "
                             f"(after {have} jobs)")
        have += SCALE_BATCH
        if (have - before) % step < SCALE_BATCH:
            progress.append((have, round(time.perf_counter() - t0, 3)))
    return have, time.perf_counter() - t0, progress


def scale_step(d: Daemon, have: int, size: int, reps: int, batch: bytes | None = None
               ) -> tuple[dict, int]:
    """Fill d from `have` up to `size` queued jobs (1000 a batch) and measure it at that
    size: submit rate, GET /jobs, gqueue -a -u all, daemon PSS, restart, state file.
    Returns ({metric: ...} without a size tag, the number of jobs now in d). Shared by
    the scale scenario and the --scale run (benchmarks/scaling.py)."""
    out = {}
    before = have
    have, elapsed, progress = fill(d, have, size, batch)
    d.close_http()
    out["submit"] = metric([], value=(have - before) / elapsed, seconds=elapsed,
                           jobs=have - before, progress=progress,
                           note="POST /jobs/batch, 1000 jobs a batch, one keep-alive client; "
                                "queued GPU jobs that never start")
    gets = [curl_get(d, "/jobs") for _ in range(reps + 1)][1:]
    out["GET /jobs"] = metric([g[0] for g in gets], body_bytes=gets[0][1])
    gq = [run_cli_timed(d, "gqueue", "-a", "-u", "all") for _ in range(reps)]
    out["gqueue -a -u all"] = metric([g[0] for g in gq],
                                     client_peak_rss_kb=max(g[1] for g in gq))
    pss, counted = d.pss_mb()
    out["daemon PSS"] = metric([pss], processes=counted,
                               note="sum of PSS of every process of the daemon, after the "
                                    "reads above")
    before = getattr(d, "up_gave_up", 0)       # ours: see daemons.Ours.up
    restarts = [timed(d.restart) for _ in range(reps)]
    gave_up = getattr(d, "up_gave_up", 0) - before
    remark = (f"`gflowd up` itself gave up (rc 1 after its 30 s wait) in {gave_up} of "
              f"{reps} restarts while the daemon went on loading; the time is until "
              "GET /health answered 200") if gave_up else ""
    out["restart"] = metric(restarts, note=RESTART_NOTE + (f"; {remark}" if remark else ""),
                            up_gave_up=gave_up, remark=remark)
    out["state file"] = metric([d.state_bytes() / 1e6],
                               files=[str(p.name) for p in d.state_files()], note=STATE_NOTE)
    return out, have


def scale(ctx: Context, make) -> dict:
    sizes = ctx.scale_sizes or ([10_000] if ctx.quick else [10_000, 100_000])
    reps = 1 if ctx.quick else 3
    batch = scale_batch()
    out = {}
    with make(ctx) as d:
        have = 0
        for size in sizes:
            got, have = scale_step(d, have, size, reps, batch)
            out.update({f"{size_label(size)} {name}": m for name, m in got.items()})
    return out


RESTART_NOTE = ("down + up until GET /health answers 200; ours: gflowd down, gflowd up; "
                "theirs: SIGTERM (its final save), wait, start gflowd again: its fastest "
                "restart (its own `gflowd restart` adds a 1 s tmux sleep and, killed by "
                "SIGHUP, loses up to 30 s of changes)")
STATE_NOTE = ("on-disk state after a restart; ours: state.msgpack + its load cache "
              "state.msgpack.jobs + state.wal")


# -- sched ------------------------------------------------------------------------------
STAMP = """#!/bin/bash
# $1: job number, $2: seconds to sleep before ending (optional)
printf '%s\\n' "$EPOCHREALTIME" > "{dir}/$1.start"
if [ -n "$2" ]; then sleep "$2"; fi
printf '%s\\n' "$EPOCHREALTIME" > "{dir}/$1.end"
"""


def sched(ctx: Context, make) -> dict:
    pairs = 5 if ctx.quick else 20
    with make(ctx) as d:
        stamps = d.home / "stamps"
        stamps.mkdir()
        script = stamps / "stamp.sh"
        script.write_text(STAMP.replace("{dir}", str(stamps)))
        ids = [d.submit(job_body(f"bash {script} 0 2", run_dir=str(d.home)))]
        for k in range(1, pairs + 1):
            ids.append(d.submit(job_body(f"bash {script} {k}", run_dir=str(d.home),
                                         depends_on=ids[-1], depends_on_ids=[ids[-1]],
                                         dependency_mode="All")))
        jobs = d.wait_jobs_final(ids, timeout=30 + 5 * pairs)
        finished_all(d, jobs)
        lat, late = [], 0
        parts = {"parent end -> parent finished_at": [],
                 "parent finished_at -> child started_at": [],
                 "child started_at -> child's first line": []}
        for k in range(1, pairs + 1):
            end = float((stamps / f"{k - 1}.end").read_text())
            start = float((stamps / f"{k}.start").read_text())
            if to_epoch(jobs[k]["submitted_at"]) > end:
                late += 1               # submitted after its parent ended: not a fair pair
                continue
            lat.append(start - end)
            finished, started = to_epoch(jobs[k - 1]["finished_at"]), to_epoch(jobs[k]["started_at"])
            for name, value in zip(parts, (finished - end, started - finished, start - started)):
                parts[name].append(value)
        breakdown = {name: median(v) for name, v in parts.items()}
    note = (f"{len(lat)} parent->child pairs in one chain; the job itself stamps its end "
            "and the child its start (bash $EPOCHREALTIME)")
    if late:
        note += f"; {late} pairs dropped (child submitted after the parent ended)"
    return {"exit->start p50": metric(lat, note, value=percentile(lat, 50),
                                      breakdown_medians=breakdown),
            "exit->start p99": metric(lat, note, value=percentile(lat, 99))}


# -- stall ------------------------------------------------------------------------------
STALL_PACE = 0.005              # one POST /jobs every 5 ms on one keep-alive connection
STALL_LEAD = 400                # single submissions the stream makes before ours' is due
STALL_TAIL = 1.0                # seconds streamed after the snapshot is on disk
STALL_TIMEOUT = 45.0            # 0.4.13 saves every 30 s
SEGMENT = re.compile(r"state\.wal\.\d+")


def snapshot_stamp(d: Daemon) -> tuple:
    """(state.msgpack's inode and mtime, or None while there is none; ours' WAL segments
    state.wal.<n>, which exist while a background snapshot is being written)."""
    try:
        st = (d.data_dir / "state.msgpack").stat()
        written = (st.st_ino, st.st_mtime_ns)
    except FileNotFoundError:
        written = None
    return written, [e.name for e in os.scandir(d.data_dir) if SEGMENT.fullmatch(e.name)]


def wal_bytes(d: Daemon) -> int:
    try:
        return (d.data_dir / "state.wal").stat().st_size
    except FileNotFoundError:
        return 0


def snapshot_due_at(d: Daemon, size: int, batch: bytes) -> tuple[int, dict]:
    """Make ours' next snapshot fall due when it holds about `size` jobs, and fill it to
    STALL_LEAD single submissions (plus less than a batch) short of that. Returns (jobs
    in d, {the threshold, WAL bytes a job}). Ours snapshots when the WAL outgrows
    max([scheduler] snapshot_wal_bytes, twice the last snapshot): the WAL bytes a job
    takes, measured on one batch, set that threshold; a restart reads it (its clean stop
    folds the batch into a small state.msgpack, so the threshold is what counts)."""
    have, _, _ = fill(d, 0, SCALE_BATCH, batch)
    per_job = wal_bytes(d) / have
    threshold = int(per_job * (size - have))
    config = d.home / ".config" / "gflow" / "gflow.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[scheduler]\nsnapshot_wal_bytes = {threshold}\n")
    d.restart()
    restarted = snapshot_stamp(d)
    room = threshold - wal_bytes(d) - STALL_LEAD * per_job
    have, _, _ = fill(d, have, have + int(room / per_job) // SCALE_BATCH * SCALE_BATCH, batch)
    d.close_http()
    if snapshot_stamp(d) != restarted:
        raise BenchError(f"ours: a snapshot fell due during the fill, before the stream "
                         f"(WAL {wal_bytes(d)} of {threshold} bytes)")
    return have, {"snapshot_wal_bytes": threshold, "wal_bytes_a_job": round(per_job)}


def paced_posts(d: Daemon, body: bytes, done) -> list[tuple[float, float]]:
    """(start, latency) of single POST /jobs sent every STALL_PACE s on one keep-alive
    connection until done(seconds since the first) is true; starts count from the first."""
    sent = []
    t0 = next_at = time.perf_counter()
    while not done(time.perf_counter() - t0):
        time.sleep(max(0.0, next_at - time.perf_counter()))
        start = time.perf_counter()
        status, payload = d.request("POST", "/jobs", raw=body)
        sent.append((start - t0, time.perf_counter() - start))
        if status != 201:
            raise BenchError(f"{d.side}: POST /jobs -> {status} {payload[:200]!r}")
        # After a slow answer the pace restarts from now: no burst to catch up, which
        # would queue requests behind each other and blur the stall being measured.
        next_at = max(next_at + STALL_PACE, time.perf_counter())
    return sent


def stall(ctx: Context, make) -> dict:
    size = 10_000 if ctx.quick else 100_000
    batch = scale_batch()
    body = json.dumps(job_body("true", gpus=64)).encode()   # never starts: no processes
    with make(ctx) as d:
        if make.side == "ours":
            have, rule = snapshot_due_at(d, size, batch)
        else:
            have, _, _ = fill(d, 0, size, batch)
            d.close_http()
            rule = {}
        before, _ = snapshot_stamp(d)
        seen = {}                       # "began"/"written": seconds into the stream

        def done(t: float) -> bool:
            written, segments = snapshot_stamp(d)
            if segments or written != before:
                seen.setdefault("began", t)
            if written != before and not segments:
                seen.setdefault("written", t)
            return t - seen.get("written", t) >= STALL_TAIL or t > STALL_TIMEOUT

        sent = paced_posts(d, body, done)
        if "written" not in seen:
            raise BenchError(f"{d.side}: no snapshot was written in {STALL_TIMEOUT:g} s "
                             f"of submissions (WAL {wal_bytes(d)} bytes)")
    # The disk is looked at between requests: the snapshot overlapped the request in
    # flight when a change was first seen (ours: the WAL rotated, the writer forked;
    # 0.4.13: its file rewritten) up to the one after the file was seen complete.
    first = next((i for i, (start, _) in enumerate(sent) if start >= seen["began"]),
                 len(sent))
    last = next((i for i, (start, _) in enumerate(sent) if start >= seen["written"]),
                len(sent))
    lat = [latency for _, latency in sent]
    during = lat[max(0, first - 1):last + 1]
    note = (f"single POST /jobs every {STALL_PACE * 1e3:g} ms on one keep-alive connection "
            f"at ~{size_label(size)} queued jobs, from before the snapshot until "
            f"{STALL_TAIL:g} s after it is on disk (\"in stream\": all of them; \"during "
            "snapshot\": from the one in flight when it was first seen on disk to the one "
            "after it was complete); ours: [scheduler] snapshot_wal_bytes in its config, "
            "set from the WAL bytes of one batch, makes its snapshot fall due then; theirs: "
            "its save every 30 s")
    extra = dict(requests=len(lat), requests_during=len(during), jobs=have,
                 window=round(sent[-1][0], 2), snapshot_began=round(seen["began"], 3),
                 snapshot_written=round(seen["written"], 3), **rule)
    return {"longest during snapshot": metric(during, note, value=max(during), **extra),
            "longest in stream": metric(lat, note, value=max(lat), **extra),
            "p99 in stream": metric(lat, note, value=percentile(lat, 99), **extra)}


# -- down -------------------------------------------------------------------------------
DOWN_SETTLE = 1.0               # after the start: the daemon is idle, its start-up done


def down(ctx: Context, make) -> dict:
    runs = ctx.n_runs(5, quick=3)

    def one_run():
        with make(ctx) as d:
            time.sleep(DOWN_SETTLE)
            pids = d.pids()
            t0 = time.perf_counter()
            d.stop()
            left = wait_gone(pids, 60)
            elapsed = time.perf_counter() - t0
            left += [p for p in d.pids() if alive(p) and p not in left]
            if left:
                raise BenchError(f"{d.side}: still running after the stop: "
                                 f"{', '.join(f'{p} {process_name(p)[:40]}' for p in left)}")
            return elapsed

    samples, failures = repeated(ctx, runs, one_run)
    notes = [f"idle daemon (no jobs, {DOWN_SETTLE:g} s after its start), a fresh one each "
             "run; from asking it to stop until every process of it is gone; ours: gflowd "
             "down (the CLI's start included); theirs: SIGTERM to its foreground gflowd "
             "(which saves its state)", failure_note(failures, runs)]
    return {"idle stop": metric(samples, "; ".join(n for n in notes if n), failures=failures)}


# -- registry ---------------------------------------------------------------------------
R = Target


def _scale_specs() -> list[MetricSpec]:
    specs = []
    for tag in ("10k", "100k"):
        specs += [
            MetricSpec("scale", f"{tag} submit", "/s", R(ratio_min=0.5)),
            MetricSpec("scale", f"{tag} GET /jobs", "s", R(ratio_max=2)),
            MetricSpec("scale", f"{tag} gqueue -a -u all", "s", R(ratio_max=2)),
            MetricSpec("scale", f"{tag} daemon PSS", "MB", R(ratio_max=2.5)),
            MetricSpec("scale", f"{tag} state file", "MB", R(ratio_max=2)),
            MetricSpec("scale", f"{tag} restart", "s",
                       R(ratio_max=2, abs_max=2.0) if tag == "100k" else R(ratio_max=2)),
        ]
    return specs


SCENARIOS = {
    "chain20": (chain20, [MetricSpec("chain20", "makespan", "s", R(ratio_max=0.05)),
                          MetricSpec("chain20", "submit 20 (CLI)", "s")]),
    "burst100": (burst100, [MetricSpec("burst100", "makespan", "s", R(ratio_max=0.10))]),
    "storm": (storm, [MetricSpec("storm", "acks/s", "/s",
                                 R(ratio_min=0.25, abs_min=2500, aim="0.5x")),
                      MetricSpec("storm", "acks/s 32 clients", "/s", R(abs_min=6000))]),
    "cli": (cli, [MetricSpec("cli", "gqueue -a", "s", R(ratio_max=4)),
                  MetricSpec("cli", "gbatch", "s", R(ratio_max=4))]),
    "scale": (scale, _scale_specs()),
    "sched": (sched, [MetricSpec("sched", "exit->start p50", "s"),
                      MetricSpec("sched", "exit->start p99", "s")]),
    "stall": (stall, [MetricSpec("stall", "longest during snapshot", "s", R(abs_max=0.050)),
                      MetricSpec("stall", "longest in stream", "s"),
                      MetricSpec("stall", "p99 in stream", "s")]),
    "down": (down, [MetricSpec("down", "idle stop", "s", R(abs_max=0.2))]),
}
