"""Build and use a stub libnvidia-ml.so.1 so the NVML code path runs without a driver.

    from nvml_stub import build_stub, stub_env      # tests/ must be on sys.path
    lib_dir = build_stub(tmp_path)                  # compiles tmp_path/libnvidia-ml.so.1
    env = stub_env(lib_dir, gpus=4, busy="3:4242")  # os.environ + LD_LIBRARY_PATH + knobs
    subprocess.run([...], env=env)                  # NVML inside sees 4 stub GPUs

pynvml loads the library with CDLL("libnvidia-ml.so.1") at nvmlInit, so the stub must be
on LD_LIBRARY_PATH of a *new* process (the dynamic loader reads it at start-up). The
knobs (GFLOW_STUB_*) are documented at the top of fixtures/nvml_stub/nvml_stub.c; with
`busy_file=` the set of busy GPUs can be changed while a daemon runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent / "fixtures" / "nvml_stub" / "nvml_stub.c"
LIB_NAME = "libnvidia-ml.so.1"

_UNSET = object()


def build_stub(dest_dir) -> Path:
    """Compile the stub to dest_dir/libnvidia-ml.so.1 and return dest_dir (skips without gcc)."""
    gcc = shutil.which("gcc") or ("/usr/bin/gcc" if os.path.exists("/usr/bin/gcc") else None)
    if gcc is None:
        pytest.skip("gcc not available to build the NVML stub")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    lib = dest / LIB_NAME
    if lib.exists() and lib.stat().st_mtime >= SOURCE.stat().st_mtime:
        return dest
    tmp = dest / (LIB_NAME + f".tmp{os.getpid()}")
    proc = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-o", str(tmp), str(SOURCE)],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the NVML stub failed:\n{proc.stderr}")
    os.replace(tmp, lib)
    return dest


def stub_env(lib_dir, base: dict | None = None, *, gpus: int | None = None,
             memory_mb: int | None = None, busy=_UNSET, busy_file=None, name: str | None = None,
             proc_fail: str | None = None, init_fail: bool = False) -> dict:
    """An environment in which a new process's NVML is the stub in lib_dir.

    busy: "GPU[:PID],..." ("" = no process; left out = the stub's default "3:4242").
    GFLOW_FAKE_GPUS is removed, since it would take precedence over NVML.
    """
    env = dict(os.environ if base is None else base)
    env.pop("GFLOW_FAKE_GPUS", None)
    for key in [k for k in env if k.startswith("GFLOW_STUB_")]:
        del env[key]
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = str(lib_dir) + (os.pathsep + old if old else "")
    if gpus is not None:
        env["GFLOW_STUB_GPUS"] = str(gpus)
    if memory_mb is not None:
        env["GFLOW_STUB_MEMORY_MB"] = str(memory_mb)
    if busy is not _UNSET:
        env["GFLOW_STUB_BUSY"] = "" if busy is None else str(busy)
    if busy_file is not None:
        env["GFLOW_STUB_BUSY_FILE"] = str(busy_file)
    if name is not None:
        env["GFLOW_STUB_NAME"] = name
    if proc_fail is not None:
        env["GFLOW_STUB_PROC_FAIL"] = str(proc_fail)
    if init_fail:
        env["GFLOW_STUB_INIT_FAIL"] = "1"
    return env
