"""Logging shared by the daemon and the clients: level names, GFLOW_LOG/RUST_LOG, and the
daemon's size-rotated log file.

How the daemon log is written (DESIGN.md §6, docs/operations.md):
- Every daemon process (master and workers) appends to `logs/gflowd.log` through its own
  `LogFile` handler, opened with O_APPEND: each record is one write(2), so lines of
  different processes do not tear.
- Only the master rotates: about once a second it checks the size against
  `[logging] max_bytes` and renames `gflowd.log` -> `.1` -> `.2` ... (`backups` kept).
- Every handler stats the path before each record (WatchedFileHandler) and reopens the
  file when it was renamed away, so the records after a rotation land in the new file.
- When the process's stderr (and stdout) is that log file (a daemon started by
  `gflowd up`), the handler moves fd 1 and 2 along with it on reopen, and a thread checks
  every 2 s even when the process logs nothing, so tracebacks, faulthandler dumps and
  stray prints follow the rotation too.
- Every record is one line of printable text (SafeFormatter): control characters in a
  message, which may quote fields a submitter chose, are written as `\\xNN`.

Stdlib only: clients import it only when GFLOW_LOG or RUST_LOG is set.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import time
from typing import Mapping, Optional

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: From the quietest to the most verbose; -q/-v move along it.
LADDER = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG, TRACE)
NAMES = {"off": logging.CRITICAL + 10, "critical": logging.CRITICAL, "error": logging.ERROR,
         "warn": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO,
         "debug": logging.DEBUG, "trace": TRACE}
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
CLIENT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# Control characters (C0, DEL, C1) in a record, shown as `\xNN` like gflow.cli.render.safe
# (the daemon may not import the clients, hence a second copy of the rule).
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with every control character except those in `keep` written as `\\xNN`."""
    if text.isprintable():
        return text
    return _CONTROL_RE.sub(
        lambda m: m.group() if m.group() in keep else f"\\x{ord(m.group()):02x}", text)


class SafeFormatter(logging.Formatter):
    """A Formatter that writes each record's message as one line of printable text.

    Log messages carry job fields that submitters choose (`user=`, `detail="..."`): a
    newline in one would forge a whole log line, an ESC would drive the terminal of whoever
    tails the log. The message is escaped after its arguments are merged in, so every
    argument (and any caller that formats its own text) is covered; tracebacks keep their
    newlines but lose every other control character.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return escape_controls(super().formatException(ei), keep="\n")

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep="\n")


def level_from_name(name: Optional[str]) -> Optional[int]:
    if name is None:
        return None
    return NAMES.get(name.strip().lower())


def parse_level_spec(text: Optional[str]) -> Optional[int]:
    """A level from an env_logger-style spec: `debug`, `gflow=debug`, `warn,gflow=trace`.

    A directive for `gflow` (or `gflow::...`/`gflow.*`) wins over a bare level; other
    targets are ignored. Unknown words give None (the variable is ignored).
    """
    if not text or not text.strip():
        return None
    bare: Optional[int] = None
    ours: Optional[int] = None
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        part = part.split("/", 1)[0]              # env_logger's `/regex` filter
        if "=" in part:
            target, _, name = part.partition("=")
            target = target.strip()
            if target == "gflow" or target.startswith(("gflow::", "gflow.")):
                level = level_from_name(name)
                if level is not None:
                    ours = level
        else:
            level = level_from_name(part)
            if level is not None:
                bare = level
    return ours if ours is not None else bare


def env_level(env: Optional[Mapping[str, str]] = None, *,
              rust_fallback: bool = True) -> Optional[int]:
    """GFLOW_LOG, else (for clients) RUST_LOG; None when neither names a level."""
    env = os.environ if env is None else env
    level = parse_level_spec(env.get("GFLOW_LOG"))
    if level is None and rust_fallback:
        level = parse_level_spec(env.get("RUST_LOG"))
    return level


def shift(level: int, verbose: int = 0, quiet: int = 0) -> int:
    """Move `level` one step per -v (more output) or -q (less) along LADDER."""
    if verbose == quiet:
        return level
    try:
        i = LADDER.index(level)
    except ValueError:
        i = min(range(len(LADDER)), key=lambda k: abs(LADDER[k] - level))
    return LADDER[max(0, min(len(LADDER) - 1, i + verbose - quiet))]


def daemon_level(config_level: Optional[str], verbose: int = 0, quiet: int = 0,
                 env: Optional[Mapping[str, str]] = None) -> int:
    """The daemon's level: `[logging] level` < GFLOW_LOG, then moved by -v/-q.

    RUST_LOG is not read here: it is often set for unrelated Rust programs."""
    base = env_level(env, rust_fallback=False)
    if base is None:
        base = level_from_name(config_level)
    if base is None:
        base = logging.INFO
    return shift(base, verbose, quiet)


# --- the daemon log file -----------------------------------------------------------------

def same_file(fd: int, path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class LogFile(logging.handlers.WatchedFileHandler):
    """Appends to `path` (mode 0600, O_APPEND); reopens it when another process rotated it.

    `follow_fds` (e.g. (1, 2)) are pointed at the newly opened file on every reopen.
    """

    def __init__(self, path, follow_fds: tuple[int, ...] = ()):
        self.follow_fds = tuple(follow_fds)
        super().__init__(str(path), mode="a", encoding="utf-8", errors="backslashreplace")
        self._follow()

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def reopenIfNeeded(self):
        before = self.stream
        super().reopenIfNeeded()
        if self.stream is not before:
            self._follow()

    def _follow(self) -> None:
        if not self.follow_fds or self.stream is None:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        for fd in self.follow_fds:
            try:
                os.dup2(self.stream.fileno(), fd)
            except OSError:
                pass


#: How often a process whose stderr is the log checks for a rotation even when it logs
#: nothing (so a traceback or a faulthandler dump lands in the current file).
FOLLOW_SECS = 2.0


def follow_rotations(handler: LogFile, interval: float = FOLLOW_SECS) -> None:
    import threading

    def loop() -> None:
        while True:
            time.sleep(interval)
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.reopenIfNeeded()
            except (OSError, ValueError):
                pass
            finally:
                handler.release()

    threading.Thread(target=loop, name="log-follow", daemon=True).start()


def rotate(path, max_bytes: int, backups: int) -> bool:
    """Rename `path` to `path.1` (older ones shift up, `backups` kept) once it holds at
    least `max_bytes`; with `backups` 0 the old content is dropped. `max_bytes` 0 never
    rotates. True when it rotated. Writers reopen the path on their next record."""
    if max_bytes <= 0:
        return False
    path = str(path)
    try:
        if os.path.getsize(path) < max_bytes:
            return False
    except OSError:
        return False
    try:
        if backups <= 0:
            os.unlink(path)
            return True
        for n in range(backups - 1, 0, -1):
            src = f"{path}.{n}"
            if os.path.exists(src):
                os.replace(src, f"{path}.{n + 1}")
        os.replace(path, f"{path}.1")
    except OSError:
        return False
    return True


def configure_daemon_logging(level: int, log_file=None, *,
                             process_name: Optional[str] = None,
                             stderr_is_log: Optional[bool] = None) -> Optional[LogFile]:
    """Root logging for one daemon process: the log file (when given) and/or stderr.

    When stderr already is the log file (started by `gflowd up`), only the file handler
    is installed and it carries fds 1 and 2 along on rotation; otherwise records go to
    stderr as well (a terminal, or the journal under systemd). `stderr_is_log` None: find
    out (the master does); workers are told what the master found, because the stderr
    they inherit may lag behind a rotation for a moment."""
    import multiprocessing
    if process_name:
        multiprocessing.current_process().name = process_name
    handlers: list[logging.Handler] = []
    file_handler: Optional[LogFile] = None
    follow = False
    if log_file is not None:
        follow = same_file(2, log_file) if stderr_is_log is None else bool(stderr_is_log)
        try:
            file_handler = LogFile(log_file, follow_fds=(1, 2) if follow else ())
            handlers.append(file_handler)
        except OSError as exc:
            print(f"gflowd: cannot open the log file {log_file}: {exc.strerror or exc}",
                  file=sys.stderr)
            follow = False
    if not follow:
        handlers.append(logging.StreamHandler(sys.stderr))
    elif file_handler is not None:
        follow_rotations(file_handler)
    formatter = SafeFormatter(LOG_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    return file_handler


def configure_client_logging(level: int) -> None:
    """A client's log records on stderr (GFLOW_LOG=debug gqueue)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(CLIENT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
