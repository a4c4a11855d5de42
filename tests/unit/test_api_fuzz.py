"""Schemathesis generates requests from /openapi.json; none may produce a server error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

import schemathesis  # noqa: E402  (a test extra: an import error must fail, not skip)
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from gflow.api.app import create_app  # noqa: E402
from test_api_routes import CoreBridge, FakeClock, client_for, make_core  # noqa: E402

_tmp = Path(tempfile.mkdtemp(prefix="gflow-fuzz-"))
_core = make_core(_tmp, FakeClock())
_app = create_app(CoreBridge(_core))
_client = client_for(_app)
for _ in range(3):   # some jobs and a reservation, so ids in range hit real objects
    _client.post("/jobs", json={"command": "x", "gpus": 9})
# The event stream never ends by design; it has its own test.
schema = schemathesis.openapi.from_wsgi("/openapi.json", _app).exclude(path="/events")


@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    case.call_and_validate(checks=[not_a_server_error])
