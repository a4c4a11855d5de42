"""Recovery mode as the configuration guide describes it, through a real daemon."""

from __future__ import annotations

import json


def submit(d, n=1):
    for _ in range(n):
        d.ok("gbatch", "--gpus", "9", "echo", "x")      # never fits: stays queued


def test_corrupt_state_file_enters_journal_mode_and_merges_back(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    d.start()
    submit(d, 3)
    d.ok("gflowd", "down")
    state = d.data_dir / "state.msgpack"
    good = state.read_bytes()
    state.write_bytes(b"\xc1garbage!")                      # undecodable

    d.start()
    status, health = d.http("GET", "/health")
    assert status == 200
    assert health["status"] == "recovery" and health["mode"] == "journal"
    assert "state.msgpack" in health["detail"]
    backups = list(d.data_dir.glob("state.msgpack.corrupt.*"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"\xc1garbage!"
    out = d.ok("gbatch", "--gpus", "9", "echo", "during recovery")
    assert out.startswith("Submitted batch job ")
    new_id = int(out.split()[3])
    assert new_id < 2_000_000_000                           # never 0.4.13's id jump
    d.ok("gflowd", "down")
    assert state.read_bytes() == b"\xc1garbage!"            # never overwritten
    journal = (d.data_dir / "state.journal.jsonl").read_text().splitlines()
    assert len(journal) == 1 and json.loads(journal[0])["kind"] == "snapshot"

    state.write_bytes(good)                                 # the admin restores the backup
    d.start()
    status, health = d.http("GET", "/health")
    assert health["status"] == "ok"
    ids = [j["id"] for j in d.http("GET", "/jobs")[1]]
    assert ids[:3] == [1, 2, 3] and new_id in ids           # merged, not swapped
    d.ok("gflowd", "down")
    assert (d.data_dir / "state.journal.jsonl").read_text() == ""


def test_unwritable_journal_means_read_only(daemon_factory):
    d = daemon_factory(fake_gpus="1")
    d.start()
    submit(d)
    d.ok("gflowd", "down")
    (d.data_dir / "state.msgpack").write_bytes(b"\xc1")
    journal = d.data_dir / "state.journal.jsonl"
    journal.unlink()
    journal.mkdir()                                         # cannot be written
    res = d.run("gflowd", "up")
    assert res.returncode == 0 and "read_only mode" in res.stderr
    status, health = d.http("GET", "/health")
    assert health["status"] == "read_only" and health["journal_error"]
    status, body = d.http("POST", "/jobs", {"command": "x"})
    assert status == 503 and "read-only" in body["error"]
    res = d.run("gbatch", "echo", "x")
    assert res.returncode == 1 and "read-only" in res.stderr
    assert d.http("GET", "/jobs")[0] == 200                 # reads still work


def test_legacy_state_json_is_migrated(daemon_factory):
    import shutil
    from pathlib import Path
    d = daemon_factory(fake_gpus="1")
    d.data_dir.mkdir(parents=True)
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "state" / "v1_legacy_state.json"
    shutil.copy(fixture, d.data_dir / "state.json")
    d.start()
    jobs = d.http("GET", "/jobs")[1]
    assert jobs and [j["id"] for j in jobs] == sorted(j["id"] for j in jobs)
    out = d.ok("gbatch", "--gpus", "9", "echo", "after migration")
    assert int(out.split()[3]) == max(j["id"] for j in jobs) + 1
    d.ok("gflowd", "down")
    assert (d.data_dir / "state.msgpack").exists()
    assert (d.data_dir / "state.json").read_bytes() == fixture.read_bytes()
