"""Reading Slurm's answers: `squeue --json` (22.05's shapes and 23.02+'s), `scontrol show -o job` lines, and what a finished Slurm job means for gflow."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

# Slurm states after which a job never runs again.
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                   "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"})
# States in which the job's processes exist (COMPLETING: still being killed).
ACTIVE = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
                    "STAGE_OUT"})


@dataclass
class SlurmJob:
    key: str                      # how gflow names it: "123", or "120_4" for an array task
    job_id: int                   # Slurm's own id of this record
    state: str                    # PENDING, RUNNING, COMPLETED, ...
    reason: str = ""              # state_reason: Resources, Dependency, NonZeroExitCode, ...
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    gpu_ids: list = field(default_factory=list)
    comment: str = ""
    start_time: Optional[float] = None
    end_time: Optional[float] = None


def unwrap(value: Any) -> Any:
    """23.02+ wraps numbers as {"set": true, "number": n} (unset: None); lists of one
    state as ["RUNNING"]; 22.05 gives the plain value."""
    if isinstance(value, dict) and "number" in value:
        if value.get("set") is False or value.get("infinite"):
            return None
        return value.get("number")
    return value


def _state(value: Any) -> str:
    if isinstance(value, list):
        # 23.02+: the base state first, flags after (["PENDING", "REQUEUED"])
        value = value[0] if value else ""
    return str(value or "").upper()


def decode_exit(raw: Any) -> tuple[Optional[int], Optional[int]]:
    """(exit code, signal) from squeue's `exit_code`: 22.05 gives the raw wait status
    (768 = exit 3, 9 = SIGKILL); 23.02+ an object with return_code and signal."""
    if isinstance(raw, dict) and ("return_code" in raw or "signal" in raw):
        code = unwrap(raw.get("return_code"))
        sig = raw.get("signal") or {}
        signo = unwrap(sig.get("id")) if isinstance(sig, dict) else None
        return (code if isinstance(code, int) else None,
                signo if isinstance(signo, int) and signo > 0 else None)
    raw = unwrap(raw)
    if not isinstance(raw, int) or isinstance(raw, bool):
        return None, None
    sig = raw & 0x7F
    return (None, sig) if sig else ((raw >> 8) & 0xFF, None)


_IDX = re.compile(r"IDX:([0-9,\-]+)")


def gpu_indices(gres_detail: Any) -> list[int]:
    """GPU indices from `gres_detail` (["gpu:2(IDX:0-1)"], ["gpu:a100:1(IDX:3)"])."""
    out: list[int] = []
    for entry in gres_detail or ():
        m = _IDX.search(str(entry))
        if m:
            out.extend(expand_ranges(m.group(1)))
    return sorted(set(out))


def expand_ranges(text: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]; a throttle suffix ("3-6%2") is ignored."""
    out: list[int] = []
    for part in text.split("%")[0].split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        step = 1
        if ":" in hi:
            hi, _, s = hi.partition(":")
            step = int(s)
        out.extend(range(int(lo), int(hi or lo) + 1, step))
    return out


def _time(value: Any) -> Optional[float]:
    value = unwrap(value)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def squeue_jobs(doc: Any) -> dict[str, SlurmJob]:
    """Every record of a `squeue --json` answer, keyed as gflow names them: the job id,
    or `<array job id>_<task id>` for array tasks (an array's pending remainder, one
    record for many tasks, gives one entry per task it stands for)."""
    out: dict[str, SlurmJob] = {}
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    for rec in jobs or ():
        if not isinstance(rec, dict):
            continue
        job_id = unwrap(rec.get("job_id"))
        if not isinstance(job_id, int):
            continue
        code, sig = decode_exit(rec.get("exit_code"))
        base = dict(job_id=job_id, state=_state(rec.get("job_state")),
                    reason=str(rec.get("state_reason") or ""), exit_code=code, signal=sig,
                    gpu_ids=gpu_indices(rec.get("gres_detail")),
                    comment=str(rec.get("comment") or ""),
                    start_time=_time(rec.get("start_time")), end_time=_time(rec.get("end_time")))
        array_id = unwrap(rec.get("array_job_id"))
        task = unwrap(rec.get("array_task_id"))
        if isinstance(array_id, int) and array_id:
            if isinstance(task, int):
                tasks = [task]
            else:
                try:
                    tasks = expand_ranges(str(rec.get("array_task_string") or ""))
                except ValueError:
                    tasks = []
            for t in tasks:
                out[f"{array_id}_{t}"] = SlurmJob(key=f"{array_id}_{t}", **base)
        else:
            out[str(job_id)] = SlurmJob(key=str(job_id), **base)
    return out


_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


def scontrol_records(text: str) -> list[dict]:
    """`scontrol show -o job` output: one `Key=Value Key=Value` line per record. Values
    may hold spaces (`JobName=my job`), so a value runs up to the next ` Key=`."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line or "=" not in line:
            continue
        marks = list(_FIELD.finditer(line))
        rec: dict = {}
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
            rec[m.group(1)] = line[m.end():end].strip()
        records.append(rec)
    return records


def scontrol_job(rec: dict) -> Optional[SlurmJob]:
    """A SlurmJob from one `scontrol show -o job` record (a finished job squeue no longer
    lists)."""
    try:
        job_id = int(rec.get("JobId", ""))
    except ValueError:
        return None
    code = sig = None
    m = re.fullmatch(r"(\d+):(\d+)", rec.get("ExitCode", ""))
    if m:
        code, sig = int(m.group(1)), int(m.group(2))
        if sig:
            code = None
        else:
            sig = None
    key = str(job_id)
    if rec.get("ArrayJobId") and rec.get("ArrayTaskId"):
        key = f"{rec['ArrayJobId']}_{rec['ArrayTaskId']}"
    return SlurmJob(key=key, job_id=job_id, state=rec.get("JobState", "").upper(),
                    reason=rec.get("Reason", ""), exit_code=code, signal=sig,
                    comment=rec.get("Comment", ""))


def outcome(job: SlurmJob) -> dict:
    """What the launcher reports to the scheduler for a finished Slurm job (the same
    `exited` info a local monitor's status gives, plus `state` where Slurm ended it)."""
    info: dict = {"exit_code": job.exit_code, "finished_at": job.end_time}
    if job.signal:
        info["signal"] = job.signal
    if job.state == "COMPLETED":
        return info
    if job.state in ("CANCELLED", "TIMEOUT") and not job.exit_code:
        info["exit_code"] = None      # ended by Slurm (0:0 for a job cancelled pending)
    if job.state == "CANCELLED":
        info.update(state="Cancelled", detail=_slurm_says(job, "cancelled"))
    elif job.state == "TIMEOUT":
        info.update(state="Timeout", detail=_slurm_says(job, "time limit reached"))
    elif job.state == "FAILED" and job.exit_code:
        pass        # an ordinary non-zero exit: "exit code N", as for a local job
    else:
        what = {"FAILED": "failed", "NODE_FAIL": "its node failed",
                "OUT_OF_MEMORY": "out of memory", "BOOT_FAIL": "its node did not boot",
                "PREEMPTED": "preempted", "DEADLINE": "missed its deadline"}.get(
            job.state, job.state.lower())
        info["detail"] = _slurm_says(job, what)
        if info["exit_code"] == 0:
            info["exit_code"] = None       # ended by Slurm, not by its own exit 0
    return info


def _slurm_says(job: SlurmJob, what: str) -> str:
    reason = job.reason if job.reason and job.reason != "None" else ""
    return f"Slurm: {what}" + (f" ({reason})" if reason else "")
