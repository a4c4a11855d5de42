"""Request handlers for GPU reservations: create, list, get and cancel."""

from __future__ import annotations

from gflow.models import Reservation, ReservationStatus, reservation_to_wire
from gflow.scheduler.reply import Reply, error


class ReservationOps:
    """Mixed into `SchedulerCore`: each handler first brings statuses up to date with the
    core's `update_reservations`, so a reply never shows a stale status."""

    def policy_reservations(self) -> list:
        """Live reservations, active and upcoming, as the policy takes them: a job must not
        start on capacity that one of them holds before the job's time limit ends."""
        from gflow.reservations import LIVE
        from gflow.scheduler.policy import ActiveReservation
        now = self.clock()
        out = []
        for r in self.reservations.values():
            if r.status in LIVE and r.end_time > now:
                spec = r.gpu_spec
                out.append(ActiveReservation(
                    user=r.user, count=spec.get("count", 0),
                    indices=tuple(spec.get("indices", ())), until=self.format_clock(r.end_time),
                    start=r.start_time, end=r.end_time, since=self.format_clock(r.start_time)))
        return out

    def op_reservation_create(self, payload) -> Reply:
        from gflow.models import time_from_wire
        from gflow.reservations import ReservationError, validate_new
        try:
            start = time_from_wire(payload.get("start_time"), "start_time")
            duration = payload.get("duration_secs")
            if start is None:
                raise ValueError("missing field `start_time`")
            if isinstance(duration, bool) or not isinstance(duration, int):
                raise ValueError("duration_secs: expected an integer number of seconds")
            count, indices = payload.get("gpu_count"), payload.get("gpu_indices")
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                      or count < 0):
                raise ValueError("gpu_count: expected a non-negative integer")
            if indices is not None and (not isinstance(indices, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)):
                raise ValueError("gpu_indices: expected a list of GPU indices")
            self.update_reservations()
            spec = validate_new(user=payload.get("user"), gpu_count=count, gpu_indices=indices,
                                start=start, duration=float(duration), now=self.clock(),
                                total_gpus=len(self.gpu_view),
                                existing=self.reservations.values())
        except (ReservationError, ValueError) as exc:
            return error(400, str(exc))
        r = Reservation(id=self.next_reservation_id, user=payload["user"].strip(),
                        gpu_spec=spec, start_time=start, duration=float(duration),
                        created_at=self.clock())
        self.next_reservation_id += 1
        self.reservations[r.id] = r
        self.save_reservation(r)
        self.save_meta(next_reservation_id=self.next_reservation_id)
        self.update_reservations()
        self.emit("reservation_created", reservation=r)
        return Reply(200, {"reservation_id": r.id})

    def op_reservation_list(self, payload) -> Reply:
        self.update_reservations()
        now = self.clock()
        out = []
        for r in sorted(self.reservations.values(), key=lambda r: (r.start_time, r.id)):
            if payload.get("user") is not None and r.user != payload["user"]:
                continue
            if payload.get("status") is not None and r.status.value.lower() != payload["status"]:
                continue
            if payload.get("active_only") and not (r.status != ReservationStatus.CANCELLED
                                                   and r.start_time <= now < r.end_time):
                continue
            out.append(reservation_to_wire(r))
        return Reply(200, out)

    def op_reservation_get(self, payload) -> Reply:
        self.update_reservations()
        r = self.reservations.get(payload.get("id"))
        if r is None:
            return error(404, f"Reservation {payload.get('id')} not found")
        return Reply(200, reservation_to_wire(r))

    def op_reservation_cancel(self, payload) -> Reply:
        self.update_reservations()
        r = self.reservations.get(payload.get("id"))
        if r is None:
            return error(404, f"Reservation {payload.get('id')} not found")
        if r.status == ReservationStatus.CANCELLED:
            return error(409, "Reservation already cancelled")
        if r.status == ReservationStatus.COMPLETED:
            return error(409, "Cannot cancel completed reservation")
        r.status = ReservationStatus.CANCELLED
        r.cancelled_at = self.clock()
        self.save_reservation(r)
        self.pass_needed = True
        self.emit("reservation_cancelled", reservation=r)
        return Reply(200, None)
