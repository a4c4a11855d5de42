"""A full disk under the state directory: changes are refused, nothing acknowledged is lost,
nothing refused appears later, and the daemon recovers by itself when space returns."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import wait_for


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path, keep_bytes: int = 0) -> None:
    """Fill the file system of `path` (leaving about `keep_bytes` free)."""
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        try:
            while True:
                st = os.statvfs(os.path.dirname(path))
                if st.f_bavail * st.f_frsize <= keep_bytes + len(chunk):
                    break
                f.write(chunk)
                f.flush()
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
                f.flush()
        except OSError:
            pass


def test_full_disk_refuses_changes_and_recovers(daemon_factory, small_disk):
    d = daemon_factory(fake_gpus="1", extra_env={"XDG_DATA_HOME": str(small_disk)})
    d.data_dir = small_disk / "gflow"
    d.logs = d.data_dir / "logs"
    d.start()
    before = [int(d.ok("gbatch", "--gpus", "9", "echo", f"before-{i}").split()[3])
              for i in range(3)]
    filler = small_disk / "filler"
    fill(str(filler))

    refused = 0
    for i in range(3):
        res = d.run("gbatch", "--gpus", "9", "echo", f"refused-{i}")
        assert res.returncode == 1, res.stdout
        assert "journal cannot be written" in res.stderr and "Traceback" not in res.stderr
        refused += 1
    status, body = d.http("POST", "/jobs", {"command": "echo refused-http", "gpus": 9})
    assert status == 503 and "cannot be written" in body["error"]
    assert d.http("GET", "/jobs")[0] == 200                 # reads keep working

    filler.unlink()                                         # space returns
    out = wait_for(lambda: (lambda r: r.stdout if r.returncode == 0 else None)(
        d.run("gbatch", "--gpus", "9", "echo", "after")), timeout=15,
        what="a submission to succeed again")
    after = int(out.split()[3])
    commands = {j["id"]: j["command"] for j in d.http("GET", "/jobs")[1]}
    assert all(i in commands for i in before + [after])
    assert not [c for c in commands.values() if "refused" in c]
    assert after == max(before) + 1                         # refused ones took no id

    d.ok("gflowd", "down")                                  # and it all survives a restart
    d.start()
    commands2 = {j["id"]: j["command"] for j in d.http("GET", "/jobs")[1]}
    assert commands2 == commands
