"""Files in the logs directory, opened relative to a directory fd and never through a symlink."""

from __future__ import annotations

import errno
import json
import os
import stat

# O_NONBLOCK: a FIFO planted at the path must not block the open (ENXIO without a
# reader); the fstat check then refuses anything that is not a regular file.
_WRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafeFile(OSError):
    """A file gflow refuses to use; str() is one sentence for the job's reason detail."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def open_dir(path) -> int:
    """A directory fd: every later name is resolved inside it, so renaming or replacing
    the directory's path afterwards cannot redirect a write."""
    return os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _split(path) -> tuple[str, str]:
    directory, name = os.path.split(os.fspath(path))
    return directory or ".", name


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_json_atomic(path, data, before_sync=None, durable: bool = True) -> None:
    """Write `data` as JSON to `path` atomically: a fresh temp file (O_EXCL|O_NOFOLLOW, an
    unguessable name: a planted `*.tmp` symlink is never opened), fsynced, renamed over
    the target (rename replaces a symlink there, it never follows it).

    With `before_sync`, it is called once the file is in place, before the fsyncs (the
    file is whole for every reader at once; only a power loss before the fsyncs end can
    lose it, or leave it empty). Not `durable`: no fsync at all (still atomic for every
    reader and against any process's death; a power loss may lose it)."""
    directory, name = _split(path)
    payload = json.dumps(data).encode()
    dfd = open_dir(directory)
    try:
        for _ in range(16):
            tmp = f"{name}.tmp.{os.getpid()}.{os.urandom(4).hex()}"
            try:
                fd = os.open(tmp, _WRITE_FLAGS | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name", f"{path}.tmp.*")
        try:
            _write_all(fd, payload)
            if before_sync is None and durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            if before_sync is not None:
                before_sync()
                if durable:
                    os.fsync(fd)
        finally:
            os.close(fd)
        if not durable:
            return
        try:
            os.fsync(dfd)            # the rename itself survives a crash
        except OSError:
            pass
    finally:
        os.close(dfd)


def read_json(path):
    """The JSON in `path`, or None if it is missing, unreadable, not a regular file or
    a symlink (a planted link must not make us read someone else's "status")."""
    try:
        fd = os.open(os.fspath(path), _READ_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def open_job_log(path, group: int | None = None) -> int:
    """Open (creating) a job's log for appending; returns the fd. Refuses (UnsafeFile) a
    symlink, anything but a regular file, a file with other hard links (a link to
    someone's file planted at the path) and a file another account owns.

    With `group` (a job run as another account): the log stays owned by gflowd's account
    and becomes 0640 with that group, so the job's user can read it but cannot write,
    truncate or chmod it except through the stdout the job inherits (O_APPEND); the
    account cannot replace the file either (the logs directory is gflowd's, 0700).
    """
    directory, name = _split(path)
    dfd = open_dir(directory)
    try:
        try:
            fd = os.open(name, _WRITE_FLAGS | os.O_CREAT | os.O_APPEND, 0o600, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFile(errno.ELOOP, f"the job's log {path} is a symbolic link: "
                                              "refusing to write through it") from None
            if exc.errno == errno.ENXIO:
                raise UnsafeFile(errno.ENXIO, f"the job's log {path} is not a regular "
                                              "file") from None
            raise
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(errno.EINVAL, f"the job's log {path} is not a regular file")
        if st.st_nlink != 1:
            raise UnsafeFile(errno.EMLINK, f"the job's log {path} has other hard links: "
                                           "refusing to write to it")
        if st.st_uid != os.geteuid():
            raise UnsafeFile(errno.EPERM, f"the job's log {path} belongs to uid "
                                          f"{st.st_uid}, not to gflowd's account")
        if group is not None:
            if st.st_gid != group:
                os.fchown(fd, -1, group)
            os.fchmod(fd, 0o640)
        os.set_blocking(fd, True)     # the job inherits the fd: no surprise O_NONBLOCK
        return fd
    except BaseException:
        os.close(fd)
        raise
