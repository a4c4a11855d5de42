"""Routes about GPUs: who holds each one (ours), the allowed GPU indices, ignored GPU processes (ours) and a job group's concurrency cap."""

from __future__ import annotations

import uuid

from flask import Blueprint

from gflow.api.replies import ApiError, ask, respond
from gflow.api.routes.params import json_body, path_u32

bp = Blueprint("gpus", __name__)


@bp.get("/gpus")
def gpus():
    """Per GPU: state, memory, utilisation and every process with its owner (ours)."""
    return respond(*ask("gpus"))


@bp.get("/gpu-processes")
def gpu_processes():
    return respond(*ask("gpu_processes"))


@bp.post("/gpu-processes/<raw_id>/ignore")
def ignore_gpu_process(raw_id: str):
    return respond(*ask("gpu_process_ignore", {"pid": path_u32(raw_id)}))


@bp.delete("/gpu-processes/<raw_id>/ignore")
def unignore_gpu_process(raw_id: str):
    return respond(*ask("gpu_process_unignore", {"pid": path_u32(raw_id)}))


@bp.post("/gpus")
def set_gpus():
    body = json_body(required=False) or {}
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "expected a JSON object"})
    return respond(*ask("set_gpus", {"allowed_indices": body.get("allowed_indices")}))


@bp.post("/groups/<group_id>/max-concurrency")
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
