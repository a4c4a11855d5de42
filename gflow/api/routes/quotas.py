"""Routes for quotas (ours, as upstream gflow names them: list with usage; set and remove overrides, admins only) and fair-share."""

from __future__ import annotations

from flask import Blueprint, request

from gflow.api.replies import ApiError, ask, respond
from gflow.api.routes.params import json_body

bp = Blueprint("quotas", __name__)


@bp.get("/quotas")
def list_quotas():
    return respond(*ask("quota_list", {}))


@bp.get("/fair-share")
def fair_share():
    """Each user's recent GPU use and fair-share factor ([daemon.fair_share])."""
    return respond(*ask("fair_share", {}))


@bp.put("/quotas")
def set_quota():
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, {"error": 'expected {"scope": ..., "name": ..., "limits": {...}}'})
    return respond(*ask("quota_set", {"scope": body.get("scope"), "name": body.get("name"),
                                      "limits": body.get("limits")}))


@bp.delete("/quotas")
def remove_quota():
    """The subject from the query (`?scope=user&name=alice`) or a JSON body."""
    body = json_body(required=False) if request.content_length else None
    source = body if isinstance(body, dict) else request.args
    return respond(*ask("quota_remove", {"scope": source.get("scope"),
                                         "name": source.get("name")}))
