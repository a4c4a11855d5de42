"""Parsing path, query and body values, rejected with the same messages 0.4.13 gives."""

from __future__ import annotations

import json
from typing import Any, Optional

from flask import request

from gflow.api.replies import ApiError

U32_MAX = 2**32 - 1


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
