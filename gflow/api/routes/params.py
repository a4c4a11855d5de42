"""Parsing path, query and body values, rejected with the same messages 0.4.13 gives."""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from flask import request

from gflow.api.guard import JSON_REQUIRED, is_json
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
    """The request's JSON body: UTF-8 text holding no lone surrogate (one in a string
    could never be written to the state file or sent back; see `check_text`)."""
    if required and not is_json(request.mimetype):
        raise ApiError(415, JSON_REQUIRED, text=True)      # as 0.4.13 answers
    data = request.get_data(cache=False)
    if not data:
        if required:
            raise ApiError(400, {"error": "a JSON request body is required"})
        return None
    try:
        # Strict UTF-8 (json.loads of bytes would also take UTF-16 and encoded
        # surrogates); NaN and Infinity are not JSON and could never be answered.
        body = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(400, {"error": f"the request body is not valid UTF-8: byte "
                                      f"0x{data[exc.start]:02x} at offset {exc.start}"})
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, {"error": f"Failed to parse the request body as JSON: {exc}"})
    check_text(body, data)
    return body


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


# A \uD800-\uDFFF escape is the only way a lone surrogate gets past strict UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(body: Any, raw: bytes) -> None:
    """Refuse a body whose strings (or keys) hold a lone surrogate, naming the field."""
    if not _SURROGATE_ESCAPE.search(raw):
        return                  # the common case: nothing to walk
    found = _lone_surrogate(body)
    if found is not None:
        where, char = found
        raise ApiError(400, {"error": f"{where} is not valid Unicode text: it holds a lone "
                                      f"surrogate (\\u{ord(char):04x})"})


def _lone_surrogate(body: Any) -> Optional[tuple[str, str]]:
    """(which field, the surrogate) of the first string or key holding one; paths are
    built from keys already found clean, so the message itself can be encoded."""
    stack: list = [(body, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            bad = _SURROGATE.search(value)
            if bad:
                return (f"`{where}`" if where else "the body"), bad.group()
        elif isinstance(value, dict):
            for key, item in value.items():
                bad = _SURROGATE.search(key)
                if bad:
                    return (f"a key of `{where}`" if where else "a key"), bad.group()
                stack.append((item, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
    return None


def comma_list(raw: Optional[str]) -> Optional[list[str]]:
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",")]
