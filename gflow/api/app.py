"""The HTTP API's app factory: registers the route blueprints and maps errors to responses."""

from __future__ import annotations

import uuid

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from gflow.api import guard
from gflow.api.limits import JobLimits
from gflow.api.replies import JSON, TEXT, ApiError, ask, empty, respond, text_reply
from gflow.api.routes import BLUEPRINTS
from gflow.api.routes.params import (U32_MAX, comma_list, json_body, path_u32, query_int,
                                     query_uint)

# Helpers re-exported so code that imported them from here before the split keeps working.
__all__ = ["create_app", "register_error_handlers", "ApiError", "respond", "empty",
           "text_reply", "ask", "JSON", "TEXT", "U32_MAX", "path_u32", "query_uint",
           "query_int", "json_body", "comma_list"]


def register_error_handlers(app: Flask, max_body_bytes: int) -> None:
    """Every error a handler raises, and every routing error, is answered from here."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return respond(exc.status, exc.body, text=exc.text)

    # 0.4.13 answers unknown paths and wrong methods with empty bodies, not HTML pages.
    @app.errorhandler(404)
    def _not_found(_exc: HTTPException):
        return empty(404)

    @app.errorhandler(405)
    def _not_allowed(exc: HTTPException):
        resp = empty(405)
        if getattr(exc, "valid_methods", None):
            resp.headers["allow"] = ",".join(exc.valid_methods)
        return resp

    @app.errorhandler(413)
    def _too_large(_exc: HTTPException):
        return respond(413, {"error": f"request body exceeds {max_body_bytes} bytes"})


def create_app(bridge, *, max_body_bytes: int = 16 * 1024 * 1024, threads: int = 16,
               config=None) -> Flask:
    """The app factory: `bridge.request(op, payload) -> (status, body)` reaches the scheduler.
    `config` (the daemon's) names its host and the [security] and [api] limits; without
    it, the defaults: only localhost and loopback names, no foreign origin."""
    from gflow.config import Config
    config = config or Config()
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
    app.config["JOB_LIMITS"] = JobLimits(config.api.max_command_bytes, config.api.max_env_bytes)
    # Registered before any route's work: a refused request reaches nothing else.
    guard.install(app, guard.HostRules(config.daemon.host, config.security.allowed_hosts,
                                       config.security.allowed_origins))
    app.url_map.strict_slashes = False
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    from gflow.api import ui  # the dashboard at /ui (it reads the admins from the config)
    ui.register(app, config)
    register_error_handlers(app, max_body_bytes)

    @app.after_request
    def _request_id(resp: Response):
        resp.headers["x-request-id"] = str(uuid.uuid4())
        return resp

    return app
