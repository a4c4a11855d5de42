"""File primitives shared by the WAL, snapshot and journal: full writes, fsyncs, copies aside."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from gflow.errors import StoreError

# Store.fault's hook, bound: check_fault(op, path) raises the OSError a test injects.
FaultCheck = Callable[[str, Path], None]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: decoding or encoding 100k jobs allocates
    millions of objects and no cycles, and the collections those allocations trigger
    (each older generation walking every object made so far) cost as much as the work."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def trim_heap() -> None:
    """glibc's malloc_trim(0): return the free memory at the top of the heap (and of
    its arenas) to the system, as after a load (a few MB at 100k jobs); a no-op where
    there is no such call."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None)
        except OSError:
            _libc = False
    trim = getattr(_libc, "malloc_trim", None) if _libc else None
    if trim is not None:
        trim(0)


_libc = None


def replace_unsynced(path: Path, data: Optional[bytes]) -> bool:
    """Best effort, never fsynced: `path` becomes `data` for every reader at once (a temp
    file renamed over it); True if it did. When that fails, or `data` is None, nothing is
    left at `path` (nor the temp file): it is for files that describe another one (the
    snapshot's sum, its load cache), where a stale copy must never remain."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        if data is None:
            raise FileNotFoundError("nothing to write")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return True
    except OSError:
        for p in (tmp, path):
            try:
                os.unlink(p)
            except OSError:
                pass
        return False


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until every byte is written (pwrite may write fewer than asked)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that a file created or renamed in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, op: str, *, fsync: bool,
                 check_fault: FaultCheck) -> None:
    """Replace `path` with `data` via a temp file and rename; StoreError on failure."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        check_fault(op, path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a leftover temp file may have other bits
            pwrite_all(fd, data, 0)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StoreError(f"cannot write {path}: {e.strerror or e}") from e


def copy_aside(path: Path, kind: str) -> Optional[str]:
    """Copy `path` to `<name>.<kind>.<secs>` (mode 0600); its path, or None if that failed."""
    dst = path.with_name(f"{path.name}.{kind}.{int(time.time())}")
    try:
        shutil.copyfile(path, dst)
        os.chmod(dst, 0o600)
    except OSError:
        return None
    return str(dst)
