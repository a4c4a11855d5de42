"""GPU insight end to end (issue 18): a real daemon, a real sleeping process as the foreign
GPU holder, on simulated GPUs, on the NVML stub, and on a real NVIDIA GPU when there is one.

The foreign holder is named with its user and command; an idle holder is flagged (and
the webhook sent); a job asking more GPU memory than is free waits with the numbers and
starts when the foreign process ends; a job whose log ends with a CUDA OOM traceback
fails with that cause; a running job's GPU use is sampled onto it.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap

import pytest

from conftest import wait_for
from nvml_stub import build_stub
from test_notifications import Receiver

ME = pwd.getpwuid(os.geteuid()).pw_name

OOM_JOB = textwrap.dedent("""\
    import sys
    print("epoch 1 step 10 loss 0.5", flush=True)
    sys.stderr.write('''Traceback (most recent call last):
      File "train.py", line 88, in <module>
        out = model(batch)
    torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a \
    total capacity of 79.19 GiB of which 1.50 GiB is free.
    ''')
    sys.exit(1)
    """)


@pytest.fixture
def holder():
    """`sleep 300`: the foreign process holding GPU memory."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def configure(d, text: str) -> None:
    cfg = d.home / ".config" / "gflow"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "gflow.toml").write_text("[daemon]\ngpu_poll_interval_secs = 0.2\n" + text)


def gpus(d) -> list:
    status, body = d.http("GET", "/gpus")
    assert status == 200, body
    return body["gpus"]


def waiting_detail(d, job_id: int, text: str) -> dict:
    return wait_for(lambda: (lambda j: j if text in (j["reason_detail"] or "") else None)(
        d.job(job_id)), what=f"job {job_id} waiting with {text!r}")


def test_simulated_gpus(daemon_factory, holder, tmp_path):
    usage = tmp_path / "usage"
    receiver = Receiver().start()
    try:
        d = daemon_factory(fake_gpus=f"1:80G;0=50G@{holder.pid}%0",
                           extra_env={"GFLOW_FAKE_GPU_PROCS": str(usage)})
        configure(d, '[gpu]\nidle_after = "1s"\n[notifications]\nenabled = true\n'
                     f'[[notifications.webhooks]]\nurl = "http://127.0.0.1:{receiver.port}/"\n'
                     'events = ["gpu_idle_held"]\n')
        d.start()
        # Who holds it: the foreign process, with its owner and command.
        (g,) = gpus(d)
        assert g["state"] == "foreign"
        (p,) = g["processes"]
        assert (p["pid"], p["user"], p["command"], p["used_mb"]) == \
            (holder.pid, ME, "sleep 300", 51200)
        out = d.ok("ginfo")
        assert f"foreign: {ME}'s `sleep 300` pid {holder.pid}, 50.0 GiB" in out
        assert "50.0/80.0 GiB" in out
        # Idle for longer than [gpu] idle_after: flagged, in /metrics, as a webhook.
        wait_for(lambda: gpus(d)[0]["processes"][0]["idle"], what="the idle flag")
        assert f"gctl gpu-process ignore {holder.pid}" in d.ok("ginfo")
        status, metrics = d.http("GET", "/metrics")
        assert f'gflow_gpu_idle_held_seconds{{gpu="0",job="",pid="{holder.pid}"' in metrics
        hook = wait_for(lambda: receiver.received, what="the gpu_idle_held webhook")
        assert hook[0][1]["event"] == "gpu_idle_held" and hook[0][1]["gpu"]["pid"] == holder.pid
        # Memory that really fits: the admin lets jobs use the GPU; 40G does not fit next
        # to the 50G the holder keeps, so the job waits, naming the numbers...
        assert f"Ignoring {ME}'s `sleep 300` pid {holder.pid}" in \
            d.ok("gctl", "gpu-process", "ignore", str(holder.pid))
        d.ok("gbatch", "--gpus", "1", "--gpu-memory", "40G", "echo", "fits")
        waiting_detail(d, 1, "GPU 0 has 30.0G free, 40G requested")
        assert d.job(1)["state"] == "Queued"
        # ...and starts when the foreign process ends.
        holder.kill()
        holder.wait()
        d.wait_state(1, "Finished", timeout=20)
        assert "holds no GPU" in d.run("gctl", "gpu-process", "ignore", str(holder.pid)).stderr
        # Why a job died.
        script = tmp_path / "oom.py"
        script.write_text(OOM_JOB)
        d.ok("gbatch", sys.executable, str(script))
        job = d.wait_state(2, "Failed", timeout=20)
        assert job["reason_detail"] == ("exit code 1: CUDA out of memory (tried to allocate "
                                        "20.00 GiB, GPU 0, 79.19 GiB total)")
        assert "Reason=exit code 1: CUDA out of memory" in d.ok("gjob", "show", "2")
        # Per-job GPU use: the job's process on the GPU is sampled onto the job.
        d.ok("gbatch", "--gpus", "1", "sleep", "60")
        d.wait_state(3, "Running")
        pidfile = d.logs / "3.pid"
        info = wait_for(lambda: pidfile.exists() and json.loads(pidfile.read_text()),
                        what="job 3's pid file")
        usage.write_text(f"0=12G@{info['job_pid']}%75\n")
        job = wait_for(lambda: (lambda j: j if (j.get("gpu_usage") or {}).get(
            "peak_memory_mb") == 12288 else None)(d.job(3)), what="job 3's GPU use")
        # Polls before the job touched the GPU count as 0%: the mean is at most 75.
        assert 0 < job["gpu_usage"]["mean_util_percent"] <= 75.0
        (p,) = gpus(d)[0]["processes"]
        assert (p["job_id"], p["foreign"]) == (3, False)
        assert "GPUPeakMemory=12G" in d.ok("gjob", "show", "3")
        d.ok("gcancel", "3")
        d.wait_state(3, "Cancelled")
        assert "GPU Memory Peak" in d.ok("gstats", "-a")
    finally:
        receiver.stop()


def test_nvml_stub(daemon_factory, holder, tmp_path):
    lib_dir = build_stub(tmp_path / "stub")
    busy = tmp_path / "busy"
    busy.write_text(f"1:{holder.pid}:51200:0")
    d = daemon_factory(extra_env={"LD_LIBRARY_PATH": str(lib_dir), "GFLOW_STUB_GPUS": "2",
                                  "GFLOW_STUB_MEMORY_MB": "81920",
                                  "GFLOW_STUB_BUSY_FILE": str(busy)})
    configure(d, "")
    d.start()
    g0, g1 = gpus(d)
    assert (g0["state"], g1["state"]) == ("free", "foreign")
    (p,) = g1["processes"]
    assert (p["pid"], p["user"], p["command"], p["used_mb"], p["util_percent"]) == \
        (holder.pid, ME, "sleep 300", 51200, 0)
    assert f"foreign: {ME}'s `sleep 300` pid {holder.pid}, 50.0 GiB" in d.ok("ginfo")
    d.ok("gctl", "gpu-process", "ignore", str(holder.pid))
    d.ok("gbatch", "--gpus", "2", "--gpu-memory", "40G", "bash", "-c",
         "echo $CUDA_VISIBLE_DEVICES")
    waiting_detail(d, 1, "GPU 1 has 30.0G free, 40G requested")
    busy.write_text("")                  # the foreign process exits
    d.wait_state(1, "Finished", timeout=20)
    assert (d.logs / "1.log").read_text().strip() == "0,1"


# --- a real NVIDIA GPU -------------------------------------------------------------------

HOLD_GPU_MEMORY = textwrap.dedent("""\
    # Holds 512 MiB on CUDA device 0 through the driver API (no framework needed).
    import ctypes, sys, time
    cuda = ctypes.CDLL("libcuda.so.1")
    assert cuda.cuInit(0) == 0
    dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
    assert cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev) == 0
    assert cuda.cuMemAlloc_v2(ctypes.byref(ptr), 512 << 20) == 0
    print("holding", flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 300)
    """)


def real_gpu_or_skip() -> int:
    """Free MiB of GPU 0, or skip: this needs a driver, a GPU and libcuda."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as exc:                       # no driver on this machine
        pytest.skip(f"no NVIDIA driver (NVML: {exc}): the real-GPU test needs one")
    try:
        if pynvml.nvmlDeviceGetCount() < 1:
            pytest.skip("NVML sees no GPU")
        free = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).free
    finally:
        pynvml.nvmlShutdown()
    try:
        import ctypes
        ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        pytest.skip(f"libcuda.so.1 not loadable ({exc}): no way to hold GPU memory")
    return free // (1024 * 1024)


def test_real_nvidia_gpu(daemon_factory, tmp_path):
    free_mb = real_gpu_or_skip()
    script = tmp_path / "hold_gpu_memory.py"
    script.write_text(HOLD_GPU_MEMORY)
    env = dict(os.environ, CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES="0")
    holder = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        d = daemon_factory(extra_env={"GFLOW_DAEMON_GPUS": "0"})
        configure(d, "")
        d.start()
        g0 = gpus(d)[0]
        mine = [p for p in g0["processes"] if p["pid"] == holder.pid]
        assert mine, f"NVML does not list the holder: {g0['processes']}"
        assert mine[0]["user"] == ME and "hold_gpu_memory.py" in mine[0]["command"]
        assert mine[0]["foreign"] is True and (mine[0]["used_mb"] or 512) >= 256
        d.ok("gctl", "gpu-process", "ignore", str(holder.pid))
        # More than is free next to the holder (but less than the whole GPU).
        want = free_mb - 128
        d.ok("gbatch", "--gpus", "1", "--gpu-memory", f"{want}M", "true")
        waiting_detail(d, 1, "requested")
        assert "GPU 0 has" in d.job(1)["reason_detail"]
        holder.kill()
        holder.wait()
        d.wait_state(1, "Finished", timeout=60)
        # A job's own GPU process is attributed to it and sampled.
        d.ok("gbatch", "--gpus", "1", sys.executable, str(script), "30")
        job = wait_for(lambda: (lambda j: j if j.get("gpu_usage") and
                                j["gpu_usage"]["peak_memory_mb"] >= 256 else None)(d.job(2)),
                       timeout=60, what="job 2's sampled GPU use")
        assert job["gpu_usage"]["samples"] >= 1
        assert any(p["job_id"] == 2 for p in gpus(d)[0]["processes"])
        d.ok("gcancel", "2")
    finally:
        holder.kill()
        holder.wait()
