"""Why a job died: one line from the tail of its log (CUDA out of memory, NCCL errors, the OOM killer, a Python exception)."""

# Only the last TAIL_BYTES of the log are read (a job may write gigabytes), through the
# same no-symlink, regular-file-only open as every other file in the logs directory.
# The causes are tried from the most specific to the most general: a CUDA OOM usually
# *is* the last exception of a traceback, and saying "CUDA out of memory" beats quoting
# the exception's class name.

from __future__ import annotations

import os
import re
import stat
from typing import Optional

TAIL_BYTES = 64 * 1024
MAX_CHARS = 200          # the diagnosis is one sentence in reason_detail and notifications

_CUDA_OOM = re.compile(
    r"CUDA out of memory|CUDA error: out of memory|cudaErrorMemoryAllocation|"
    r"CUBLAS_STATUS_ALLOC_FAILED|OutOfMemoryError|RESOURCE_EXHAUSTED: Out of memory|"
    r"OOM when allocating tensor", re.IGNORECASE)
_TRIED = re.compile(r"Tried to allocate ([\d.]+ ?[KMGT]i?B)", re.IGNORECASE)
_ON_GPU = re.compile(r"GPU (\d+)[;:,) ]")
_GPU_TOTAL = re.compile(r"([\d.]+ ?[KMGT]i?B) total capacity|has\s+a\s+total\s+capacity\s+"
                        r"of\s+([\d.]+ ?[KMGT]i?B)", re.IGNORECASE)
_NCCL = re.compile(r"NCCL error|nccl\w*Error|ncclUnhandledCudaError|ncclSystemError|"
                   r"ncclInternalError|ncclInvalidUsage|ncclRemoteError|"
                   r"Watchdog caught collective operation timeout|NCCL WARN", re.IGNORECASE)
# bash: "line 3:  4242 Killed   python train.py"; a plain "Killed" from a shell.
_KILLED = re.compile(r"(^|\s)\d+\s+Killed\b|^Killed\b|Out of memory: Killed process",
                     re.MULTILINE)
_CUDA_ERROR = re.compile(r"CUDA error: ([^\n]+)|CUDA driver initialization failed[^\n]*|"
                         r"no CUDA-capable device is detected|"
                         r"No CUDA GPUs are available", re.IGNORECASE)
_OURS = re.compile(r"^gflow: (.+)$")
_SEGV = re.compile(r"Segmentation fault|Bus error|Illegal instruction|core dumped")
_TRACEBACK = "Traceback (most recent call last):"
# The exception line ending a traceback: "ValueError: bad", "pkg.mod.Err", "KeyboardInterrupt".
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(:.*)?$")
KILLED = "killed (SIGKILL)"
_RANK = re.compile(r"^\[(?:rank|default)\d+\]:\s?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def read_tail(path, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of a regular file (never through a symlink), as text;
    "" when it cannot be read."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        start = max(0, st.st_size - limit)
        chunks, left = [], st.st_size - start
        while left > 0:
            chunk = os.pread(fd, min(left, 65536), start)
            if not chunk:
                break
            chunks.append(chunk)
            start += len(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError:
        return ""
    finally:
        os.close(fd)
    # Progress bars rewrite one line with \r: only what was left on screen counts.
    text = data.decode("utf-8", errors="replace")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _clean(text: str) -> str:
    text = _CONTROL.sub(" ", text).strip()
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 3] + "..."


def _last(pattern: re.Pattern, lines: list) -> Optional[str]:
    for line in reversed(lines):
        if pattern.search(line):
            return line
    return None


def last_exception(lines: list) -> Optional[str]:
    """The exception line of the last Python traceback in `lines`, if any."""
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == _TRACEBACK or lines[i].endswith(_TRACEBACK):
            start = i
            break
    if start is None:
        return None
    found = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        if line.startswith((" ", "\t")):
            if found is not None:
                break             # a new indented block: a chained traceback or other output
            continue
        if line.strip() in ("^", "~") or line.startswith(("During handling", "The above")):
            break
        if _EXC_LINE.match(line.strip()):
            found = line.strip()
            # Exception messages may run over several lines: the first one names it.
            break
    return found


def diagnose(text: str) -> Optional[str]:
    """One line naming the cause the log's tail shows, or None."""
    if not text:
        return None
    # torchrun and friends prefix every line of a worker with its rank.
    lines = [_RANK.sub("", line) for line in text.splitlines()]
    # Our own wrappers (conda activation) say why they gave up before the job ran.
    ours = _last(_OURS, lines)
    if ours is not None:
        return _clean(_OURS.search(ours).group(1))
    oom = _last(_CUDA_OOM, lines)
    if oom is not None:
        out = "CUDA out of memory"
        tried = _TRIED.search(oom)
        gpu = _ON_GPU.search(oom)
        total = _GPU_TOTAL.search(oom)
        facts = []
        if tried:
            facts.append(f"tried to allocate {tried.group(1)}")
        if gpu:
            facts.append(f"GPU {gpu.group(1)}")
        if total:
            facts.append(f"{total.group(1) or total.group(2)} total")
        return _clean(out + (f" ({', '.join(facts)})" if facts else ""))
    nccl = _last(_NCCL, lines)
    if nccl is not None:
        line = nccl.strip()
        # Keep the message, not the source location prefix torch puts first.
        m = re.search(r"(NCCL error.*|nccl\w*Error.*|Watchdog caught.*)", line, re.IGNORECASE)
        return _clean("NCCL: " + (m.group(1) if m else line))
    cuda = _last(_CUDA_ERROR, lines)
    if cuda is not None:
        m = _CUDA_ERROR.search(cuda)
        return _clean(m.group(0))
    if _KILLED.search("\n".join(lines)):
        return KILLED + ", most likely by the kernel's out-of-memory killer"
    exc = last_exception(lines)
    if exc is not None:
        return _clean(exc)
    segv = _last(_SEGV, lines)
    if segv is not None:
        return _clean(_SEGV.search(segv).group(0))
    return None


def scan_log(path) -> Optional[str]:
    return diagnose(read_tail(path))


def explain_exit(info: dict, log_path) -> dict:
    """The exit report with the log's diagnosis added to its detail, for a job that
    failed (a non-zero code or a signal); unchanged otherwise."""
    code, sig = info.get("exit_code"), info.get("signal")
    if not sig and (code is None or code == 0):
        return info
    found = scan_log(log_path)
    if not found:
        return info
    base = info.get("detail") or f"exit code {code}"
    if found in base:
        return info
    if found.startswith(KILLED) and base == "killed by SIGKILL":
        return dict(info, detail=base + found[len(KILLED):])
    return dict(info, detail=f"{base}: {found}")
