"""Debugging routes: the scheduler's internal state, one job's internals and raw counters."""

from __future__ import annotations

from flask import Blueprint

from gflow.api.replies import ask, empty, respond
from gflow.api.routes.params import path_u32

bp = Blueprint("debug", __name__)


@bp.get("/debug/state")
def debug_state():
    return respond(*ask("debug_state"))


@bp.get("/debug/jobs/<raw_id>")
def debug_job(raw_id: str):
    status, body = ask("debug_job", {"id": path_u32(raw_id)})
    return empty(404) if status == 404 else respond(status, body)


@bp.get("/debug/metrics")
def debug_metrics():
    return respond(*ask("debug_metrics"))
