"""The Slurm executor: hands jobs to Slurm with sbatch, follows them with squeue, stops them with scancel, and reports to the scheduler as the local launcher does."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from gflow.launcher import runas, safefs
from gflow.launcher.slurm import parse, submit

log = logging.getLogger("gflow.launcher.slurm")

# How often the controller is pinged while nothing is tracked (health for /health).
PING_SECS = 2.0
# Client commands block ~9 s when slurmctld is down, `scontrol ping` answers in ms either
# way (spec/slurm.md pitfall 12): after this long without a successful call, ping first.
TRUST_SECS = 1.0
# Job-id records squeue no longer shows are asked of scontrol at most this often.
LOOKUP_SECS = 2.0


class SlurmDown(Exception):
    """The controller cannot be reached (or a command timed out): retry later."""


@dataclass
class Tracked:
    spec: dict
    key: Optional[str] = None           # Slurm's id ("123" or "120_4"); None: not yet
    reason: str = ""                    # the last waiting reason reported
    started: bool = False
    waiting: bool = False               # in to_submit: sbatch not run yet
    reported: Optional[dict] = None
    stopping: bool = False              # gflow ordered a stop: kill after the grace
    kill_at: Optional[float] = None
    missing_since: Optional[float] = None


def instance_name(data_dir) -> str:
    """This gflowd among others submitting to the same cluster (host and data dir)."""
    ident = f"{os.uname().nodename}:{os.path.realpath(data_dir)}"
    return hashlib.sha1(ident.encode()).hexdigest()[:10]


def run_command(argv: list, *, timeout: float, input: Optional[str] = None,
                env: Optional[dict] = None, account=None) -> subprocess.CompletedProcess:
    """One Slurm command, never longer than `timeout`; as `account` when given (sbatch
    for a job's owner, so that Slurm's accounting sees the real person)."""
    kw: dict = {}
    if account is not None:
        kw = {"user": account.pw_uid, "group": account.pw_gid,
              "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid)}
    try:
        return subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout, env=env, cwd="/", **kw)
    except subprocess.TimeoutExpired:
        raise SlurmDown(f"{os.path.basename(argv[0])} did not answer in {timeout:g}s") from None
    except OSError as exc:
        raise SlurmDown(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


class SlurmExecutor:
    """Messages from the scheduler are queued by the channel thread and carried out,
    in order, by the thread that calls `run_once` (the launcher's main loop), which
    also reads Slurm's state: every Slurm call happens on that one thread."""

    def __init__(self, paths, config, *, instance: str, build_argv: Callable,
                 build_env: Callable, runner: Callable = run_command,
                 clock: Callable[[], float] = time.time):
        self.paths = paths
        self.cfg = config.executor.slurm
        self.instance = instance
        self.build_argv, self.build_env = build_argv, build_env
        self.runner = runner
        self.clock = clock
        self.jobs: dict[int, Tracked] = {}
        self.inbox: deque = deque()
        self.wakeup = threading.Event()
        self.channel = None
        self.base_env = dict(os.environ)
        self.to_submit: list[list[dict]] = []      # groups waiting for the controller
        self.listed = False                        # one squeue read done since start
        self.submitted_before: dict[tuple, str] = {}  # (id, attempt) -> key, from comments
        self.health: Optional[tuple] = None        # (ok, detail) last sent
        self.next_ping = 0.0
        self.next_lookup = 0.0
        self.last_ok = float("-inf")               # clock() of the last answered call

    # --- the channel's side ------------------------------------------------------------

    def on_message(self, msg) -> None:
        self.inbox.append(msg)
        self.wakeup.set()

    def send(self, msg) -> None:
        if self.channel is not None:
            self.channel.send(msg)

    # --- the loop ----------------------------------------------------------------------

    def run_once(self) -> None:
        submits: list[dict] = []
        while self.inbox:             # a deque: the channel thread appends, only we pop
            msg = self.inbox.popleft()
            if msg[0] in ("start", "submit"):
                submits.extend([msg[1]] if msg[0] == "start" else msg[1])
            else:
                if submits:
                    self._submit_all(submits)
                    submits = []
                self._handle(msg)
        if submits:
            self._submit_all(submits)
        self._poll()

    @property
    def description(self) -> str:
        return (f"executor: slurm (instance {self.instance}, squeue every "
                f"{self.cfg.poll_secs:g}s)")

    def wait(self, timeout: float, stop=None) -> None:
        self.wakeup.wait(min(timeout, self.cfg.poll_secs))
        self.wakeup.clear()

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        log.info("launcher stopped; Slurm jobs continue under Slurm")

    def _handle(self, msg) -> None:
        kind = msg[0]
        if kind == "adopt":
            self.adopt(msg[1])
        elif kind == "signal":
            self.stop(msg[1], msg[2], msg[3])
        elif kind in ("forward", "tree_signal"):
            self.signal(msg[1], msg[2])
        elif kind == "cancel":
            self.cancel(msg[1])
        elif kind in ("hold", "release"):
            self.hold(msg[1], kind)
        elif kind == "forget":
            self.jobs.pop(msg[1], None)

    # --- handing jobs over -------------------------------------------------------------

    def _submit_all(self, specs: list) -> None:
        groups: dict = {}
        for spec in specs:
            tracked = self.jobs.get(spec["id"])
            if tracked is not None and tracked.key is not None:
                self.send(("submitted", spec["id"], tracked.key))   # repeated order
                continue
            if tracked is not None and tracked.waiting:
                continue                    # already waiting for sbatch: once is enough
            self.jobs[spec["id"]] = Tracked(spec=spec, waiting=True)
            # The tasks of one array handed over together become one Slurm array.
            gid = spec.get("group_id") if spec.get("max_concurrent") else None
            groups.setdefault(gid or f"job-{spec['id']}", []).append(spec)
        for group in groups.values():
            self.to_submit.append(group)
        self._flush_submits()

    def _flush_submits(self) -> None:
        if not self.listed:
            return          # what the previous gflowd submitted is not known yet
        if self.clock() - self.last_ok > TRUST_SECS and not self._controller_up():
            return          # sbatch would hang; _controller_up said so (health)
        waiting, self.to_submit = self.to_submit, []
        for i, group in enumerate(waiting):
            group = [s for s in group if s["id"] in self.jobs]   # cancelled meanwhile
            if not group:
                continue
            try:
                self._submit(group)
            except SlurmDown as exc:
                self._set_health(False, str(exc))
                self.to_submit = [group] + waiting[i + 1:] + self.to_submit
                return

    def _submit(self, group: list) -> None:
        known = [self.submitted_before.get((s["id"], s.get("attempt", 1))) for s in group]
        if all(known):
            for spec, key in zip(group, known):   # submitted by the gflowd before us
                self._submitted(spec["id"], key)
            return
        first = group[0]
        try:
            account = runas.target_account(first.get("run_as_user"))
        except runas.Refused as exc:
            for spec in group:
                self._refuse(spec["id"], str(exc))
            return
        argvs, buildable = [], []
        for spec in group:
            try:
                argvs.append(self.build_argv(spec))
                buildable.append(spec)
            except Exception as exc:       # a missing sweep parameter, say
                self._refuse(spec["id"], f"could not start: {exc}")
        group = buildable                  # the others of an array still go
        if not group:
            return
        first = group[0]
        for spec in group:
            self._prepare_log(spec["id"], account)
        env = submit.environment(runas.job_environment(
            self.build_env(first, self.base_env), account))
        argv = submit.sbatch_argv(group, self.cfg, instance=self.instance,
                                  log_path=self.paths.job_log)
        script = submit.batch_script(group, argvs, self.paths.job_log)
        started = time.monotonic()
        res = self.runner(argv, timeout=self.cfg.timeout_secs, input=script, env=env,
                          account=account)
        if res.returncode != 0:
            why = (res.stderr or res.stdout).strip().replace("\n", " ")[:300]
            if not self._controller_up():
                raise SlurmDown(f"sbatch failed and the controller does not answer: {why}")
            for spec in group:
                self._refuse(spec["id"], f"Slurm refused it: {why}")
            return
        self.last_ok = self.clock()
        self._set_health(True, "")
        slurm_id = res.stdout.strip().split(";")[0]
        log.info("sbatch %s -> Slurm job %s in %.0f ms", ",".join(
            str(s["id"]) for s in group), slurm_id, (time.monotonic() - started) * 1000)
        for i, spec in enumerate(group):
            self._submitted(spec["id"], f"{slurm_id}_{i}" if len(group) > 1 else slurm_id)

    def _submitted(self, job_id: int, key: str) -> None:
        tracked = self.jobs.get(job_id)
        if tracked is not None:
            tracked.key, tracked.waiting = key, False
        self.send(("submitted", job_id, key))

    def _refuse(self, job_id: int, detail: str) -> None:
        log.error("job %d not handed to Slurm: %s", job_id, detail)
        self.jobs.pop(job_id, None)
        self.send(("refused", job_id, detail))

    def _prepare_log(self, job_id: int, account) -> None:
        """The log exists before Slurm opens it; owned by the job's account, which is
        who writes it (slurmstepd opens it as the job's user)."""
        os.makedirs(self.paths.logs_dir, mode=0o700, exist_ok=True)
        fd = safefs.open_job_log(str(self.paths.job_log(job_id)),
                                 group=account.pw_gid if account else None)
        try:
            if account is not None:
                os.fchown(fd, account.pw_uid, account.pw_gid)
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    # --- after a restart ---------------------------------------------------------------

    def adopt(self, specs: list) -> None:
        """Every job the scheduler believes is in Slurm (queued there or running); sent
        whenever the scheduler (re)connects, so the last health report is repeated."""
        if self.health is not None:
            self.send(("executor", {"kind": "slurm", "ok": self.health[0],
                                    "detail": self.health[1]}))
        wanted = {s["id"] for s in specs}
        for spec in specs:
            tracked = self.jobs.get(spec["id"])
            if tracked is not None and tracked.reported:
                self.send(("exited", spec["id"], tracked.reported))
                continue
            if tracked is None:
                tracked = self.jobs[spec["id"]] = Tracked(spec=spec)
            tracked.key = tracked.key or spec.get("executor_id")
            tracked.stopping = tracked.stopping or bool(spec.get("stopping"))
            if tracked.key is None and not tracked.waiting:
                # Never handed over (the daemon stopped first): hand it over now.
                del self.jobs[spec["id"]]
                self._submit_all([spec])
        for job_id in list(self.jobs):
            if job_id not in wanted and self.jobs[job_id].reported:
                del self.jobs[job_id]

    # --- stopping and signals -------------------------------------------------------

    def stop(self, job_id: int, signame: str, grace: float) -> None:
        """Stop a running job as the local launcher does: the signal first (all the
        job's processes, batch shell included), Slurm's own cancel after the grace."""
        tracked = self.jobs.get(job_id)
        if tracked is None or tracked.stopping:
            return
        tracked.stopping = True
        if tracked.key is None:
            return
        self._scancel(tracked.key, "--full", "--signal=" + signame.removeprefix("SIG"))
        tracked.kill_at = self.clock() + grace

    def signal(self, job_id: int, signame: str) -> None:
        tracked = self.jobs.get(job_id)
        if tracked is not None and tracked.key is not None:
            self._scancel(tracked.key, "--full", "--signal=" + signame.removeprefix("SIG"))

    def cancel(self, job_id: int) -> None:
        """A job cancelled before it ran: nothing will be reported for it."""
        tracked = self.jobs.pop(job_id, None)
        if tracked is not None and tracked.key is not None:
            self._scancel(tracked.key)

    def hold(self, job_id: int, what: str) -> None:
        tracked = self.jobs.get(job_id)
        if tracked is not None and tracked.key is not None:
            self._call([self.cfg.scontrol, what, tracked.key])

    def _scancel(self, key: str, *args: str) -> None:
        self._call([self.cfg.scancel, *args, key])

    def _call(self, argv: list) -> bool:
        try:
            res = self.runner(argv, timeout=self.cfg.timeout_secs)
        except SlurmDown as exc:
            self._set_health(False, str(exc))
            log.error("%s: %s", " ".join(argv), exc)
            return False
        if res.returncode != 0:
            log.error("%s: %s", " ".join(argv), (res.stderr or res.stdout).strip()[:300])
        return res.returncode == 0

    # --- following Slurm ---------------------------------------------------------------

    def _controller_up(self) -> bool:
        """`scontrol ping` (milliseconds, up or down); reports a change of health."""
        try:
            res = self.runner([self.cfg.scontrol, "ping"], timeout=self.cfg.timeout_secs)
            up = res.returncode == 0 and " is UP" in res.stdout
            said = (res.stdout + res.stderr).strip().splitlines()
        except SlurmDown as exc:
            up, said = False, [str(exc)]
        if up:
            self.last_ok = self.clock()
            self._set_health(True, "")
        else:
            self._set_health(False, "the Slurm controller does not answer ("
                             + (said[0][:200] if said else "scontrol ping failed")
                             + "); jobs wait in gflow's queue and are handed over when it "
                               "is back")
        return up

    def _set_health(self, ok: bool, detail: str) -> None:
        if self.health != (ok, detail):
            self.health = (ok, detail)
            if ok:
                log.info("Slurm controller reachable")
            else:
                log.error("Slurm: %s", detail)
            self.send(("executor", {"kind": "slurm", "ok": ok, "detail": detail}))

    def _poll(self) -> None:
        now = self.clock()
        live = [t for t in self.jobs.values() if t.key is not None and not t.reported]
        if self.listed and not live and not self.to_submit:
            if now >= self.next_ping:
                self.next_ping = now + PING_SECS
                self._controller_up()
            return
        if now - self.last_ok > TRUST_SECS and not self._controller_up():
            return
        try:
            res = self.runner([self.cfg.squeue, "--json"], timeout=self.cfg.timeout_secs)
            if res.returncode != 0:
                raise SlurmDown("squeue: " + (res.stderr or res.stdout).strip()[:300])
            doc = json.loads(res.stdout)
        except (SlurmDown, ValueError) as exc:
            self._set_health(False, f"cannot read Slurm's queue: {exc}")
            return
        self.last_ok = self.clock()
        self._set_health(True, "")
        seen = parse.squeue_jobs(doc)
        if not self.listed:
            self.listed = True
            for job in seen.values():
                tasks = submit.parse_comment(job.comment, self.instance)
                for i, pair in enumerate(tasks):
                    if len(tasks) == 1:
                        self.submitted_before[pair] = job.key
                    elif job.key.endswith(f"_{i}"):
                        self.submitted_before[pair] = job.key
        if self.to_submit:
            self._flush_submits()
        lookups = now >= self.next_lookup
        waiting: dict = {}
        for job_id, tracked in list(self.jobs.items()):
            if tracked.key is None or tracked.reported:
                continue
            job = seen.get(tracked.key)
            if job is None and lookups:
                job = self._lookup(tracked)
            if job is None:
                continue
            self._follow(job_id, tracked, job, waiting)
        if lookups:
            self.next_lookup = now + LOOKUP_SECS
        if waiting:
            self.send(("slurm_waiting", waiting))

    def _lookup(self, tracked: Tracked) -> Optional[parse.SlurmJob]:
        """A job squeue does not list (finished and purged, or an array task squeue
        still shows under its array): scontrol's record, or a loss report."""
        try:
            res = self.runner([self.cfg.scontrol, "show", "-o", "job", tracked.key],
                              timeout=self.cfg.timeout_secs)
        except SlurmDown:
            return None
        if res.returncode == 0:
            for rec in parse.scontrol_records(res.stdout):
                job = parse.scontrol_job(rec)
                if job is not None and job.key in (tracked.key, str(job.job_id)):
                    return job
            return None
        if "Invalid job id" in (res.stderr + res.stdout):
            return parse.SlurmJob(key=tracked.key, job_id=0, state="LOST")
        return None

    def _follow(self, job_id: int, tracked: Tracked, job: parse.SlurmJob,
                waiting: dict) -> None:
        if job.state == "LOST":
            self._report(job_id, tracked, {
                "exit_code": None, "finished_at": self.clock(),
                "detail": f"Slurm no longer knows job {tracked.key} (purged before gflow "
                          "saw it end)"})
            return
        if (job.state in parse.ACTIVE or job.state in parse.FINAL) and not tracked.started \
                and job.start_time is not None:
            tracked.started = True
            self.send(("started", job_id, {"key": tracked.key, "gpu_ids": job.gpu_ids,
                                           "started_at": job.start_time}))
        if job.state in parse.FINAL:
            self._report(job_id, tracked, parse.outcome(job))
            return
        if job.state == "PENDING" and job.reason != tracked.reason \
                and job.reason not in ("", "None"):
            waiting[job_id] = job.reason
        tracked.reason = job.reason
        if tracked.kill_at is not None and self.clock() >= tracked.kill_at:
            log.warning("job %d ignored its stop signal: scancel", job_id)
            tracked.kill_at = self.clock() + max(5.0, self.cfg.timeout_secs)
            self._scancel(tracked.key)

    def _report(self, job_id: int, tracked: Tracked, info: dict) -> None:
        if tracked.stopping and info.get("state") == "Cancelled":
            info = dict(info, state=None, detail=None)   # the stop gflow ordered
        info = dict(info, key=tracked.key)    # which Slurm job of this gflow job ended
        tracked.reported = info
        log.info("job %d (Slurm %s) ended: %s", job_id, tracked.key,
                 " ".join(f"{k}={v}" for k, v in info.items() if v is not None))
        self.send(("exited", job_id, info))
