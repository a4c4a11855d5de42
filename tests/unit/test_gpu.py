"""GPU inventory: GFLOW_FAKE_GPUS parsing, the no-driver path, and NVML through a stub library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gflow.errors import ParseError
from gflow.gpu import DEFAULT_FAKE_MEMORY_MB, GpuInfo, GpuInventory, fake_uuid, parse_fake_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/nvml_stub.py
from nvml_stub import build_stub, stub_env  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


# -- GFLOW_FAKE_GPUS ------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("4", (4, DEFAULT_FAKE_MEMORY_MB)),
    ("0", (0, DEFAULT_FAKE_MEMORY_MB)),
    ("4:80G", (4, 81920)),
    ("4:80g", (4, 81920)),
    ("4:80GB", (4, 81920)),
    ("4:80GiB", (4, 81920)),
    ("2:16384", (2, 16384)),
    ("2:512M", (2, 512)),
    ("1:1T", (1, 1024 * 1024)),
    ("1:1.5G", (1, 1536)),
    (" 3 : 24G ", (3, 24576)),
])
def test_parse_fake_spec_good(text, expected):
    assert parse_fake_spec(text) == expected


@pytest.mark.parametrize("text", ["x", "-1", "4:abc", "4:", ":80G", "4.5", "4:0", "4:80X", "", "99999"])
def test_parse_fake_spec_bad(text):
    with pytest.raises(ParseError) as err:
        parse_fake_spec(text)
    assert "GFLOW_FAKE_GPUS" in str(err.value)


def test_fake_inventory():
    inv = GpuInventory("4:80G")
    assert inv.source == "fake"
    assert inv.count() == 4
    assert inv.message == "simulated GPUs: 4 x 81920 MB (GFLOW_FAKE_GPUS=4:80G)"
    gpus = inv.poll()
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert gpus[0] == GpuInfo(0, "GPU-fake-0000-0000-0000-000000000000", 81920, ())
    assert gpus[3].uuid == "GPU-fake-0000-0000-0000-000000000003"
    assert all(g.process_pids == () and g.error is None for g in gpus)
    assert len({fake_uuid(i) for i in range(20)}) == 20
    inv.close()
    inv.close()


def test_fake_spec_invalid_raises():
    with pytest.raises(ParseError):
        GpuInventory("four")


def test_empty_fake_spec_means_unset(monkeypatch):
    import pynvml

    def boom(*a, **k):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", boom)
    inv = GpuInventory("  ")
    assert inv.source == "none"


# -- no driver --------------------------------------------------------------------------

def test_no_nvml_library(monkeypatch):
    import pynvml

    def boom(*a, **k):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", boom)
    inv = GpuInventory(None)
    assert inv.source == "none"
    assert inv.count() == 0
    assert inv.poll() == []
    assert inv.message.startswith("no NVIDIA driver found (NVML: ")
    assert inv.message.endswith("; running with 0 GPUs")
    inv.close()


def test_nvml_init_oserror(monkeypatch):
    import pynvml

    def boom(*a, **k):
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    monkeypatch.setattr(pynvml, "nvmlInit", boom)
    inv = GpuInventory()
    assert (inv.source, inv.count()) == ("none", 0)
    assert "cannot open shared object" in inv.message


def test_pynvml_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    inv = GpuInventory()
    assert (inv.source, inv.count(), inv.poll()) == ("none", 0, [])
    assert "running with 0 GPUs" in inv.message


def test_import_does_not_load_pynvml():
    code = "import sys, gflow.gpu; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# -- NVML through the stub library -----------------------------------------------------

PROBE = r"""
import json, os, sys
from gflow.gpu import GpuInventory
inv = GpuInventory(os.environ.get("GFLOW_FAKE_GPUS"))
first = inv.poll()
extra = []
busy_file = os.environ.get("GFLOW_STUB_BUSY_FILE")
if busy_file:
    with open(busy_file, "w") as f:
        f.write(sys.argv[1])
    extra = [list(g.process_pids) for g in inv.poll()]
inv.close()
after_close = [g.error for g in inv.poll()]
print(json.dumps({
    "source": inv.source, "message": inv.message, "count": inv.count(),
    "gpus": [[g.index, g.uuid, g.memory_total_mb, list(g.process_pids), g.error] for g in first],
    "after_change": extra, "after_close": after_close,
}))
"""


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory):
    return build_stub(tmp_path_factory.mktemp("nvml_stub"))


def probe(env, *args):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_nvml_stub_default(stub_dir):
    r = probe(stub_env(stub_dir))
    assert r["source"] == "nvml"
    assert r["count"] == 4
    assert r["message"] == "NVML: 4 GPUs (NVIDIA Stub GPU)"
    assert r["gpus"] == [
        [i, f"GPU-00000000-0000-0000-0000-{i:012d}", 24576, [4242] if i == 3 else [], None]
        for i in range(4)
    ]
    assert r["after_close"] == ["NVML closed"] * 4


def test_nvml_stub_configured(stub_dir):
    env = stub_env(stub_dir, gpus=2, memory_mb=81920, busy="0:11,0:7", proc_fail="1",
                   name="NVIDIA H100 80GB HBM3")
    r = probe(env)
    assert r["message"] == "NVML: 2 GPUs (NVIDIA H100 80GB HBM3)"
    assert r["gpus"][0] == [0, "GPU-00000000-0000-0000-0000-000000000000", 81920, [7, 11], None]
    assert r["gpus"][1][3] == []
    assert r["gpus"][1][4] == "NVML: GPU is lost"


def test_nvml_stub_busy_file_changes_live(stub_dir, tmp_path):
    busy = tmp_path / "busy"
    busy.write_text("")
    r = probe(stub_env(stub_dir, busy_file=busy), "1:555\n2")
    assert [g[3] for g in r["gpus"]] == [[], [], [], []]
    assert r["after_change"] == [[], [555], [4242], []]


def test_fake_spec_wins_over_nvml(stub_dir):
    env = stub_env(stub_dir)
    env["GFLOW_FAKE_GPUS"] = "2:8G"
    r = probe(env)
    assert (r["source"], r["count"]) == ("fake", 2)
    assert r["gpus"][1] == [1, "GPU-fake-0000-0000-0000-000000000001", 8192, [], None]


def test_nvml_stub_driver_not_loaded(stub_dir):
    r = probe(stub_env(stub_dir, init_fail=True))
    assert (r["source"], r["count"], r["gpus"]) == ("none", 0, [])
    assert r["message"] == "no NVIDIA driver found (NVML: Driver Not Loaded); running with 0 GPUs"


def test_nvml_zero_gpus(stub_dir):
    r = probe(stub_env(stub_dir, gpus=0))
    assert (r["source"], r["count"], r["message"]) == ("nvml", 0, "NVML: 0 GPUs")


INSIGHT_PROBE = r"""
import json
from gflow.gpu import GpuInventory
inv = GpuInventory()
print(json.dumps([[g.memory_used_mb, g.utilization,
                   [[p.pid, p.used_mb, p.util] for p in g.processes]] for g in inv.poll()]))
"""


def test_nvml_stub_memory_and_utilisation(stub_dir):
    """Per-process memory (GPU:PID:MB) and utilisation (:UTIL) through NVML (issue 18)."""
    env = stub_env(stub_dir, gpus=3, memory_mb=81920, busy="0:11:51200:0,0:12,2:13:2048:60")
    out = subprocess.run([sys.executable, "-c", INSIGHT_PROBE], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        [52224, 0, [[11, 51200, 0], [12, 1024, None]]],
        [0, 0, []],
        [2048, 60, [[13, 2048, 60]]],
    ]
