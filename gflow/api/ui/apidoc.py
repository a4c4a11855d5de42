"""The dashboard's routes as OpenAPI paths, merged into /openapi.json when the dashboard is registered."""

from __future__ import annotations

_u32 = {"type": "integer", "minimum": 0, "maximum": 4294967295}
_job_id = {"name": "id", "in": "path", "required": True, "schema": _u32}


def _q(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _ok(ctype: str, description: str, schema=None) -> dict:
    return {"description": description,
            "content": {ctype: {"schema": schema or {"type": "string"}}}}


_err = {"description": "Refused or a bad query value"}
_page = {"get": {"summary": "The dashboard (HTML; its data comes from the API and /events)",
                 "responses": {"200": _ok("text/html", "The page")}}}

PATHS = {
    "/ui": _page,
    "/ui/jobs/{id}": {"get": {"summary": "The dashboard showing one job",
                              "parameters": [_job_id],
                              "responses": {"200": _ok("text/html", "The page"),
                                            "400": _err}}},
    "/ui/dashboard.js": {"get": {"summary": "The dashboard's script",
                                 "responses": {"200": _ok("text/javascript", "Script")}}},
    "/ui/jobview.js": {"get": {"summary": "The dashboard's job page script",
                               "responses": {"200": _ok("text/javascript", "Script")}}},
    "/ui/dashboard.css": {"get": {"summary": "The dashboard's style sheet",
                                  "responses": {"200": _ok("text/css", "Style sheet")}}},
    "/ui/whoami": {"get": {
        "summary": "The verified caller of this connection and whether it is a gflow admin",
        "responses": {"200": _ok("application/json", "The caller", {
            "type": "object", "required": ["user", "anonymous", "read_only", "admin"],
            "properties": {"uid": {"type": ["integer", "null"]},
                           "user": {"type": ["string", "null"]},
                           "via": {"type": "string"}, "anonymous": {"type": "boolean"},
                           "read_only": {"type": "boolean"}, "admin": {"type": "boolean"}}})}}},
    "/ui/api/jobs": {"get": {
        "summary": "Jobs for the dashboard: those named by ids, or every live job plus the "
                   "newest finished ones",
        "parameters": [_q("ids", {"type": "string"}, "comma list of job ids (at most 1000)"),
                       _q("recent", {"type": "integer", "minimum": 0, "maximum": 100000},
                          "finished jobs to include (default 300)")],
        "responses": {"200": _ok("application/json", "Jobs: an array with ids, else "
                                 "{jobs, recent}", {"type": ["array", "object"]}),
                      "400": _err}}},
    "/ui/api/jobs/{id}/log": {"get": {
        "summary": "A slice of a job's log (its tail without offset); available=false "
                   "when there is none yet or [security] private_logs refuses it",
        "parameters": [_job_id,
                       _q("offset", {"type": "integer", "minimum": 0}, "first byte"),
                       _q("limit", {"type": "integer", "minimum": 0}, "at most 256 KiB")],
        "responses": {"200": _ok("application/json", "The slice", {
            "type": "object", "required": ["available", "text", "offset", "next_offset", "size"],
            "properties": {"available": {"type": "boolean"}, "text": {"type": "string"},
                           "offset": {"type": "integer"}, "next_offset": {"type": "integer"},
                           "size": {"type": "integer"}}}),
                      "400": _err}}},
}
