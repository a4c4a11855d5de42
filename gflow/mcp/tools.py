"""What the gflow-mcp tools do, as plain methods over gflow.client (no MCP import), so they are testable alone."""

from __future__ import annotations

import os
import pwd
import threading
import time
from typing import Any, Optional

from gflow.client import Client, error_text
from gflow.mcp.preview import Request, estimate, secs

__all__ = ["GflowTools", "ToolFailure", "LOG_MAX_BYTES"]

ACTIVE = ("Queued", "Hold", "Running")
ENDED = ("Finished", "Failed", "Cancelled", "Timeout")
SHORT = {"PD": "Queued", "H": "Hold", "R": "Running", "CD": "Finished", "F": "Failed",
         "CA": "Cancelled", "TO": "Timeout"}
LOG_MAX_BYTES = 64 * 1024       # one read_log answer: enough to read, small for a context
LOG_DEFAULT_BYTES = 8 * 1024
# Which state an action needs, and the word for what it does.
ACTION_NEEDS = {"cancel": ACTIVE, "hold": ("Queued",), "release": ("Hold",)}


class ToolFailure(Exception):
    """A request the tool cannot carry out; its message is shown to the agent as is."""


def _iso(t) -> Optional[str]:
    s = secs(t)
    return None if s is None else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(s))


def reason_text(reason: Any) -> Optional[str]:
    if isinstance(reason, str):
        return reason
    if isinstance(reason, dict) and reason:
        key, value = next(iter(reason.items()))
        return f"{key}: {value}"
    return None


def summary(job: dict, now: Optional[float] = None) -> dict:
    """The fields an agent needs to follow a job, with readable times."""
    now = time.time() if now is None else now
    started, ended = secs(job.get("started_at")), secs(job.get("finished_at"))
    runtime = None if started is None else round((ended or now) - started, 1)
    return {"id": job["id"], "name": job.get("run_name"), "state": job.get("state"),
            "user": job.get("submitted_by"), "project": job.get("project"),
            "command": job.get("command"), "script": job.get("script"),
            "gpus": job.get("gpus"), "gpu_ids": job.get("gpu_ids"),
            "priority": job.get("priority"), "submitted_at": _iso(job.get("submitted_at")),
            "started_at": _iso(job.get("started_at")), "finished_at": _iso(job.get("finished_at")),
            "runtime_secs": runtime, "reason": reason_text(job.get("reason")),
            "reason_detail": job.get("reason_detail"), "exit_code": job.get("exit_code")}


def complete_utf8(data: bytes) -> int:
    """Length of `data` without a cut multi-byte character at its end (read it next time)."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b < 0x80:
            return n
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return n if back >= need else n - back
    return n


def parse_limit(text: str) -> int:
    """gbatch's time limits (`90` minutes, `MM:SS`, `HH:MM:SS`) and, since agents write
    them, `2h`, `90m`, `1h30m`."""
    from gflow.parsing import parse_duration_spec, parse_job_time_limit
    if text[-1:].lower() in ("h", "m"):
        return parse_duration_spec(text, half_hours=False)
    return parse_job_time_limit(text)


def current_user() -> str:
    """The account running this server: what the daemon identifies it as (the kernel's
    answer), not $USER, which an agent's environment may carry from somewhere else."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


class GflowTools:
    """One daemon connection shared by every tool call (calls may come from threads)."""

    def __init__(self, client: Client, user: Optional[str] = None):
        self.client = client
        self.user = user or current_user()
        self._lock = threading.Lock()

    # --- plumbing --------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None,
                 query: Optional[dict] = None) -> tuple[int, Any]:
        with self._lock:
            return self.client.request(method, path, body, query)

    def _call(self, method: str, path: str, body: Any = None, query: Optional[dict] = None,
              ok=(200, 201)) -> Any:
        status, parsed = self._request(method, path, body, query)
        if status not in ok:
            raise ToolFailure(f"gflowd refused ({status}): {error_text(status, parsed)}")
        return parsed

    def _job(self, job_id: int) -> dict:
        status, body = self._request("GET", f"/jobs/{int(job_id)}")
        if status == 404:
            raise ToolFailure(f"job {job_id} does not exist")
        if status != 200 or not isinstance(body, dict):
            raise ToolFailure(f"cannot read job {job_id}: {error_text(status, body)}")
        return body

    @staticmethod
    def _states(state: Optional[str]) -> Optional[list]:
        text = (state or "active").strip()
        if text.lower() == "all":
            return None
        if text.lower() == "active":
            return list(ACTIVE)
        if text.lower() in ("ended", "finished_any", "done"):
            return list(ENDED)
        out = []
        for part in text.split(","):
            p = part.strip()
            name = SHORT.get(p.upper()) or next((s for s in ACTIVE + ENDED
                                                 if s.lower() == p.lower()), None)
            if name is None:
                raise ToolFailure(f"unknown state {p!r}: use active, ended, all, or "
                                  "Queued, Hold, Running, Finished, Failed, Cancelled, Timeout")
            out.append(name)
        return out

    # --- tools -----------------------------------------------------------------------
    def list_jobs(self, state: Optional[str] = "active", user: Optional[str] = None,
                  project: Optional[str] = None, limit: int = 50) -> dict:
        states = self._states(state)
        users = None if (user or "").strip().lower() == "all" else (
            [u.strip() for u in user.split(",") if u.strip()] if user else [self.user])
        jobs = self._call("GET", "/jobs", query={
            "state": ",".join(states) if states else None,
            "user": ",".join(users) if users is not None else None})
        if project:
            jobs = [j for j in jobs if j.get("project") == project]
        limit = max(1, min(int(limit or 50), 1000))
        newest = sorted(jobs, key=lambda j: -j["id"])[:limit]
        now = time.time()
        return {"total": len(jobs), "shown": len(newest), "newest_first": True,
                "filter": {"state": state or "active", "user": users or "all",
                           "project": project},
                "jobs": [summary(j, now) for j in newest]}

    def show_job(self, job_id: int) -> dict:
        job = self._job(job_id)
        out = summary(job)
        out.update({k: job.get(k) for k in (
            "run_dir", "conda_env", "gpu_sharing_mode", "gpu_memory_limit_mb",
            "memory_limit_mb", "depends_on_ids", "dependency_mode",
            "auto_cancel_on_dependency_failure", "task_id", "group_id", "max_concurrent",
            "parameters", "redone_from")})
        limit = secs(job.get("time_limit"))
        out["time_limit_secs"] = limit
        extra = {k: v for k, v in job.items() if k not in out and k not in (
            "time_limit", "submitted_by", "run_name", "submitted_at", "started_at",
            "finished_at", "depends_on", "auto_close_tmux", "env")}
        out.update(extra)     # keys newer daemons add (GPU use...) pass through
        return out

    def build_job(self, command: Optional[str], script: Optional[str], gpus: int,
                  name: Optional[str], project: Optional[str], priority: Optional[int],
                  time_limit: Optional[str], memory: Optional[str], gpu_memory: Optional[str],
                  shared: bool, conda_env: Optional[str], depends_on: Optional[list],
                  run_dir: Optional[str], export_env: bool) -> dict:
        from gflow.errors import ParseError
        from gflow.parsing import parse_job_memory_mb
        if bool(command) == bool(script):
            raise ToolFailure("give exactly one of `command` (a shell command line) or "
                              "`script` (a path to a script)")
        run_dir = os.path.abspath(os.path.expanduser(run_dir or os.getcwd()))
        if not os.path.isdir(run_dir):
            raise ToolFailure(f"run_dir {run_dir} is not a directory")
        if script:
            script = os.path.join(run_dir, os.path.expanduser(script))
            if not os.path.isfile(script):
                raise ToolFailure(f"script {script} does not exist")
        try:
            limit = None if not time_limit else parse_limit(str(time_limit).strip())
            mem = None if not memory else parse_job_memory_mb(str(memory))
            gmem = None if not gpu_memory else parse_job_memory_mb(str(gpu_memory))
        except ParseError as exc:
            raise ToolFailure(str(exc)) from None
        if shared and gmem is None:
            raise ToolFailure("a shared job needs `gpu_memory` (how much GPU memory it may use)")
        deps = [int(d) for d in depends_on or ()]
        job = {
            "id": 0, "script": script, "command": command, "gpus": int(gpus or 0),
            "conda_env": conda_env or None, "run_dir": run_dir,
            "priority": 10 if priority is None else int(priority),
            "depends_on": deps[0] if len(deps) == 1 else None, "depends_on_ids": deps,
            "dependency_mode": "All" if deps else None,
            "auto_cancel_on_dependency_failure": True, "task_id": None,
            "gpu_sharing_mode": "Shared" if shared else "Exclusive",
            "gpu_memory_limit_mb": gmem,
            "time_limit": None if limit is None else {"secs": limit, "nanos": 0},
            "memory_limit_mb": mem, "submitted_by": self.user, "redone_from": None,
            "auto_close_tmux": False, "parameters": {}, "group_id": None,
            "max_concurrent": None, "run_name": name or None, "project": project or None,
            "state": "Queued", "gpu_ids": None, "submitted_at": None, "started_at": None,
            "finished_at": None, "reason": None,
        }
        if export_env:
            job["env"] = dict(os.environ)    # as gbatch does: the job sees this environment
        return job

    def preview_submit(self, job: dict) -> dict:
        info = self._call("GET", "/info")
        jobs = self._call("GET", "/jobs", query={"state": "Queued,Hold,Running"})
        known = {j["id"] for j in jobs}
        for dep in job["depends_on_ids"]:
            if dep not in known:
                status, body = self._request("GET", f"/jobs/{dep}")
                if status == 200 and isinstance(body, dict):
                    jobs.append(body)
        req = Request(gpus=job["gpus"], priority=job["priority"],
                      time_limit=secs(job["time_limit"]),
                      shared=job["gpu_sharing_mode"] == "Shared",
                      gpu_memory_mb=job["gpu_memory_limit_mb"], depends_on=job["depends_on_ids"],
                      user=self.user)
        out = estimate(info, jobs, req, time.time())
        out["dry_run"] = True
        out["submitted"] = False
        return out

    def submit(self, job: dict) -> dict:
        reply = self._call("POST", "/jobs", job)
        state = None
        try:
            state = self._job(reply["id"]).get("state")
        except ToolFailure:
            pass
        return {"id": reply["id"], "run_name": reply.get("run_name"), "state": state,
                "next": f"follow it with show_job({reply['id']}) and read_log({reply['id']})"}

    def act(self, job_id: int, action: str) -> dict:
        job = self._job(job_id)
        before = job.get("state")
        if before not in ACTION_NEEDS[action]:
            raise ToolFailure(f"job {job_id} is {before}: only a job that is "
                              f"{' or '.join(ACTION_NEEDS[action])} can be {action}"
                              f"{'l' if action == 'cancel' else ''}ed")
        status, body = self._request("POST", f"/jobs/{int(job_id)}/{action}")
        if status != 200:
            raise ToolFailure(f"gflowd refused to {action} job {job_id} ({status}): "
                              f"{error_text(status, body)}")
        after = self._job(job_id).get("state")
        return {"id": int(job_id), "action": action, "state_before": before, "state": after}

    def read_log(self, job_id: int, offset: Optional[int] = None,
                 max_bytes: int = LOG_DEFAULT_BYTES, tail_lines: Optional[int] = None) -> dict:
        job = self._job(job_id)
        max_bytes = max(1, min(int(max_bytes or LOG_DEFAULT_BYTES), LOG_MAX_BYTES))
        status, path = self._request("GET", f"/jobs/{int(job_id)}/log")
        base = {"id": int(job_id), "state": job.get("state")}
        if status == 404:
            return {**base, "available": False, "text": "", "offset": 0, "next_offset": 0,
                    "size": 0, "note": "no log yet" + (" (the job has not started)"
                                                       if job.get("state") in ("Queued", "Hold")
                                                       else "")}
        if status != 200 or not isinstance(path, str):
            raise ToolFailure(f"cannot read the log of job {job_id}: {error_text(status, path)}")
        chunk = self._read_local(path, offset, max_bytes)
        if chunk is None:   # not readable here (another host, or private): ask the daemon
            query = {"limit": max_bytes, "offset": offset}
            chunk = self._call("GET", f"/ui/api/jobs/{int(job_id)}/log", query=query)
            if not isinstance(chunk, dict) or not chunk.get("available"):
                why = chunk.get("refused") if isinstance(chunk, dict) else None
                raise ToolFailure(f"cannot read the log of job {job_id}"
                                  + (f": {why}" if why else f" at {path}"))
        text = chunk.get("text", "")
        if tail_lines:
            text = "\n".join(text.splitlines()[-int(tail_lines):])
        return {**base, "available": True, "path": path, "text": text,
                "offset": chunk["offset"], "next_offset": chunk["next_offset"],
                "size": chunk["size"], "eof": chunk["next_offset"] >= chunk["size"],
                "hint": "pass next_offset as offset to read on"}

    @staticmethod
    def _read_local(path: str, offset: Optional[int], max_bytes: int) -> Optional[dict]:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = max(size - max_bytes, 0) if offset is None else min(int(offset), size)
                f.seek(start)
                data = f.read(max_bytes)
        except OSError:
            return None
        if offset is None and start > 0:
            nl = data.find(b"\n")
            if 0 <= nl < len(data) - 1:      # a tail starts at a line
                start, data = start + nl + 1, data[nl + 1:]
        keep = complete_utf8(data)
        return {"offset": start, "next_offset": start + keep, "size": size,
                "text": data[:keep].decode("utf-8", "replace")}

    def explain(self, job_id: int) -> dict:
        job = self._job(job_id)
        state = job.get("state")
        deps = list(job.get("depends_on_ids") or ())
        if job.get("depends_on") is not None and job["depends_on"] not in deps:
            deps.append(job["depends_on"])
        dep_info = []
        for d in deps:
            status, body = self._request("GET", f"/jobs/{d}")
            dstate = body.get("state") if status == 200 and isinstance(body, dict) else "missing"
            dep_info.append({"id": d, "state": dstate, "finished": dstate == "Finished"})
        out: dict = {"id": job["id"], "state": state, "reason": reason_text(job.get("reason")),
                     "reason_detail": job.get("reason_detail"), "exit_code": job.get("exit_code"),
                     "dependencies": dep_info,
                     "dependency_mode": job.get("dependency_mode") or ("All" if deps else None)}
        detail = f" {job['reason_detail']}." if job.get("reason_detail") else ""
        if state == "Queued":
            unmet = [d["id"] for d in dep_info if not d["finished"]]
            if unmet:
                out["summary"] = f"Waiting for job(s) {unmet} to finish.{detail}"
            else:
                info = self._call("GET", "/info")
                queued = self._call("GET", "/jobs", query={"state": "Queued,Running"})
                me = Request(gpus=job.get("gpus") or 0, priority=job.get("priority", 10),
                             time_limit=secs(job.get("time_limit")),
                             user=job.get("submitted_by", ""),
                             shared=job.get("gpu_sharing_mode") == "Shared",
                             gpu_memory_mb=job.get("gpu_memory_limit_mb"))
                others = [j for j in queued if j["id"] != job["id"]
                          and not (j.get("state") == "Queued" and j["id"] > job["id"])]
                guess = estimate(info, others, me, time.time())
                out["estimate"] = guess
                out["summary"] = (f"Queued, waiting for resources.{detail or ''} "
                                  f"{len(guess['jobs_ahead'])} job(s) ahead of it; free GPUs "
                                  f"now: {guess['free_gpus_now']}.").strip()
        elif state == "Hold":
            out["summary"] = f"Held: it will not start until released (release tool).{detail}"
        elif state == "Running":
            out["summary"] = f"Running on GPU(s) {job.get('gpu_ids') or []}.{detail}"
        elif state == "Finished":
            out["summary"] = f"Finished successfully.{detail}"
        elif state == "Cancelled":
            reason = job.get("reason")
            if isinstance(reason, dict) and "DependencyFailed" in reason:
                out["summary"] = (f"Cancelled because dependency {reason['DependencyFailed']} "
                                  "did not finish.")
            else:
                out["summary"] = f"Cancelled ({reason_text(reason) or 'no reason recorded'})."
        else:   # Failed, Timeout: the detail (from the daemon) says it best when there is one
            code = job.get("exit_code")
            out["summary"] = (f"{state}: {job['reason_detail']}." if job.get("reason_detail")
                              else f"{state}{'' if code is None else f' with exit code {code}'}.")
            try:
                out["log_tail"] = self.read_log(job_id, tail_lines=20, max_bytes=4096)["text"]
            except ToolFailure:
                pass
        return out
