"""Routes for jobs: list, submit, resolve a dependency, read, update, redo, signal, transition."""

from __future__ import annotations

from flask import Blueprint, request

from gflow.api.guard import is_json
from gflow.api.limits import check_job
from gflow.api.replies import ApiError, ask, empty, respond
from gflow.api.routes.params import comma_list, json_body, path_u32, query_int, query_uint
from gflow.models import JobState

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
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


@bp.post("/jobs")
def submit():
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object (a job)"})
    check_job(body)
    return respond(*ask("submit", body))


@bp.post("/jobs/batch")
def submit_batch():
    body = json_body()
    if not isinstance(body, list):
        raise ApiError(400, {"error": "expected a JSON array of jobs"})
    for i, job in enumerate(body):
        check_job(job, f"job {i + 1} of the batch")
    return respond(*ask("submit_batch", body))


@bp.get("/jobs/resolve-dependency")
def resolve_dependency():
    for name in ("username", "shorthand"):
        if name not in request.args:
            raise ApiError(400, f"Failed to deserialize query string: missing field `{name}`",
                           text=True)
    return respond(*ask("resolve", {"username": request.args["username"],
                                    "shorthand": request.args["shorthand"]}))


@bp.get("/jobs/<raw_id>")
def get_job(raw_id: str):
    status, body = ask("get_job", {"id": path_u32(raw_id),
                                   "with_env": request.args.get("env") == "1"})
    if status == 404:
        return empty(404)
    return respond(status, body)


@bp.patch("/jobs/<raw_id>")
def update_job(raw_id: str):
    job_id = path_u32(raw_id)
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object of fields to update"})
    check_job(body)
    return respond(*ask("update", {"id": job_id, "changes": body}))


@bp.post("/jobs/<raw_id>/redo")
def redo_job(raw_id: str):
    job_id = path_u32(raw_id)
    body = json_body(required=False) or {}
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object"})
    return respond(*ask("redo", {"id": job_id, "overrides": body.get("overrides") or {},
                                 "cascade": bool(body.get("cascade")),
                                 "submitted_by": body.get("submitted_by")}))


@bp.post("/jobs/<raw_id>/signal")
def signal_job(raw_id: str):
    job_id = path_u32(raw_id)
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("signal"), str):
        raise ApiError(400, {"error": 'expected {"signal": "SIGINT"}'})
    return respond(*ask("signal", {"id": job_id, "signal": body["signal"]}))


@bp.post("/jobs/<raw_id>/<action>")
def job_action(raw_id: str, action: str):
    if action not in ("finish", "fail", "cancel", "hold", "release"):
        return empty(404)
    payload = {"id": path_u32(raw_id), "action": action}
    if action == "release" and request.content_length and is_json(request.mimetype):
        # Ours: {"at": epoch seconds}: released, but not to start before then (--at).
        body = json_body()
        at = body.get("at") if isinstance(body, dict) else None
        if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float))
                               or not 0 <= at < 2**63):
            raise ApiError(400, {"error": "at: expected epoch seconds"})
        payload["at"] = at
    return respond(*ask("transition", payload))


@bp.get("/jobs/<raw_id>/log")
def job_log(raw_id: str):
    payload = {"id": path_u32(raw_id)}
    attempt = query_uint("attempt", 2**32 - 1)     # ours: an earlier attempt's log
    if attempt is not None:
        payload["attempt"] = attempt
    return respond(*ask("log_path", payload))
