"""The GET /events route: a server-sent-events stream fed by create_app's EventBus."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from gflow.api.replies import ApiError
from gflow.api.routes.params import comma_list

bp = Blueprint("events", __name__)


@bp.get("/events")
def event_stream():
    bus = current_app.config["EVENTS"]
    names = set(comma_list(request.args.get("events")) or []) - {""}
    users = comma_list(request.args.get("user"))
    q = bus.subscribe()
    if q is None:
        raise ApiError(503, {"error": f"too many event streams (at most {bus.max_streams}); "
                                      "raise [api] threads to allow more"})
    resp = Response(bus.stream(q, names or None, set(users) if users else None),
                    content_type="text/event-stream")
    resp.headers["cache-control"] = "no-cache"
    return resp
