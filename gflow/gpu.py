"""GPU inventory: real GPUs through NVML, simulated ones from GFLOW_FAKE_GPUS, or none."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from gflow.errors import ParseError

#: Memory per simulated GPU when GFLOW_FAKE_GPUS gives only a count.
DEFAULT_FAKE_MEMORY_MB = 24576
#: Upper bound on simulated GPUs, to catch typos such as "4000".
MAX_FAKE_GPUS = 1024

_MIB = 1024 * 1024
_FAKE_RE = re.compile(r"^\s*([+-]?\d+)\s*(?::\s*(.*?)\s*)?$")
_MEM_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$")
_MEM_UNITS_MB = {
    "": 1, "m": 1, "mb": 1, "mib": 1,
    "g": 1024, "gb": 1024, "gib": 1024,
    "t": 1024 * 1024, "tb": 1024 * 1024, "tib": 1024 * 1024,
}


@dataclass(frozen=True)
class GpuProcess:
    """One compute process on a GPU, as the driver (or the simulation) reports it."""

    pid: int
    used_mb: int | None = None  # None: the driver does not say (WDDM, some MIG setups)
    util: int | None = None  # SM utilisation in percent, where the driver gives it per process


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the scheduler sees it at one poll."""

    index: int
    uuid: str
    memory_total_mb: int
    process_pids: tuple[int, ...]  # compute processes NVML reports (empty for fake GPUs)
    error: str | None = None  # an NVML call failed for this GPU: treat as unavailable
    # What the GPU insight needs (None: not known, e.g. fake GPUs without simulated usage).
    processes: tuple[GpuProcess, ...] = ()
    memory_used_mb: int | None = None
    utilization: int | None = None  # whole-GPU utilisation in percent


def fake_uuid(index: int) -> str:
    """UUID of simulated GPU `index`, shaped like NVML's ("GPU-" + 8-4-4-4-12)."""
    return f"GPU-fake-0000-0000-0000-{index:012d}"


def parse_fake_spec(text: str) -> tuple[int, int]:
    """Parse GFLOW_FAKE_GPUS: "N" or "N:MEM" -> (count, memory MB per GPU).

    MEM is a plain number of MB ("16384") or has a unit: M/MB/MiB, G/GB/GiB, T/TB/TiB
    (all binary: "80G" = 81920 MB). A count alone gives 24576 MB per GPU.
    """
    raw = "" if text is None else str(text)
    m = _FAKE_RE.match(raw.split(";", 1)[0])
    if not m:
        raise ParseError(
            f"invalid GFLOW_FAKE_GPUS {raw!r}: expected COUNT or COUNT:MEMORY, e.g. '4' or '4:80G'"
        )
    count = int(m.group(1))
    if count < 0:
        raise ParseError(f"invalid GFLOW_FAKE_GPUS {raw!r}: GPU count must not be negative")
    if count > MAX_FAKE_GPUS:
        raise ParseError(
            f"invalid GFLOW_FAKE_GPUS {raw!r}: at most {MAX_FAKE_GPUS} simulated GPUs"
        )
    mem_text = m.group(2)
    if mem_text is None:
        return count, DEFAULT_FAKE_MEMORY_MB
    mm = _MEM_RE.match(mem_text)
    unit = mm.group(2).lower() if mm else None
    if not mm or unit not in _MEM_UNITS_MB:
        raise ParseError(
            f"invalid GFLOW_FAKE_GPUS {raw!r}: memory {mem_text!r} is not a size "
            "such as '16384' (MB), '512M', '80G' or '1T'"
        )
    memory_mb = int(float(mm.group(1)) * _MEM_UNITS_MB[unit])
    if memory_mb <= 0:
        raise ParseError(f"invalid GFLOW_FAKE_GPUS {raw!r}: memory per GPU must be at least 1 MB")
    return count, memory_mb


def check_fake_gpus(env) -> str | None:
    """The one-line reason GFLOW_FAKE_GPUS in `env` is unusable, or None when it is unset,
    empty or valid. The master calls this before starting workers: a scheduler worker
    that raised on it would be restarted again and again before the daemon gave up."""
    text = (env or {}).get("GFLOW_FAKE_GPUS")
    if text is None or str(text).strip() == "":
        return None
    try:
        count, _ = parse_fake_spec(text)
        from gflow.gpu_sim import SimulatedUsage
        SimulatedUsage(_usage_part(text), None, count)
    except ParseError as exc:
        return str(exc)
    return None


def _usage_part(text: str) -> str:
    """What follows the count in GFLOW_FAKE_GPUS ("4:80G;1=50G@4242" -> "1=50G@4242")."""
    parts = str(text).split(";", 1)
    return parts[1] if len(parts) > 1 else ""


def _nvml_error_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # pragma: no cover - defensive: __str__ itself failing
        text = ""
    return text or type(exc).__name__


class GpuInventory:
    """Detects GPUs once at construction: NVML when a driver is present, else simulated GPUs from GFLOW_FAKE_GPUS, else none.

    A non-empty `fake_spec` wins over NVML (and an invalid one raises ParseError, so the
    daemon refuses to start on a typo). The set of GPUs is fixed for the inventory's
    lifetime; `poll()` only refreshes which compute processes each GPU has.
    """

    def __init__(self, fake_spec: str | None = None, usage_file: str | None = None):
        self.source: str = "none"
        self.message: str = ""
        self._static: list[GpuInfo] = []  # index, uuid, memory; pids empty
        self._handles: list[object | None] = []
        self._nvml = None  # the pynvml module while initialised
        self._lock = threading.Lock()
        self._usage = None  # gpu_sim.SimulatedUsage: fake GPUs with simulated usage
        self._util_seen: dict[int, int] = {}  # NVML per-process samples: last timestamp per GPU

        if fake_spec is not None and str(fake_spec).strip() != "":
            count, memory_mb = parse_fake_spec(fake_spec)
            from gflow.gpu_sim import SimulatedUsage
            usage = SimulatedUsage(_usage_part(fake_spec), usage_file, count)
            self._usage = usage if usage.active else None
            self.source = "fake"
            self._static = [GpuInfo(i, fake_uuid(i), memory_mb, ()) for i in range(count)]
            self.message = (
                f"simulated GPUs: {count} x {memory_mb} MB (GFLOW_FAKE_GPUS={str(fake_spec).strip()})"
            )
            return
        self._init_nvml()

    # -- detection ---------------------------------------------------------------------

    def _init_nvml(self) -> None:
        try:
            import pynvml  # lazy: clients never pay for it
        except ImportError as exc:
            self.message = f"NVML bindings unavailable ({exc}); running with 0 GPUs"
            return
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError, OSError, anything the library throws
            text = _nvml_error_text(exc)
            not_found = isinstance(
                exc,
                (
                    getattr(pynvml, "NVMLError_LibraryNotFound", ()),
                    getattr(pynvml, "NVMLError_DriverNotLoaded", ()),
                    OSError,
                ),
            )
            what = "no NVIDIA driver found" if not_found else "NVML failed to initialise"
            self.message = f"{what} (NVML: {text}); running with 0 GPUs"
            return
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        except Exception as exc:
            self.message = f"NVML could not count GPUs ({_nvml_error_text(exc)}); running with 0 GPUs"
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass
            return

        self._nvml = pynvml
        self.source = "nvml"
        names: list[str] = []
        for i in range(count):
            handle = None
            uuid = f"GPU-unknown-{i}"
            memory_mb = 0
            error = None
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = _as_str(pynvml.nvmlDeviceGetUUID(handle))
                memory_mb = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // _MIB
            except Exception as exc:
                error = f"NVML: {_nvml_error_text(exc)}"
            if handle is not None:
                try:
                    names.append(_as_str(pynvml.nvmlDeviceGetName(handle)))
                except Exception:
                    pass
            self._handles.append(handle if error is None else None)
            self._static.append(GpuInfo(i, uuid, memory_mb, (), error))

        self.message = f"NVML: {count} GPU{'' if count == 1 else 's'}"
        if names:
            distinct = list(dict.fromkeys(names))
            if len(distinct) == 1:
                self.message += f" ({distinct[0]})"
            else:
                self.message += " (" + ", ".join(f"{names.count(n)} x {n}" for n in distinct) + ")"
        broken = [g.index for g in self._static if g.error]
        if broken:
            self.message += f"; unusable: {', '.join(map(str, broken))}"

    # -- queries -----------------------------------------------------------------------

    def count(self) -> int:
        """Number of GPUs detected at construction (fixed for the inventory's lifetime)."""
        return len(self._static)

    def poll(self) -> list[GpuInfo]:
        """Current view sorted by index; NVML processes are re-queried; never raises."""
        if self.source != "nvml":
            if self._usage is None:
                return list(self._static)
            usage = self._usage.current()
            return [GpuInfo(g.index, g.uuid, g.memory_total_mb,
                            tuple(pid for pid, _, _ in usage[g.index].processes), None,
                            tuple(GpuProcess(pid, used, util)
                                  for pid, used, util in usage[g.index].processes),
                            min(usage[g.index].used_mb, g.memory_total_mb),
                            usage[g.index].utilization)
                    for g in self._static]
        with self._lock:
            nvml = self._nvml
            out: list[GpuInfo] = []
            for info, handle in zip(self._static, self._handles):
                if info.error is not None:
                    out.append(info)
                    continue
                if nvml is None:
                    out.append(GpuInfo(info.index, info.uuid, info.memory_total_mb, (), "NVML closed"))
                    continue
                try:
                    procs = _compute_processes(nvml, handle)
                    pids = tuple(sorted({int(p.pid) for p in procs}))
                    out.append(self._details(nvml, handle, info, procs, pids))
                except Exception as exc:
                    out.append(
                        GpuInfo(info.index, info.uuid, info.memory_total_mb, (),
                                f"NVML: {_nvml_error_text(exc)}")
                    )
            return out

    def _details(self, nvml, handle, info: GpuInfo, procs, pids) -> GpuInfo:
        """Memory, utilisation and per-process figures; each one the driver refuses
        (Not Supported on some boards, MIG) is left unknown, never an error."""
        used_mb = util = None
        try:
            used_mb = int(nvml.nvmlDeviceGetMemoryInfo(handle).used) // _MIB
        except Exception:
            pass
        try:
            util = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            pass
        per_pid: dict[int, int] = {}
        try:
            last = self._util_seen.get(info.index, 0)
            for s in nvml.nvmlDeviceGetProcessUtilization(handle, last):
                # Samples since `last`: a process busy in any of them is busy.
                per_pid[int(s.pid)] = max(per_pid.get(int(s.pid), 0), min(100, int(s.smUtil)))
                self._util_seen[info.index] = max(self._util_seen.get(info.index, 0),
                                                  int(s.timeStamp))
        except Exception:
            pass    # NotFound: no sample in the window; NotSupported: older boards
        memory: dict[int, int | None] = {}
        for p in procs:
            mem = getattr(p, "usedGpuMemory", None)
            mb = None if mem is None else int(mem) // _MIB
            old = memory.get(int(p.pid))
            memory[int(p.pid)] = mb if old is None else old + (mb or 0)
        return GpuInfo(info.index, info.uuid, info.memory_total_mb, pids, None,
                       tuple(GpuProcess(pid, memory.get(pid), per_pid.get(pid))
                             for pid in pids), used_mb, util)

    def close(self) -> None:
        """Shut NVML down if this inventory initialised it; safe to call twice."""
        with self._lock:
            nvml, self._nvml = self._nvml, None
            self._handles = [None] * len(self._handles)
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass

    def __enter__(self) -> "GpuInventory":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GpuInventory(source={self.source!r}, count={self.count()})"


def _as_str(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _compute_processes(nvml, handle) -> list:
    """Compute processes on one GPU: the v3 call, falling back to v2 on older drivers."""
    try:
        return nvml.nvmlDeviceGetComputeRunningProcesses_v3(handle)
    except nvml.NVMLError_FunctionNotFound:
        return nvml.nvmlDeviceGetComputeRunningProcesses_v2(handle)
