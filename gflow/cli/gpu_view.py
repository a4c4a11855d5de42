"""Rendering GPU insight for people: who holds each GPU, its memory and utilisation, idle holders (ginfo, gctl gpu-process)."""

from __future__ import annotations

from gflow.cli import render


def _num(value):
    """A number from the daemon, or None (a malformed reply must not crash a command)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def gib(mb) -> str:
    mb = _num(mb)
    return "-" if mb is None else f"{mb / 1024:.1f} GiB"


def age(secs) -> str:
    """`40 s`, `15 min`, `3 h`, `2 days`: how long ago, roughly."""
    secs = _num(secs)
    if secs is None:
        return "?"
    if secs < 90:
        return f"{int(secs)} s"
    if secs < 90 * 60:
        return f"{int(secs // 60)} min"
    if secs < 36 * 3600:
        return f"{secs / 3600:.0f} h"
    days = secs / 86400
    return f"{days:.0f} day{'' if round(days) == 1 else 's'}"


def process_text(p: dict) -> str:
    """`bob's `python serve.py` pid 4242, 31.5 GiB, 2 days`."""
    user = p.get("user")
    cmd = p.get("command")
    who = f"{render.safe(str(user))}'s " if user else ""
    what = f"`{render.safe(str(cmd))}` " if cmd else ("a process we cannot see, " if not user
                                                     else "")
    text = f"{who}{what}pid {render.safe(str(p.get('pid')))}"
    extras = []
    if _num(p.get("used_mb")) is not None:
        extras.append(gib(p["used_mb"]))
    if _num(p.get("age_secs")) is not None:
        extras.append(age(p["age_secs"]))
    return text + (", " + ", ".join(extras) if extras else "")


def state_lines(g: dict) -> list[str]:
    """The STATE column of one GPU: its holder, then one line per other process."""
    procs = [p for p in g.get("processes") or () if isinstance(p, dict)]
    jobs = [j for j in g.get("jobs") or () if isinstance(j, dict)]
    state = g.get("state")
    lines = []
    if state == "error":
        lines.append("error: " + render.safe(str(g.get("error") or "unusable")))
    elif jobs:
        owners = sorted({str(j.get("user")) for j in jobs})
        ids = render.safe(",".join(str(j.get("id")) for j in jobs))
        word = "jobs" if len(jobs) > 1 else "job"
        lines.append(f"gflow {word} {ids} of {render.safe(', '.join(owners))}"
                     + (" (shared)" if state == "shared" else ""))
    held = {j.get("id") for j in jobs}
    for p in procs:
        if p.get("job_id") is None:
            label = "ignored" if p.get("ignored") else "foreign"
        elif p["job_id"] in held:
            continue                 # the holder's own processes: the first line says it
        else:
            # Another job's process on a GPU it was not given (CUDA_VISIBLE_DEVICES reset).
            label = f"gflow job {render.safe(str(p['job_id']))} (not its GPU)"
        lines.append(f"{label}: {process_text(p)}")
    if not lines:
        lines.append("free")
    return lines


def idle_notes(g: dict) -> list[str]:
    out = []
    for p in g.get("processes") or ():
        if isinstance(p, dict) and p.get("idle"):
            util = _num(p.get("util_percent"))
            out.append(f"idle {age(p.get('idle_secs'))}"
                       + (f" at {util:.0f}%" if util is not None else "")
                       + f", holding {gib(p.get('used_mb'))} (pid {render.safe(str(p.get('pid')))}): "
                       + render.safe(str(p.get("release") or "")))
    return out


def has_insight(info: dict) -> bool:
    """Whether the daemon sent our per-GPU keys (0.4.13's /info has none)."""
    return any(isinstance(g, dict) and isinstance(g.get("processes"), list)
               for g in info.get("gpus") or ())


def gpu_rows(info: dict) -> list[list[str]]:
    rows = [["GPU", "STATE", "MEMORY", "UTIL"]]
    for g in sorted((g for g in info.get("gpus") or () if isinstance(g, dict)),
                    key=lambda g: _num(g.get("index")) or 0):
        used, total = _num(g.get("memory_used_mb")), _num(g.get("memory_total_mb"))
        memory = (f"{used / 1024:.1f}/{total / 1024:.1f} GiB" if used is not None and total
                  else (gib(total) if total else "-"))
        util = _num(g.get("utilization_percent"))
        lines = state_lines(g)
        rows.append([render.safe(str(g.get("index"))), lines[0], memory,
                     "-" if util is None else f"{util:.0f}%"])
        rows += [["", line, "", ""] for line in lines[1:]]
    return rows


def idle_lines(info: dict) -> list[str]:
    """One line per flagged idle holder, after the table (they are long)."""
    out = []
    for g in sorted((g for g in info.get("gpus") or () if isinstance(g, dict)),
                    key=lambda g: _num(g.get("index")) or 0):
        out += [f"GPU {render.safe(str(g.get('index')))}: {note}" for note in idle_notes(g)]
    return out


def process_rows(procs: list) -> list[list[str]]:
    """`gctl gpu-process list`: one row per GPU process."""
    rows = [["GPU", "PID", "USER", "JOB", "MEMORY", "UTIL", "AGE", "IDLE", "COMMAND"]]
    for p in sorted((p for p in procs if isinstance(p, dict)),
                    key=lambda p: (_num(p.get("gpu")) or 0, _num(p.get("pid")) or 0)):
        util = _num(p.get("util_percent"))
        idle = _num(p.get("idle_secs"))
        idle_text = "-" if idle is None else age(idle) + (" (flagged)" if p.get("idle") else "")
        if p.get("ignored"):
            idle_text = "ignored"
        rows.append([render.safe(str(p.get("gpu"))), render.safe(str(p.get("pid"))),
                     render.safe(str(p.get("job_user") or p.get("user") or "?")),
                     "-" if p.get("job_id") is None else str(p.get("job_id")),
                     gib(p.get("used_mb")), "-" if util is None else f"{util:.0f}%",
                     age(p.get("age_secs")) if _num(p.get("age_secs")) is not None else "?",
                     idle_text, render.safe(str(p.get("command") or "?"))])
    return rows


def describe_ignored(entry: dict) -> str:
    gpus = render.safe(",".join(str(i) for i in entry.get("gpus") or ()))
    who = process_text({k: entry.get(k) for k in ("pid", "user", "command")})
    return f"{who}" + (f" on GPU {gpus}" if gpus else "")
