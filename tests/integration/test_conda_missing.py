"""--conda-env where no conda can be found: the job fails and says so (issue 23)."""

from __future__ import annotations

import shutil

import pytest


def test_missing_conda_is_named_in_the_reason(daemon):
    if shutil.which("conda", path=daemon.env["PATH"]):
        pytest.skip("a conda is installed on this machine")   # not on CI's machine
    res = daemon.run("gbatch", "--conda-env", "ml", "bash", "-c", "echo should-not-run")
    assert res.returncode == 0
    assert "conda" in res.stderr                       # gbatch warned at submit
    job = daemon.wait_state(1, ("Finished", "Failed"))
    assert (job["state"], job["exit_code"]) == ("Failed", 127)
    assert "conda not found (--conda-env ml)" in job["reason_detail"], job
    assert "should-not-run" not in (daemon.logs / "1.log").read_text()
