"""The pure reservation calendar: validating new reservations, statuses over time, boundaries.

Unlike 0.4.13 (spec/scheduler.md W15), conflicts are checked per time slice (two count
reservations that never overlap each other do not add up), finished and cancelled
reservations stay in the history, and the server itself requires whole minutes, a
start before the end and a non-empty GPU set.
"""

from __future__ import annotations

from typing import Iterable, Optional

from gflow.models import Reservation, ReservationStatus

LIVE = (ReservationStatus.PENDING, ReservationStatus.ACTIVE)


class ReservationError(ValueError):
    """The request is refused; the message is the 0.4.13-style text for the client."""


def spec_of(gpu_count: Optional[int], gpu_indices: Optional[list]) -> dict:
    if gpu_count is None and gpu_indices is None:
        raise ReservationError("Must specify either gpu_count or gpu_indices")
    if gpu_count is not None and gpu_indices is not None:
        raise ReservationError("Cannot specify both gpu_count and gpu_indices")
    if gpu_indices is not None:
        if not gpu_indices:
            raise ReservationError("gpu_indices cannot be empty")
        return {"indices": sorted(set(gpu_indices))}
    if gpu_count <= 0:
        raise ReservationError("GPU count must be greater than 0")
    return {"count": gpu_count}


def _overlaps(r: Reservation, start: float, end: float) -> bool:
    return r.start_time < end and start < r.end_time


def check_conflicts(spec: dict, start: float, end: float, total: int,
                    existing: Iterable[Reservation]) -> None:
    """Raise ReservationError if `spec` over [start, end) cannot be honoured with the rest."""
    live = [r for r in existing if r.status in LIVE and _overlaps(r, start, end)]
    cuts = sorted({start, end} | {t for r in live for t in (r.start_time, r.end_time)
                                  if start < t < end})
    new_idx = set(spec.get("indices", ()))
    new_cnt = spec.get("count", 0)
    for a, b in zip(cuts, cuts[1:]):
        here = [r for r in live if _overlaps(r, a, b)]
        idx = set()
        cnt = 0
        for r in here:
            idx.update(r.gpu_spec.get("indices", ()))
            cnt += r.gpu_spec.get("count", 0)
        if new_idx:
            clash = sorted(new_idx & idx)
            if clash:
                raise ReservationError(f"GPU index {clash[0]} is already reserved during this "
                                       "time period")
            left = total - len(idx) - len(new_idx)
            if cnt > left:
                raise ReservationError(
                    f"Cannot reserve GPU indices: would leave insufficient GPUs ({left}) for "
                    f"existing count-based reservations ({cnt})")
        elif cnt + new_cnt > total - len(idx):
            raise ReservationError(
                f"Reservation conflicts: {len(idx)} GPUs explicitly reserved, {cnt} GPUs "
                f"reserved by count, cannot reserve {new_cnt} more (available: "
                f"{total - len(idx)})")


def validate_new(*, user: str, gpu_count: Optional[int], gpu_indices: Optional[list],
                 start: float, duration: float, now: float, total_gpus: int,
                 existing: Iterable[Reservation]) -> dict:
    """The checks of POST /reservations, in 0.4.13's order; returns the GPU spec."""
    if not isinstance(user, str) or not user.strip():
        raise ReservationError("user cannot be empty")
    spec = spec_of(gpu_count, gpu_indices)
    if "count" in spec and spec["count"] > total_gpus:
        raise ReservationError(f"Requested {spec['count']} GPUs but only {total_gpus} GPUs "
                               "available")
    for i in spec.get("indices", ()):
        if i >= total_gpus:
            raise ReservationError(f"GPU index {i} is out of range (available: "
                                   f"0-{max(total_gpus - 1, 0)})")
    if duration <= 0 or duration % 60:
        raise ReservationError("Duration must be a positive whole number of minutes")
    if start < now - 1.0:   # a second of slack for the client's own clock reading
        raise ReservationError("Start time cannot be in the past")
    check_conflicts(spec, start, start + duration, total_gpus, existing)
    return spec


def status_at(r: Reservation, now: float) -> ReservationStatus:
    """What the status should be at `now` (Cancelled stays; time moves the others)."""
    if r.status in (ReservationStatus.CANCELLED, ReservationStatus.COMPLETED):
        return r.status
    if now >= r.end_time:
        return ReservationStatus.COMPLETED
    if now >= r.start_time:
        return ReservationStatus.ACTIVE
    return ReservationStatus.PENDING


def next_boundary(reservations: Iterable[Reservation], now: float) -> Optional[float]:
    """The earliest future start or end of a live reservation."""
    times = [t for r in reservations if r.status in LIVE
             for t in (r.start_time, r.end_time) if t > now]
    return min(times) if times else None


def is_active(r: Reservation, now: float) -> bool:
    return r.status == ReservationStatus.ACTIVE and r.start_time <= now < r.end_time
