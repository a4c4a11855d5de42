"""Delayed start (`gbatch --begin`, `gjob release --at`): the scheduler's side and the worker's wake-up."""

from __future__ import annotations

from typing import Any, Optional

from gflow.models import Job


class BeginOps:
    """Mixed into SchedulerCore. The pass leaves a job whose `scheduled_at` lies ahead
    queued (policy rule 7) and says when the first is due; that is `wake_at`."""

    wake_at: Optional[float] = None

    def set_begin(self, job: Job, at: Any) -> None:
        """`gjob release --at`: the released job starts no earlier than `at`."""
        if isinstance(at, (int, float)) and not isinstance(at, bool):
            job.scheduled_at = float(at)


def arm_begin(loop) -> None:
    """Have APScheduler wake the worker loop when the first begin time is due (as for
    reservation boundaries), so a delayed job starts on time without polling. The time
    comes from the core after every batch; a restart recomputes it in the first pass."""
    aps = loop.aps
    if aps is None:
        return
    at = loop.core.wake_at
    if at == getattr(loop, "begin_at", None):
        return
    loop.begin_at = at
    if at is None:
        if aps.get_job("begin-time"):
            aps.remove_job("begin-time")
        return
    from datetime import datetime, timezone
    aps.add_job(lambda: loop.hub.inbox.put((None, ("begin_time",))), "date",
                id="begin-time", replace_existing=True, misfire_grace_time=None,
                run_date=datetime.fromtimestamp(at, tz=timezone.utc))
