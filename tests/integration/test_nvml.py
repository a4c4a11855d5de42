"""The NVML path end to end: a stub libnvidia-ml.so.1 behind a real daemon."""

from __future__ import annotations

from conftest import wait_for
from nvml_stub import build_stub


def test_unmanaged_process_blocks_a_gpu_until_it_goes(daemon_factory, tmp_path):
    lib_dir = build_stub(tmp_path / "stub")
    busy = tmp_path / "busy"
    busy.write_text("1:4242")
    d = daemon_factory(extra_env={"LD_LIBRARY_PATH": str(lib_dir), "GFLOW_STUB_GPUS": "2",
                                  "GFLOW_STUB_BUSY_FILE": str(busy)})
    cfg = d.home / ".config" / "gflow"
    cfg.mkdir(parents=True)
    (cfg / "gflow.toml").write_text("[daemon]\ngpu_poll_interval_secs = 0.2\n")
    d.start()
    status, info = d.http("GET", "/info")
    assert [(g["index"], g["available"], g.get("reason")) for g in info["gpus"]] == \
        [(0, True, None), (1, False, "Unmanaged")]
    assert info["gpus"][0]["uuid"].startswith("GPU-")
    d.ok("gbatch", "--gpus", "2", "bash", "-c", "echo $CUDA_VISIBLE_DEVICES")
    job = wait_for(lambda: (lambda j: j if j["reason_detail"] else None)(d.job(1)),
                   what="a waiting reason")
    assert job["state"] == "Queued" and "1 free" in job["reason_detail"]
    busy.write_text("")                  # the foreign process exits
    d.wait_state(1, "Finished", timeout=15)
    assert (d.logs / "1.log").read_text().strip() == "0,1"
    status, health = d.http("GET", "/health")
    assert health["gpu_source"] == "nvml" and health["gpus"] == 2
