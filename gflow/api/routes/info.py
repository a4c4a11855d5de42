"""Routes describing the daemon: greeting, OpenAPI document, health, info, stats and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, request

from gflow.api.replies import TEXT, ask, respond
from gflow.api.routes.params import query_int

bp = Blueprint("info", __name__)


@bp.get("/")
def hello():
    return Response("Hello, World!", content_type=TEXT)


@bp.get("/openapi.json")
def openapi():
    from gflow.api.openapi import DOCUMENT
    return respond(200, DOCUMENT)


@bp.get("/health")
def health():
    status, body = ask("health")
    return respond(status, body)


@bp.get("/info")
def info():
    return respond(*ask("info"))


@bp.get("/stats")
def get_stats():
    since = query_int("since")
    return respond(*ask("stats", {"user": request.args.get("user"),
                                  "since": None if since is None else max(since, 0)}))


@bp.get("/metrics")
def metrics():
    from gflow.api.metrics import render_metrics
    status, body = ask("debug_metrics")
    _, info_body = ask("info")
    _, state = ask("metrics_gauges")
    return Response(render_metrics(body, info_body, state),
                    content_type="text/plain; version=0.0.4; charset=utf-8")
