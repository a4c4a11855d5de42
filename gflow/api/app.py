"""The HTTP API: a Flask app whose handlers turn requests into scheduler messages."""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from flask import Blueprint, Flask, Response, current_app, request

from gflow.models import JobState

U32_MAX = 2**32 - 1
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class ApiError(Exception):
    def __init__(self, status: int, body: Any, text: bool = False):
        super().__init__(status, body)
        self.status, self.body, self.text = status, body, text


def respond(status: int, body: Any = None, *, text: bool = False) -> Response:
    """JSON (pre-encoded bytes pass through untouched) or, for reservation routes, text."""
    if text:
        if isinstance(body, dict) and "error" in body:
            body = body["error"]
        return Response("" if body is None else str(body), status=status, mimetype=None,
                        content_type=TEXT if body is not None else None)
    if isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    else:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(data, status=status, content_type=JSON)


def empty(status: int) -> Response:
    return Response(b"", status=status)


def ask(op: str, payload: Any = None) -> tuple[int, Any]:
    bridge = current_app.config["BRIDGE"]
    try:
        return bridge.request(op, payload)
    except bridge.Unavailable as exc:
        raise ApiError(503, {"error": f"scheduler unavailable: {exc}"})


def path_u32(raw: str) -> int:
    if not raw.isdigit() or int(raw) > U32_MAX:
        raise ApiError(400, f"Invalid URL: Cannot parse `{raw}` to a `u32`", text=True)
    return int(raw)


def query_uint(name: str, maximum: int = 2**64 - 1) -> Optional[int]:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) > maximum:
        raise ApiError(400, f"Failed to deserialize query string: {name}: invalid digit "
                            "found in string", text=True)
    return int(raw)


def query_int(name: str) -> Optional[int]:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Failed to deserialize query string: {name}: invalid digit "
                            "found in string", text=True) from None


def json_body(required: bool = True) -> Any:
    data = request.get_data(cache=False)
    if not data:
        if required:
            raise ApiError(400, {"error": "a JSON request body is required"})
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, {"error": f"Failed to parse the request body as JSON: {exc}"})


def comma_list(raw: Optional[str]) -> Optional[list[str]]:
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",")]


# --- blueprints ------------------------------------------------------------------------

system = Blueprint("system", __name__)
jobs = Blueprint("jobs", __name__)
gpus = Blueprint("gpus", __name__)


@system.get("/")
def hello():
    return Response("Hello, World!", content_type=TEXT)


@system.get("/openapi.json")
def openapi():
    from gflow.api.openapi import DOCUMENT
    return respond(200, DOCUMENT)


@system.get("/health")
def health():
    status, body = ask("health")
    return respond(status, body)


@system.get("/info")
def info():
    return respond(*ask("info"))


@jobs.get("/jobs")
def list_jobs():
    payload: dict = {}
    states = comma_list(request.args.get("state"))
    if states is not None:
        parsed = []
        for s in states:
            try:
                parsed.append(JobState.parse(s))
            except ValueError:
                pass
        if parsed:  # 0.4.13: when nothing valid remains, the filter is ignored
            payload["states"] = parsed
    users = comma_list(request.args.get("user"))
    if users is not None:
        payload["users"] = users
    payload["limit"] = query_uint("limit")
    payload["offset"] = query_uint("offset")
    created_after = query_int("created_after")
    if created_after is not None:
        payload["created_after"] = max(created_after, 0)
    return respond(*ask("list_jobs", payload))


@jobs.post("/jobs")
def submit():
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object (a job)"})
    return respond(*ask("submit", body))


@jobs.post("/jobs/batch")
def submit_batch():
    body = json_body()
    if not isinstance(body, list):
        raise ApiError(400, {"error": "expected a JSON array of jobs"})
    return respond(*ask("submit_batch", body))


@jobs.get("/jobs/resolve-dependency")
def resolve_dependency():
    for name in ("username", "shorthand"):
        if name not in request.args:
            raise ApiError(400, f"Failed to deserialize query string: missing field `{name}`",
                           text=True)
    return respond(*ask("resolve", {"username": request.args["username"],
                                    "shorthand": request.args["shorthand"]}))


@jobs.get("/jobs/<raw_id>")
def get_job(raw_id: str):
    status, body = ask("get_job", {"id": path_u32(raw_id),
                                   "with_env": request.args.get("env") == "1"})
    if status == 404:
        return empty(404)
    return respond(status, body)


@jobs.patch("/jobs/<raw_id>")
def update_job(raw_id: str):
    job_id = path_u32(raw_id)
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object of fields to update"})
    return respond(*ask("update", {"id": job_id, "changes": body}))


@jobs.post("/jobs/<raw_id>/redo")
def redo_job(raw_id: str):
    job_id = path_u32(raw_id)
    body = json_body(required=False) or {}
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object"})
    return respond(*ask("redo", {"id": job_id, "overrides": body.get("overrides") or {},
                                 "cascade": bool(body.get("cascade")),
                                 "submitted_by": body.get("submitted_by")}))


@jobs.post("/jobs/<raw_id>/signal")
def signal_job(raw_id: str):
    job_id = path_u32(raw_id)
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("signal"), str):
        raise ApiError(400, {"error": 'expected {"signal": "SIGINT"}'})
    return respond(*ask("signal", {"id": job_id, "signal": body["signal"]}))


@jobs.post("/jobs/<raw_id>/<action>")
def job_action(raw_id: str, action: str):
    if action not in ("finish", "fail", "cancel", "hold", "release"):
        return empty(404)
    return respond(*ask("transition", {"id": path_u32(raw_id), "action": action}))


@jobs.get("/jobs/<raw_id>/log")
def job_log(raw_id: str):
    return respond(*ask("log_path", {"id": path_u32(raw_id)}))


@gpus.post("/gpus")
def set_gpus():
    body = json_body(required=False) or {}
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object"})
    return respond(*ask("set_gpus", {"allowed_indices": body.get("allowed_indices")}))


@gpus.post("/groups/<group_id>/max-concurrency")
def group_limit(group_id: str):
    body = json_body()
    if not isinstance(body, dict) or "max_concurrent" not in body:
        raise ApiError(400, {"error": "missing field `max_concurrent`"})
    try:
        uuid.UUID(group_id)
    except ValueError:
        raise ApiError(400, {"error": f"Invalid UUID format: '{group_id}'"}) from None
    return respond(*ask("group_limit", {"group_id": group_id,
                                        "max_concurrent": body["max_concurrent"]}))


reservations = Blueprint("reservations", __name__)
stats = Blueprint("stats", __name__)


def text_reply(status: int, body: Any) -> Response:
    """Reservation routes answer errors in plain text, as 0.4.13 does."""
    if status >= 400:
        return respond(status, body, text=True)
    if body is None:
        return Response(b"", status=status)
    return respond(status, body)


@reservations.get("/reservations")
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


@reservations.post("/reservations")
def create_reservation():
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object", text=True)
    for key in ("user", "start_time", "duration_secs"):
        if key not in body:
            raise ApiError(400, f"missing field `{key}`", text=True)
    return text_reply(*ask("reservation_create", body))


@reservations.get("/reservations/<raw_id>")
def get_reservation(raw_id: str):
    return text_reply(*ask("reservation_get", {"id": path_u32(raw_id)}))


@reservations.delete("/reservations/<raw_id>")
def cancel_reservation(raw_id: str):
    return text_reply(*ask("reservation_cancel", {"id": path_u32(raw_id)}))


@stats.get("/stats")
def get_stats():
    since = query_int("since")
    return respond(*ask("stats", {"user": request.args.get("user"),
                                  "since": None if since is None else max(since, 0)}))


@stats.get("/metrics")
def metrics():
    from gflow.api.metrics import render_metrics
    status, body = ask("debug_metrics")
    _, info_body = ask("info")
    _, state = ask("metrics_gauges")
    return Response(render_metrics(body, info_body, state),
                    content_type="text/plain; version=0.0.4; charset=utf-8")


@stats.get("/debug/state")
def debug_state():
    return respond(*ask("debug_state"))


@stats.get("/debug/jobs/<raw_id>")
def debug_job(raw_id: str):
    status, body = ask("debug_job", {"id": path_u32(raw_id)})
    return empty(404) if status == 404 else respond(status, body)


@stats.get("/debug/metrics")
def debug_metrics():
    return respond(*ask("debug_metrics"))


@stats.get("/events")
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


def create_app(bridge, *, max_body_bytes: int = 16 * 1024 * 1024, threads: int = 16) -> Flask:
    """The app factory: `bridge.request(op, payload) -> (status, body)` reaches the scheduler."""
    app = Flask("gflow")
    app.config["BRIDGE"] = bridge
    # Streams hold a request thread each: at most a quarter of the pool may stream.
    from gflow.api.events import EventBus
    bus = EventBus(max_streams=max(1, threads // 4),
                   on_count=lambda n: bridge.request("event_streams", {"count": n}))
    app.config["EVENTS"] = bus
    if hasattr(bridge, "on_events"):
        bridge.on_events = bus.publish
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.url_map.strict_slashes = False
    for bp in (system, jobs, gpus, reservations, stats):
        app.register_blueprint(bp)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return respond(exc.status, exc.body, text=exc.text)

    @app.errorhandler(404)
    def _not_found(_exc):
        return empty(404)

    @app.errorhandler(405)
    def _not_allowed(exc):
        resp = empty(405)
        if getattr(exc, "valid_methods", None):
            resp.headers["allow"] = ",".join(exc.valid_methods)
        return resp

    @app.errorhandler(413)
    def _too_large(_exc):
        return respond(413, {"error": f"request body exceeds {max_body_bytes} bytes"})

    @app.after_request
    def _request_id(resp: Response):
        resp.headers["x-request-id"] = str(uuid.uuid4())
        return resp

    return app
