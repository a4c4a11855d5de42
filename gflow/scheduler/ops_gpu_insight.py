"""GPU insight in the scheduler: who holds each GPU, idle holders, each job's sampled GPU use, and the processes admins ignore."""

# Every GPU poll (`refresh_gpus`) hands the inventory's reading to `observe_gpus`, which
# attributes each GPU process to a gflow job or to a foreign owner (gpu_attribution),
# advances the idle tracker (gpu_idle; the core's clock, so tests use a fake one), folds
# the samples into each running job's `gpu_usage`, and keeps the per-GPU records that
# `GET /gpus` and `GET /info` serve. Nothing here is journalled per poll: `gpu_usage` is
# saved with the job's next change (its end at the latest), and the ignore list lives in
# its own small file, written before an ignore request is answered.

from __future__ import annotations

import logging
from typing import Optional

from gflow.gpu import GpuProcess
from gflow.gpu_attribution import ProcessLookup, job_of, read_job_process
from gflow.gpu_idle import IdleTracker, IgnoreList
from gflow.scheduler import policy
from gflow.scheduler.reply import Reply, error

log = logging.getLogger("gflow.scheduler")

IGNORE_FILE = "gpu_ignored.json"
# GET /gpus and /info poll again when the last reading is older than this (ginfo right
# after a process ended should show it gone), but a burst of requests costs one poll.
FRESH_SECS = 2.0
OPS = ("gpus", "gpu_processes", "gpu_process_ignore", "gpu_process_unignore")
MUTATING = frozenset({"gpu_process_ignore", "gpu_process_unignore"})


class InsightState:
    """What the insight keeps between polls."""

    def __init__(self, config, data_dir):
        self.lookup = ProcessLookup()
        self.idle = IdleTracker(config.gpu.idle_util_percent, config.gpu.idle_after)
        self.ignored = IgnoreList.load(None if data_dir is None else data_dir / IGNORE_FILE)
        self.job_procs: dict = {}          # job id -> JobProcess (from its pid file)
        self.usage: dict = {}              # job id -> [peak MB, util sum, util samples, samples]
        self.records: list = []            # per-GPU records of the last poll
        self.at: Optional[float] = None    # when that poll was made (core clock)


def release_hint(rec: dict) -> str:
    """How an idle holder's GPU is given back, and whom to ask."""
    pid = rec["pid"]
    if rec.get("job_id") is not None:
        owner = rec.get("job_user") or "its owner"
        return f"gflow job {rec['job_id']} of {owner}: ask {owner}, or gcancel {rec['job_id']}"
    who = rec.get("user")
    ask = f"ask {who} to end it, or " if who else ""
    return f"{ask}a gflow admin can run: gctl gpu-process ignore {pid}"


class GpuInsightOps:
    """Mixed into `SchedulerCore` (needs jobs, running, draining, clock, config, paths,
    gpu_inventory, emit, changed and refresh_gpus)."""

    _insight: Optional[InsightState] = None

    @property
    def insight(self) -> InsightState:
        if self._insight is None:
            data_dir = getattr(self.paths, "data_dir", None)
            self._insight = InsightState(self.config, data_dir)
        return self._insight

    # --- one poll ----------------------------------------------------------------------

    def view_gpu(self, g, held: set) -> policy.Gpu:
        """The policy's view of one polled GPU: ignored processes do not make it
        foreign, but their memory still counts against what is free."""
        ignored = self.insight.ignored
        others = [p for p in _processes(g) if not ignored.has(p.pid)]
        foreign = bool(g.error) or (bool(others) and g.index not in held)
        free = (None if g.error or g.memory_used_mb is None
                else max(0, g.memory_total_mb - g.memory_used_mb))
        return policy.Gpu(index=g.index, memory_mb=g.memory_total_mb, foreign=foreign,
                          free_mb=free)

    def observe_gpus(self, polled: list) -> None:
        st = self.insight
        now = self.clock()
        live = self.running | self.draining
        self._track_job_processes(live)
        jobs = list(st.job_procs.values())
        holders: dict = {}
        for jid in sorted(live):
            for index in self.jobs[jid].gpu_ids or ():
                holders.setdefault(index, []).append(jid)
        samples, records, on_gpu = [], [], set()
        for g in polled:
            procs = []
            for p in _processes(g):
                on_gpu.add(p.pid)
                facts = st.lookup.facts(p.pid)
                job_id = job_of(facts, jobs) if facts is not None else None
                job = self.jobs.get(job_id) if job_id is not None else None
                started = facts.started_at if facts is not None else None
                util = p.util
                if util is None and g.utilization is not None and (
                        len(_processes(g)) == 1 or g.utilization < st.idle.util_percent):
                    util = g.utilization          # the whole GPU says it for this one
                ignored = job is None and st.ignored.has(p.pid)
                key = (g.index, p.pid, started)
                if not ignored:
                    samples.append((key, p.used_mb is None or p.used_mb > 0, util))
                procs.append((key, {
                    "pid": p.pid, "used_mb": p.used_mb, "util_percent": p.util,
                    "user": facts.user if facts else None,
                    "command": facts.command if facts else None,
                    "started_at": started,
                    "age_secs": None if started is None else max(0.0, now - started),
                    "job_id": job_id, "job_user": job.submitted_by if job else None,
                    "foreign": job is None, "ignored": ignored}))
            records.append((g, procs))
        newly = set(st.idle.observe(now, samples))
        st.records = [self._gpu_record(g, procs, holders, now, newly) for g, procs in records]
        st.at = now
        st.lookup.keep_only(on_gpu)
        gone = st.ignored.expire(st.lookup.alive, on_gpu)
        if gone:
            log.info("no longer ignoring ended GPU processes: %s",
                     ", ".join(str(e["pid"]) for e in gone))
            self._save_ignored()
        self._sample_jobs(st.records, holders)

    def _track_job_processes(self, live: set) -> None:
        st = self.insight
        for jid in [j for j in st.job_procs if j not in live]:
            del st.job_procs[jid]
        for jid in [j for j in st.usage if j not in self.running]:
            del st.usage[jid]
        for jid in live:
            known = st.job_procs.get(jid)
            if known is None or known.monitor_pid is None:
                found = read_job_process(jid, self.paths.job_pidfile(jid))
                if found is not None:
                    st.job_procs[jid] = found

    def _gpu_record(self, g, procs: list, holders: dict, now: float, newly: set) -> dict:
        st = self.insight
        out = []
        for key, rec in procs:
            idle = st.idle.idle_secs(key, now)
            rec["idle_secs"] = idle
            rec["idle"] = st.idle.flagged(key)
            rec["release"] = release_hint(rec) if rec["idle"] else None
            if key in newly:
                self._idle_event(g.index, rec)
            out.append(rec)
        return {
            "index": g.index, "uuid": g.uuid, **self._holding(g.index, g.error, out, holders),
            "memory_total_mb": g.memory_total_mb, "memory_used_mb": g.memory_used_mb,
            "memory_free_mb": (None if g.memory_used_mb is None
                               else max(0, g.memory_total_mb - g.memory_used_mb)),
            "utilization_percent": g.utilization, "error": g.error, "processes": out}

    def _holding(self, index: int, err, procs: list, holders: dict) -> dict:
        """`state` and `jobs` of one GPU: recomputed at every request, since jobs start
        and end between polls."""
        held_by = holders.get(index, [])
        if err:
            state = "error"
        elif held_by:
            state = ("shared" if all(self.jobs[j].is_shared for j in held_by) else "job")
        elif any(not r["ignored"] for r in procs):
            state = "foreign"
        else:
            state = "free"
        return {"state": state,
                "jobs": [{"id": j, "user": self.jobs[j].submitted_by} for j in held_by]}

    def _current_records(self) -> list:
        st = self.fresh_insight()
        holders: dict = {}
        for jid in sorted(self.running | self.draining):
            for index in self.jobs[jid].gpu_ids or ():
                holders.setdefault(index, []).append(jid)
        return [dict(r, **self._holding(r["index"], r["error"], r["processes"], holders))
                for r in st.records]

    def _idle_event(self, index: int, rec: dict) -> None:
        owner = (f"gflow job {rec['job_id']} of {rec['job_user']}" if rec["job_id"] is not None
                 else f"{rec['user'] or 'an unknown user'}'s `{rec['command'] or '?'}`")
        mb = rec["used_mb"]
        held = "memory" if mb is None else f"{mb / 1024:.1f} GiB"
        log.warning("GPU %d: pid %d (%s) has held %s idle for %.0f s", index, rec["pid"],
                    owner, held, rec["idle_secs"] or 0)
        self.emit("gpu_idle_held", gpu={
            "index": index, "pid": rec["pid"], "user": rec["job_user"] or rec["user"],
            "command": rec["command"], "job_id": rec["job_id"], "used_mb": mb,
            "idle_secs": rec["idle_secs"], "release": rec["release"]},
            text=f"GPU {index}: pid {rec['pid']} ({owner}) has held {held} idle for "
                 f"{(rec['idle_secs'] or 0) / 60:.0f} min; {rec['release']}")

    def _sample_jobs(self, records: list, holders: dict) -> None:
        """Each running job's peak memory on one GPU and mean utilisation so far."""
        st = self.insight
        for jid in sorted(self.running):
            job = self.jobs[jid]
            mem: dict = {}
            util: dict = {}
            for r in records:
                mine = [p for p in r["processes"] if p["job_id"] == jid]
                if mine:
                    mem[r["index"]] = sum(p["used_mb"] or 0 for p in mine)
                    known = [p["util_percent"] for p in mine if p["util_percent"] is not None]
                    if known:
                        util[r["index"]] = min(100, sum(known))
                if (r["index"] in (job.gpu_ids or ()) and r["index"] not in util
                        and r["utilization_percent"] is not None
                        and holders.get(r["index"]) == [jid]
                        and all(p["job_id"] == jid for p in r["processes"])):
                    # The job alone on this GPU: the whole GPU's figure is the job's.
                    util[r["index"]] = r["utilization_percent"]
                    mem.setdefault(r["index"], 0)
            if not mem and not util:
                continue            # no readings for its GPUs (simulated, nothing set)
            acc = st.usage.get(jid)
            if acc is None:
                acc = st.usage[jid] = _restore(job.gpu_usage)
            acc[0] = max(acc[0], max(mem.values(), default=0))
            if util:
                acc[1] += sum(util.values()) / len(util)
                acc[2] += 1
            acc[3] += 1
            usage = {"peak_memory_mb": acc[0],
                     "mean_util_percent": round(acc[1] / acc[2], 1) if acc[2] else None,
                     "samples": acc[3]}
            if job.gpu_usage != usage:
                job.gpu_usage = usage
                self.changed(jid)

    def gpu_usage_stats(self, jobs) -> dict:
        """For gstats: the jobs whose GPU use was sampled, their mean peak memory and
        mean utilisation."""
        peaks, utils = [], []
        for job in jobs:
            u = job.gpu_usage
            if isinstance(u, dict) and u.get("samples"):
                peaks.append(u.get("peak_memory_mb") or 0)
                if u.get("mean_util_percent") is not None:
                    utils.append(u["mean_util_percent"])
        return {"jobs_with_gpu_samples": len(peaks),
                "avg_gpu_peak_memory_mb": sum(peaks) / len(peaks) if peaks else None,
                "max_gpu_peak_memory_mb": max(peaks) if peaks else None,
                "avg_gpu_util_percent": sum(utils) / len(utils) if utils else None}

    # --- requests -------------------------------------------------------------------------

    def fresh_insight(self) -> InsightState:
        st = self.insight
        if st.at is None or self.clock() - st.at >= FRESH_SECS:
            self.refresh_gpus()
        return st

    def gpu_extras(self) -> dict:
        """GPU index -> the keys /info adds to 0.4.13's per-GPU entry."""
        return {r["index"]: {"state": r["state"], "memory_total_mb": r["memory_total_mb"],
                             "memory_used_mb": r["memory_used_mb"],
                             "utilization_percent": r["utilization_percent"],
                             "processes": r["processes"],
                             # who holds it (ginfo names the job even when the driver
                             # lists no process of it, as with simulated GPUs)
                             "jobs": r["jobs"]} for r in self._current_records()}

    def op_gpus(self, _payload) -> Reply:
        records = self._current_records()
        st = self.insight
        cfg = self.config.gpu
        return Reply(200, {"gpus": records, "source": self.gpu_inventory.source,
                           "sampled_at": st.at, "idle_util_percent": cfg.idle_util_percent,
                           "idle_after_secs": cfg.idle_after,
                           "ignored": self._ignored_list()})

    def op_gpu_processes(self, _payload) -> Reply:
        st = self.fresh_insight()
        procs = [dict(p, gpu=r["index"]) for r in st.records for p in r["processes"]]
        return Reply(200, {"processes": procs, "ignored": self._ignored_list()})

    def _ignored_list(self) -> list:
        ign = self.insight.ignored
        return [dict(ign.entries[p]) for p in sorted(ign.entries)]

    def _pid_of(self, payload) -> Optional[int]:
        pid = payload.get("pid") if isinstance(payload, dict) else None
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
            return None
        return pid

    def op_gpu_process_ignore(self, payload) -> Reply:
        pid = self._pid_of(payload)
        if pid is None:
            return error(400, "pid must be a process id (a positive integer)")
        st = self.fresh_insight()
        found = [(r["index"], p) for r in st.records for p in r["processes"] if p["pid"] == pid]
        if not found:
            return error(404, f"process {pid} holds no GPU: no GPU reports it now")
        job = next((p for _, p in found if p["job_id"] is not None), None)
        if job is not None:
            return error(409, f"process {pid} belongs to gflow job {job['job_id']} of "
                              f"{job['job_user']}; end the job instead (gcancel "
                              f"{job['job_id']})")
        if not st.ignored.has(pid):
            p = found[0][1]
            st.ignored.add({"pid": pid, "started_at": p["started_at"], "user": p["user"],
                            "command": p["command"], "gpus": sorted({i for i, _ in found}),
                            "ignored_at": self.clock()})
            failed = self._save_ignored()
            if failed:
                st.ignored.remove(pid)
                return error(500, f"could not record the ignored process: {failed}")
            log.info("ignoring GPU process %d (%s) on GPU %s", pid, p["user"] or "?",
                     ",".join(str(i) for i, _ in found))
            self.refresh_gpus()
        return Reply(200, {"ignored": dict(st.ignored.entries[pid])})

    def op_gpu_process_unignore(self, payload) -> Reply:
        pid = self._pid_of(payload)
        if pid is None:
            return error(400, "pid must be a process id (a positive integer)")
        st = self.insight
        entry = st.ignored.remove(pid)
        if entry is None:
            return error(404, f"process {pid} is not ignored")
        failed = self._save_ignored()
        if failed:
            st.ignored.add(entry)
            return error(500, f"could not record the change: {failed}")
        log.info("no longer ignoring GPU process %d", pid)
        self.refresh_gpus()
        return Reply(200, {"unignored": entry})

    def _save_ignored(self) -> Optional[str]:
        try:
            self.insight.ignored.save()
        except OSError as exc:
            log.error("cannot write %s: %s", IGNORE_FILE, exc)
            return exc.strerror or str(exc)
        return None


def _processes(g) -> tuple:
    if g.processes:
        return g.processes
    return tuple(GpuProcess(pid) for pid in g.process_pids)


def _restore(usage: Optional[dict]) -> list:
    """Accumulators from a job's saved `gpu_usage` (after a scheduler restart)."""
    if not isinstance(usage, dict):
        return [0, 0.0, 0, 0]
    samples = int(usage.get("samples") or 0)
    mean = usage.get("mean_util_percent")
    n = samples if mean is not None else 0
    return [int(usage.get("peak_memory_mb") or 0), (mean or 0.0) * n, n, samples]
