"""The web dashboard at /ui: one page of vendored plain JavaScript fed by GET /events, plus the few JSON reads it needs that the 0.4.13 API lacks."""

from __future__ import annotations

import json
import os
from typing import Any

from flask import (Blueprint, Flask, Response, current_app, render_template, request,
                   send_from_directory)

from gflow import __version__
from gflow.api.replies import ApiError, ask, respond
from gflow.api.routes.params import comma_list, path_u32, query_uint
from gflow.identity import Caller
from gflow.models import ACTIVE_STATES, FINAL_STATES

__all__ = ["bp", "register", "LOG_CHUNK_MAX", "IDS_MAX", "RECENT_DEFAULT"]

bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates")
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

ACCESS_KEY = "UI_ACCESS"        # app.config: the scheduler's rules, to tell admins apart
LOG_CHUNK_MAX = 256 * 1024      # one log read answers at most this many bytes
LOG_TAIL_DEFAULT = 64 * 1024    # a first read (no offset) shows the end of the log
IDS_MAX = 1000                  # ids one /ui/api/jobs call may name (0.4.13's batch cap)
RECENT_DEFAULT = 300            # finished jobs a fresh page loads besides every live one

# The page can act (cancel a job), so no other site may frame it (clickjacking), and it
# runs only its own files: job names and commands are text, never markup.
SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def register(app: Flask, config=None) -> None:
    """Add the dashboard to `app`; `config` (the daemon's) names the admins, so the page
    can show the buttons an admin may use on other people's jobs."""
    from gflow.api import openapi
    from gflow.api.ui.apidoc import PATHS
    from gflow.config import Config
    from gflow.scheduler.guard import default_access
    app.config[ACCESS_KEY] = default_access((config or Config()).security)
    app.register_blueprint(bp)
    # /openapi.json lists every route the daemon serves: the dashboard documents its own.
    openapi.PATHS.update(PATHS)


@bp.after_request
def _headers(resp: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


def _caller() -> Caller:
    return Caller.from_wire(request.environ.get("gflow.caller") or None)


def _asset_version() -> str:
    """The files' version for their URLs (?v=): browsers may keep them an hour, so a
    changed file (a new release, or an edit in a checkout) must get a new URL."""
    try:
        newest = max(os.stat(os.path.join(STATIC, n)).st_mtime_ns for n in os.listdir(STATIC))
    except (OSError, ValueError):
        newest = 0
    return f"{__version__}.{newest // 1_000_000_000}"


def _page(view: str, job_id: int | None = None):
    return render_template("dashboard.html", view=view, job_id=job_id or "",
                           version=__version__, asset_version=_asset_version())


@bp.get("")
def queue_page():
    return _page("queue")


# The page's own files, vendored in the package (no CDN, no build step); named one by one
# so nothing else in the package directory can be fetched.
def _asset(name: str, mimetype: str) -> Response:
    return send_from_directory(STATIC, name, mimetype=mimetype, max_age=3600)


@bp.get("/dashboard.js")
def dashboard_js():
    return _asset("dashboard.js", "text/javascript")


@bp.get("/jobview.js")
def jobview_js():
    return _asset("jobview.js", "text/javascript")


@bp.get("/dashboard.css")
def dashboard_css():
    return _asset("dashboard.css", "text/css")


@bp.get("/jobs/<raw_id>")
def job_page(raw_id: str):
    return _page("job", path_u32(raw_id))


@bp.get("/whoami")
def whoami():
    """Who the daemon takes this page's requests to come from, and whether they may change
    other people's jobs; the scheduler still decides every change (403 otherwise)."""
    caller = _caller()
    access = current_app.config.get(ACCESS_KEY)
    admin = bool(access is not None and access.is_admin(caller))
    return respond(200, {"uid": caller.uid, "user": caller.user, "via": caller.via,
                         "anonymous": caller.anonymous,
                         "read_only": caller.anonymous or caller.user is None,
                         "admin": admin, "version": __version__})


def _jobs(payload: dict) -> list:
    status, body = ask("list_jobs", payload)
    if status != 200:
        raise ApiError(status, body)
    return json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body


@bp.get("/api/jobs")
def jobs():
    """`?ids=1,2,3`: those jobs (what the page re-reads after events name them); without
    ids: every live job and the `recent` (default 300) newest finished ones."""
    raw_ids = comma_list(request.args.get("ids"))
    if raw_ids is not None:
        try:
            ids = sorted({int(x) for x in raw_ids if x})
        except ValueError:
            raise ApiError(400, {"error": "ids must be a comma list of job ids"}) from None
        if len(ids) > IDS_MAX:
            raise ApiError(400, {"error": f"at most {IDS_MAX} ids per request"})
        if not ids:
            return respond(200, [])
        return respond(*ask("list_jobs", {"ids": ids}))
    recent = query_uint("recent", 100_000)
    recent = RECENT_DEFAULT if recent is None else recent
    live = _jobs({"states": sorted(ACTIVE_STATES)})
    done: list = []
    if recent:
        # Only the newest finished jobs: skip the older ones in the scheduler, so a long
        # history is never encoded and sent just to be dropped here.
        status, counts = ask("debug_metrics")
        by_state = counts.get("jobs_by_state", {}) if status == 200 else {}
        total = sum(by_state.get(s.value, 0) for s in FINAL_STATES)
        done = _jobs({"states": sorted(FINAL_STATES), "offset": max(total - recent, 0),
                      "limit": recent})
    body: Any = sorted(live + done, key=lambda j: j["id"])
    return respond(200, {"jobs": body, "recent": recent})


@bp.get("/api/jobs/<raw_id>/log")
def job_log(raw_id: str):
    """A slice of a job's log: from `offset` (bytes), or the last 64 KiB without one.

    Always 200 (with `available: false` when there is no log yet) so a queued job's page
    does not fill the browser console with 404s; the scheduler's log rules apply
    ([security] private_logs: owner and admins only).
    """
    job_id = path_u32(raw_id)
    limit = min(query_uint("limit") or LOG_CHUNK_MAX, LOG_CHUNK_MAX)
    offset = query_uint("offset")
    status, path = ask("log_path", {"id": job_id})
    if status in (403, 404):
        # 403: [security] private_logs and the caller is not the owner; said in the page.
        refused = path.get("error") if status == 403 and isinstance(path, dict) else None
        return respond(200, {"id": job_id, "available": False, "text": "", "offset": 0,
                             "next_offset": 0, "size": 0, "refused": refused})
    if status != 200 or not isinstance(path, str):
        raise ApiError(status, path)
    return respond(200, {"id": job_id, "available": True, **read_slice(path, offset, limit)})


def read_slice(path: str, offset: int | None, limit: int) -> dict:
    """Bytes [offset, offset+limit) of the file (its tail when offset is None), decoded;
    a cut multi-byte character is left for the next read, never shown as garbage."""
    # O_NOFOLLOW: the daemon may be root; a log swapped for a symlink must not be read.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ApiError(500, {"error": f"cannot read the log: {exc.strerror}"}) from None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(size - min(limit, LOG_TAIL_DEFAULT), 0) if offset is None else offset
        start = min(start, size)
        f.seek(start)
        data = f.read(limit)
    skipped = 0
    if offset is None and start > 0:
        # A tail starts mid-line: drop the partial first line (and any cut character).
        nl = data.find(b"\n")
        skipped = nl + 1 if 0 <= nl < len(data) - 1 else 0
        data = data[skipped:]
    keep = _complete_utf8(data)
    return {"offset": start + skipped, "next_offset": start + skipped + keep, "size": size,
            "text": data[:keep].decode("utf-8", "replace"),
            "truncated": offset is None and start > 0}


def _complete_utf8(data: bytes) -> int:
    """Length of `data` without a trailing incomplete UTF-8 sequence (at most 3 bytes)."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b < 0x80:
            return n                       # ASCII: nothing cut
        if b >= 0xC0:                      # a lead byte: is its sequence complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return n if back >= need else n - back
    return n
