"""Adoption after a machine restart: a job whose unsynced spec is missing is reported, never started a second time; within one boot it is started."""

from __future__ import annotations

import json
import os
import time

from gflow.launcher import boots
from gflow.launcher.service import RESTARTED_DETAIL
from launcher_helpers import make_launcher


def test_a_new_data_dir_records_its_boot_durably_before_anything_starts(tmp_path,
                                                                        monkeypatch):
    path = tmp_path / "launcher.boot"
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(
        os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    record = boots.BootRecord(path, boot="boot-a")
    # No record: no launcher that skips the spec's fsync ever ran here.
    assert not record.restarted
    assert json.loads(path.read_text()) == {"boot_id": "boot-a"}
    # The file before its rename into place, then the directory that holds the rename.
    assert [p.startswith(f"{path}.tmp.") for p in synced] == [True, False]
    assert synced[1] == str(tmp_path)
    record.record()                              # once per boot
    assert len(synced) == 2


def test_a_record_of_another_boot_holds_until_an_adoption_is_done(tmp_path):
    path = tmp_path / "launcher.boot"
    boots.BootRecord(path, boot="boot-a")
    assert not boots.BootRecord(path, boot="boot-a").restarted
    later = boots.BootRecord(path, boot="boot-b")
    assert later.restarted
    again = boots.BootRecord(path, boot="boot-b")   # e.g. a launcher killed before adopting
    assert again.restarted
    again.record()
    assert not again.restarted and not boots.BootRecord(path, boot="boot-b").restarted
    path.write_text("not json")                  # unreadable: nothing can be trusted
    assert boots.BootRecord(path, boot="boot-b").restarted


def test_the_current_boot_is_the_kernels_id():
    boot = boots.current_boot()
    with open(boots.BOOT_ID_FILE) as f:
        assert boot == f.read().strip() and len(boot) >= 32


def launcher_in_boot(tmp_path, boot: str, monkeypatch):
    """A launcher as it starts in the boot `boot`."""
    monkeypatch.setattr(boots, "current_boot", lambda: boot)
    return make_launcher(tmp_path)


def wait_status(launcher, job_id: int) -> dict:
    deadline = time.monotonic() + 20
    while not launcher.paths.job_status(job_id).exists():
        assert time.monotonic() < deadline, "the job never ended"
        time.sleep(0.02)
    return json.loads(launcher.paths.job_status(job_id).read_text())


def job(tmp_path, job_id: int, marker) -> dict:
    return {"id": job_id, "command": f"touch {marker}", "run_dir": str(tmp_path),
            "gpu_ids": [], "env": {"PATH": os.environ["PATH"]}}


def adopted_once_in(tmp_path, boot: str, monkeypatch) -> None:
    """A daemon's start in `boot`: its launcher's first adoption records the boot."""
    first, _ = launcher_in_boot(tmp_path, boot, monkeypatch)
    first.adopt([])
    first.forks.close()


def assert_adoption_starts_it(launcher, rec, tmp_path, job_id: int) -> None:
    """Adopting job `job_id`, whose spec is missing, runs it, and nothing is reported."""
    marker = tmp_path / f"ran-{job_id}"
    try:
        launcher.adopt([job(tmp_path, job_id, marker)])
        assert wait_status(launcher, job_id)["exit_code"] == 0 and marker.exists()
    finally:
        launcher.forks.close()
    assert not [m for m in rec.sent if m[0] == "exited"]     # not reported as lost


def test_in_the_same_boot_a_missing_spec_means_never_launched(tmp_path, monkeypatch):
    adopted_once_in(tmp_path, "boot-a", monkeypatch)
    launcher, rec = launcher_in_boot(tmp_path, "boot-a", monkeypatch)     # e.g. after kill -9
    assert_adoption_starts_it(launcher, rec, tmp_path, 4)


def test_after_a_restart_a_missing_or_stale_spec_is_reported_not_run(tmp_path, monkeypatch):
    adopted_once_in(tmp_path, "boot-a", monkeypatch)
    launcher, rec = launcher_in_boot(tmp_path, "boot-b", monkeypatch)    # the machine restarted
    # Job 6's spec is an earlier attempt's: this attempt's spec may have been lost.
    (launcher.paths.logs_dir / "6.spec.json").write_text(json.dumps({"id": 6, "attempt": 1}))
    markers = [tmp_path / "ran-5", tmp_path / "ran-6"]
    try:
        launcher.adopt([job(tmp_path, 5, markers[0]),
                        dict(job(tmp_path, 6, markers[1]), attempt=2)])
    finally:
        launcher.forks.close()
    assert sorted((m[0], m[1], m[2]["exit_code"], m[2]["detail"]) for m in rec.sent) == [
        ("exited", 5, None, RESTARTED_DETAIL), ("exited", 6, None, RESTARTED_DETAIL)]
    assert not any(m.exists() for m in markers)
    assert not (launcher.paths.logs_dir / "5.spec.json").exists()
    # Adoption done: this boot is recorded, and from now on a missing spec is trusted.
    assert not launcher.boots.restarted
    assert json.loads((launcher.paths.data_dir / "launcher.boot").read_text()) == {
        "boot_id": "boot-b"}


def test_on_a_new_data_dir_a_job_handed_over_by_adoption_is_started(tmp_path, monkeypatch):
    """The scheduler may start a job before the launcher's first connection: the job
    then comes in the first adoption, with no spec, and must run (it once ended
    Failed with 'the machine restarted')."""
    launcher, rec = launcher_in_boot(tmp_path, "boot-a", monkeypatch)
    assert_adoption_starts_it(launcher, rec, tmp_path, 1)
