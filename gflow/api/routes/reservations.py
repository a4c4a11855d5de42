"""Routes for GPU reservations, which (as in 0.4.13) answer errors in plain text."""

from __future__ import annotations

from flask import Blueprint, request

from gflow.api.replies import ApiError, ask, text_reply
from gflow.api.routes.params import json_body, path_u32

bp = Blueprint("reservations", __name__)


@bp.get("/reservations")
def list_reservations():
    payload: dict = {"user": request.args.get("user")}
    status = request.args.get("status")
    if status is not None:
        if status.lower() not in ("pending", "active", "completed", "cancelled"):
            raise ApiError(400, f"Invalid status: {status}", text=True)
        payload["status"] = status.lower()
    active = request.args.get("active_only")
    if active is not None:
        if active not in ("true", "false"):
            raise ApiError(400, "Failed to deserialize query string: active_only: provided "
                                "string was not `true` or `false`", text=True)
        payload["active_only"] = active == "true"
    return text_reply(*ask("reservation_list", payload))


@bp.post("/reservations")
def create_reservation():
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object", text=True)
    for key in ("user", "start_time", "duration_secs"):
        if key not in body:
            raise ApiError(400, f"missing field `{key}`", text=True)
    return text_reply(*ask("reservation_create", body))


@bp.get("/reservations/<raw_id>")
def get_reservation(raw_id: str):
    return text_reply(*ask("reservation_get", {"id": path_u32(raw_id)}))


@bp.delete("/reservations/<raw_id>")
def cancel_reservation(raw_id: str):
    return text_reply(*ask("reservation_cancel", {"id": path_u32(raw_id)}))
