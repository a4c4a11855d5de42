"""HTTP client of the gflowd API for the commands and the shell (stdlib only, so it starts fast)."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, Optional
from urllib.parse import quote, urlencode

CONNECT_HELP = ("Could not connect to gflowd server. Is the server running?\n"
                "Hint: Start the server with 'gflowd up'")


class ConnectionFailed(Exception):
    def __init__(self, message: str = CONNECT_HELP):
        super().__init__(message)


class ApiError(Exception):
    """A non-2xx answer; the message is the server's `error` text or its raw body."""

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class Client:
    def __init__(self, host: str = "localhost", port: int = 59000, timeout: Optional[float] = 60):
        self.host = host
        self.port = port
        self.timeout = timeout
        self._conn: Optional[http.client.HTTPConnection] = None

    @classmethod
    def from_config(cls, config) -> "Client":
        return cls(config.daemon.host, config.daemon.port)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None,
                query: Optional[dict] = None) -> tuple[int, Any]:
        """(status, decoded body); raises ConnectionFailed when the daemon is unreachable."""
        if query:
            items = {k: v for k, v in query.items() if v is not None}
            if items:
                path += "?" + urlencode(items, quote_via=quote, safe="")
        headers = {"accept": "*/*"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionRefusedError, socket.gaierror, FileNotFoundError):
                self.close()
                raise ConnectionFailed() from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed: retry once on a fresh one.
                self.close()
                if attempt:
                    raise ConnectionFailed() from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ConnectionFailed(f"{CONNECT_HELP}\n({exc})") from None
        ctype = resp.getheader("content-type") or ""
        parsed: Any = raw.decode("utf-8", "replace")
        if "json" in ctype and raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                pass
        return resp.status, parsed

    def call(self, method: str, path: str, body: Any = None,
             query: Optional[dict] = None, ok=(200, 201)) -> Any:
        """Like request(), but a status outside `ok` raises ApiError with the server's text."""
        status, parsed = self.request(method, path, body, query)
        if status not in ok:
            raise ApiError(status, error_text(status, parsed), parsed)
        return parsed

    # --- typed helpers -----------------------------------------------------------------

    def health(self) -> tuple[int, Any]:
        return self.request("GET", "/health")

    def list_jobs(self, *, states=None, users=None, created_after=None,
                  limit=None, offset=None) -> list:
        query = {"state": ",".join(states) if states else None,
                 "user": ",".join(users) if users is not None else None,
                 "created_after": created_after, "limit": limit, "offset": offset}
        return self.call("GET", "/jobs", query=query)

    def get_job(self, job_id: int) -> Optional[dict]:
        status, body = self.request("GET", f"/jobs/{job_id}")
        if status == 404:
            return None
        if status != 200:
            raise ApiError(status, error_text(status, body), body)
        return body

    def submit(self, job: dict) -> dict:
        return self.call("POST", "/jobs", job)

    def submit_batch(self, jobs: list) -> list:
        return self.call("POST", "/jobs/batch", jobs)

    def resolve(self, username: str, shorthand: str) -> int:
        return self.call("GET", "/jobs/resolve-dependency",
                         query={"username": username, "shorthand": shorthand})["job_id"]

    def action(self, job_id: int, action: str) -> tuple[int, Any]:
        return self.request("POST", f"/jobs/{job_id}/{action}")


def error_text(status: int, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    if isinstance(body, str) and body.strip():
        return body.strip()
    return f"the daemon answered HTTP {status}"
