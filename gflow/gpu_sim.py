"""Simulated GPU usage for GFLOW_FAKE_GPUS: memory, utilisation and processes a test says other programs have on a fake GPU."""

# The grammar (docs/configuration.md, "Simulated GPU usage"), one entry per use:
#
#     GPU=MEMORY[@PID][%UTIL]        e.g.  1=50G@4242%0   0=512M   2=30G@77%85
#
# MEMORY is a size as in GFLOW_FAKE_GPUS ("50G", "512M", "16384"); PID names a process
# that holds it (without one, the memory is used by something no process list shows,
# as in another container); UTIL is that process's utilisation in percent. Entries are
# separated by ";", "," or newlines; "#" starts a comment. They come after the GPU
# count in GFLOW_FAKE_GPUS ("4:80G;1=50G@4242%0") and/or from the file named by
# GFLOW_FAKE_GPU_PROCS, which is read again at every poll so a test can change the
# usage while a daemon runs. As the driver would, an entry whose PID no longer exists
# is not reported: a test starts a real sleeping process as the "foreign holder" and
# ends it to free the GPU.

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from gflow.errors import ParseError

_ENTRY_RE = re.compile(
    r"^(\d+)\s*=\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*(?:@\s*(\d+))?\s*(?:%\s*(\d+))?$")
_UNITS_MB = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024,
             "t": 1024 * 1024, "tb": 1024 * 1024, "tib": 1024 * 1024}
# A usage file is a handful of lines; a bigger one is a mistake, not worth reading.
_MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SimEntry:
    gpu: int
    used_mb: int
    pid: Optional[int] = None
    util: Optional[int] = None


def parse_usage(text: str, where: str = "GFLOW_FAKE_GPUS") -> list[SimEntry]:
    """The entries of a usage text; ParseError naming `where` for a bad one."""
    out = []
    for line in (text or "").splitlines():
        line = line.split("#", 1)[0]
        for item in re.split(r"[;,]", line):
            item = item.strip()
            if not item:
                continue
            m = _ENTRY_RE.match(item)
            unit = m.group(3).lower() if m else None
            if not m or unit not in _UNITS_MB:
                raise ParseError(
                    f"invalid simulated GPU usage {item!r} in {where}: expected "
                    "GPU=MEMORY[@PID][%UTIL], e.g. '1=50G@4242%0'")
            util = None if m.group(5) is None else int(m.group(5))
            if util is not None and util > 100:
                raise ParseError(f"invalid simulated GPU usage {item!r} in {where}: "
                                 "utilisation is a percentage (0-100)")
            out.append(SimEntry(int(m.group(1)), int(float(m.group(2)) * _UNITS_MB[unit]),
                                None if m.group(4) is None else int(m.group(4)), util))
    return out


def check_entries(entries: list[SimEntry], count: int, where: str) -> None:
    for e in entries:
        if e.gpu >= count:
            raise ParseError(f"simulated GPU usage in {where} names GPU {e.gpu}, "
                             f"but there are only {count} GPUs")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # someone else's process: alive all the same
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class GpuUsage:
    """One simulated GPU's usage at one poll."""
    used_mb: int
    utilization: int
    processes: tuple        # (pid, used_mb, util or None)


class SimulatedUsage:
    """The usage the inline spec and the usage file describe, re-read at every poll."""

    def __init__(self, inline: str = "", file: Optional[str] = None, count: int = 0):
        self.inline = parse_usage(inline)
        check_entries(self.inline, count, "GFLOW_FAKE_GPUS")
        self.file = file or None
        self.count = count

    @property
    def active(self) -> bool:
        return bool(self.inline) or self.file is not None

    def _file_entries(self) -> list[SimEntry]:
        if self.file is None:
            return []
        try:
            with open(self.file, "rb") as f:
                text = f.read(_MAX_FILE_BYTES).decode(errors="replace")
        except OSError:
            return []           # no file yet: no usage (as the NVML stub's busy file)
        try:
            entries = parse_usage(text, f"GFLOW_FAKE_GPU_PROCS ({self.file})")
        except ParseError:
            return []           # a test half way through rewriting it: next poll
        return [e for e in entries if e.gpu < self.count]

    def current(self) -> dict[int, GpuUsage]:
        """GPU index -> usage, for every GPU (zero where nothing is in use)."""
        per_gpu: dict[int, list[SimEntry]] = {i: [] for i in range(self.count)}
        for e in self.inline + self._file_entries():
            if e.pid is not None and not pid_alive(e.pid):
                continue
            per_gpu[e.gpu].append(e)
        out = {}
        for index, entries in per_gpu.items():
            procs = {}
            for e in entries:
                if e.pid is None:
                    continue
                used, util = procs.get(e.pid, (0, None))
                procs[e.pid] = (used + e.used_mb,
                                e.util if util is None else (util if e.util is None
                                                             else util + e.util))
            util_total = sum(u for _, u in procs.values() if u is not None)
            out[index] = GpuUsage(
                used_mb=sum(e.used_mb for e in entries),
                utilization=min(100, util_total),
                processes=tuple((pid, used, util) for pid, (used, util)
                                in sorted(procs.items())))
        return out
