"""A fork server for job monitors: a pre-imported process that forks one per job.

Starting `python -m gflow.launcher.monitor` costs a new interpreter (~30 ms, most of a
dependent job's start latency). The launcher instead starts this module once as a
child (`python -m gflow.launcher.zygote`, a fresh single-threaded interpreter: never a
fork of the threaded launcher) that imports the monitor and waits on its stdin. For each
job the launcher writes the spec path; the zygote forks, the child becomes exactly what
`python -m gflow.launcher.monitor <spec>` would be (its own session, /dev/null on fds
0-2, no other fd, default signal handlers, then `monitor.main`), and the zygote answers
with the child's pid and start time. The zygote reaps its children and tells the
launcher how each ended, so the launcher watches them as it watches a Popen
(`ZygoteChild.poll()`), "killed by SIGKILL" included.

The fork itself is kept off a job's start too: the zygote holds one monitor forked ahead
(a spare: detached, its signal handlers and subreaper set, its first Popen's copy-on-write
faults paid) blocked on a pipe, hands it the spec path of the next request (one write),
answers at once, and forks the next spare. With no spare at hand (killed, or requests
faster than spares) it forks as before. A spare whose pipe reaches EOF (the zygote ended
or gave up on it) exits having run nothing.

Protocol, one ASCII line each: launcher -> zygote `<spec path as hex>`; zygote ->
launcher `r <pid>` once (imported), `p <pid> <start time|None>` (forked), `e <errno>`
(fork failed), `x <pid> <returncode>` (a child ended, always after its `p`).

The zygote exits when its stdin reaches EOF (the launcher closed it or died): its
running monitors are re-parented like the launcher's own would be, and the next
launcher adopts them from their pid files. When the zygote is missing or dies, the
launcher falls back to Popen (`spawn` returns NOT_SENT) and starts a new one.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from typing import Optional

from gflow.procexit import exit_now

# Switch: False starts every monitor as a new interpreter (Popen), as before the zygote.
ENABLED = True
# The zygote keeps one monitor forked ahead (a "spare", detached and waiting on a pipe
# for its spec path): a job's start then pays neither the fork nor the child's first
# page faults (~1.5 ms). False forks each monitor on request.
SPARE = True
# How long a spawn waits for the zygote's answer (it may still be importing).
SPAWN_TIMEOUT_SECS = 10.0
# A zygote that dies is restarted at most this often; one that dies this many times in
# a row before answering is given up on (every monitor then starts through Popen).
RESTART_MIN_SECS = 1.0
MAX_EARLY_DEATHS = 3

NOT_SENT = "not-sent"     # no zygote took the request: start the monitor another way
UNKNOWN = "unknown"       # sent, no answer: a monitor may be running (its pid file tells)

log = logging.getLogger("gflow.launcher")


# --- the launcher's side -----------------------------------------------------------------

class ZygoteChild:
    """A monitor forked by the zygote, watched like a subprocess.Popen (pid, poll())."""

    def __init__(self, pid: int, start: Optional[float]):
        self.pid = pid
        self.start = start              # its start time, as psutil's create_time()
        self.returncode: Optional[int] = None
        # Its zygote died before reporting its end: only its pid can tell from now on
        # (the launcher then watches it as an adopted monitor).
        self.orphaned = False

    def poll(self) -> Optional[int]:
        if self.returncode is None and self.orphaned and not _running(self.pid, self.start):
            self.returncode = 0         # gone, how unknown (no one tells us now)
        return self.returncode


def _running(pid: int, start: Optional[float]) -> bool:
    from gflow.launcher.monitor import process_start_time
    now = process_start_time(pid)
    if now is None or (start is not None and abs(now - start) > 1.0):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")
    except (OSError, ValueError):
        return False


class _Zygote:
    """One zygote process and what it told us."""

    command = [sys.executable, "-m", "gflow.launcher.zygote"]

    def __init__(self):
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        self.pid = self.proc.pid
        self.replies: queue.Queue = queue.Queue()
        self.children: dict[int, ZygoteChild] = {}
        self.ready = False
        self.dead = False
        self.guard = threading.Lock()     # children / dead, between reader and spawn
        # The reader holds only a weak reference: a forgotten launcher's zygote gets
        # EOF (its stdin closed on collection) and exits.
        self.reader = threading.Thread(target=_read, daemon=True, name=f"zygote-{self.pid}",
                                       args=(self.proc.stdout, weakref.ref(self)))
        self.reader.start()

    def on_line(self, line: bytes) -> None:
        kind, _, rest = line.decode("ascii", "replace").partition(" ")
        args = rest.split()
        if kind == "r":
            self.ready = True
        elif kind == "p" and len(args) == 2:
            start = None if args[1] == "None" else float(args[1])
            child = ZygoteChild(int(args[0]), start)
            with self.guard:
                self.children[child.pid] = child
            self.replies.put(child)
        elif kind == "e":
            self.replies.put(NOT_SENT)
        elif kind == "x" and len(args) == 2:
            with self.guard:
                child = self.children.pop(int(args[0]), None)
            if child is not None:
                child.returncode = int(args[1])

    def on_eof(self) -> None:
        with self.guard:
            self.dead = True
            for child in self.children.values():
                child.orphaned = True
            self.children.clear()
        self.replies.put(None)

    def spawn(self, spec_path: str):
        request = os.fsencode(spec_path).hex().encode() + b"\n"
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return NOT_SENT
        try:
            reply = self.replies.get(timeout=SPAWN_TIMEOUT_SECS)
        except queue.Empty:
            log.error("the monitor zygote (pid %d) did not answer in %gs: killing it",
                      self.pid, SPAWN_TIMEOUT_SECS)
            self.kill()
            return UNKNOWN
        if reply is None:       # it died: before it was ready it cannot have forked
            return UNKNOWN if self.ready else NOT_SENT
        return reply

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.close(wait=1.0)

    def close(self, wait: float = 2.0) -> None:
        try:
            self.proc.stdin.close()       # EOF: it exits (its monitors carry on)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # What it wrote before it ended is read (ends of monitors); then every monitor
        # it has not reported is orphaned, even if the reader could not say so.
        self.reader.join(timeout=wait)
        self.on_eof()


def _read(stream, ref) -> None:
    while True:
        try:
            line = stream.readline()
        except (OSError, ValueError):
            line = b""
        zygote = ref()
        if zygote is None:
            return
        if not line:
            zygote.on_eof()
            return
        zygote.on_line(line.rstrip(b"\n"))
        del zygote


class ForkServer:
    """The launcher's handle on its zygote: started, replaced when it dies, closed."""

    def __init__(self):
        self.zygote: Optional[_Zygote] = None
        self.lock = threading.Lock()
        self.next_start = 0.0
        self.early_deaths = 0
        self.given_up = False
        self.started = False

    def start(self) -> bool:
        """Have a live zygote (a dead one is reaped and replaced, rate-limited)."""
        with self.lock:
            self.started = True
            return self._ensure()

    def _ensure(self) -> bool:
        z = self.zygote
        if z is not None and z.alive():
            return True
        if z is not None:
            self.zygote = None
            z.close(wait=1.0)               # reap it
            log.warning("the monitor zygote (pid %d) ended (%s)", z.pid, z.proc.returncode)
            self.early_deaths = 0 if z.ready else self.early_deaths + 1
            if self.early_deaths >= MAX_EARLY_DEATHS:
                self.given_up = True
                log.error("the monitor zygote keeps dying before it is ready: monitors "
                          "start as new interpreters from now on")
        if self.given_up or time.monotonic() < self.next_start:
            return False
        self.next_start = time.monotonic() + RESTART_MIN_SECS
        try:
            self.zygote = _Zygote()
        except OSError as exc:
            log.error("cannot start the monitor zygote: %s", exc)
            return False
        log.debug("monitor zygote started pid=%d", self.zygote.pid)
        return True

    def spawn(self, spec_path: str):
        """A ZygoteChild; NOT_SENT (no zygote took it: start it otherwise); UNKNOWN (sent,
        no answer: a monitor may be running, and must not be started twice)."""
        with self.lock:
            self.started = True
            if not self._ensure():
                return NOT_SENT
            return self.zygote.spawn(spec_path)

    def maintain(self) -> None:
        """A dead zygote is replaced between jobs, not on the next job's time."""
        z = self.zygote
        if self.started and not self.given_up and (z is None or not z.alive()):
            self.start()

    def close(self) -> None:
        with self.lock:
            z, self.zygote = self.zygote, None
            self.given_up = True
        if z is not None:
            z.close()


# --- the zygote's side -------------------------------------------------------------------

def _say(fd: int, text: str) -> None:
    data = (text + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _detach(keep: int = -1) -> None:
    """In a forked child: its own session, default signal handlers, /dev/null on fds 0-2
    and no other fd (but `keep`), as `python -m gflow.launcher.monitor` would have."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _run_monitor(spec_path: str) -> None:
    """Become the job's monitor; never returns."""
    rc = 1
    try:
        from gflow.launcher import monitor
        rc = monitor.main(["gflow-monitor", spec_path])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        rc = 1
    finally:
        exit_now(rc)    # what the interpreter's exit would do (coverage saves its data)


def _child(spec_path: str) -> None:
    """In the forked child: become what `python -m gflow.launcher.monitor` would be."""
    try:
        _detach()
    except BaseException:
        os._exit(1)
    _run_monitor(spec_path)


def _spare(inp: int) -> None:
    """A monitor forked ahead of its job: detached, it waits for its spec path on `inp`
    (one hex line). EOF (the zygote ended, or retired it) ends it having run nothing."""
    try:
        _detach(keep=inp)
        try:
            import setproctitle
            setproctitle.setproctitle("gflowd: launcher zygote (spare monitor)")
        except ImportError:
            pass
        from gflow.launcher import monitor
        monitor.prepare(warm=True)
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(inp, 4096)
            if not chunk:
                os._exit(0)
            data += chunk
        os.close(inp)
        spec_path = _spec_path(data)
    except BaseException:
        os._exit(1)
    _run_monitor(spec_path)


class _Spare:
    """The zygote's monitor forked ahead of time (its pid, start time, pipe)."""

    def __init__(self, pid: int, start: Optional[float], pipe: int):
        self.pid, self.start, self.pipe = pid, start, pipe

    def hand(self, line: bytes) -> bool:
        """Give it its job; False if it is gone (it never starts anything then)."""
        try:
            os.write(self.pipe, line + b"\n")      # < PIPE_BUF: all at once
            return True
        except OSError:
            return False
        finally:
            self.retire()

    def retire(self) -> None:
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1


def _fork_spare() -> Optional[_Spare]:
    from gflow.launcher import monitor
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:
        _spare(r)               # never returns
    os.close(r)
    return _Spare(pid, monitor.process_start_time(pid), w)


def _reap(out: int) -> set:
    """Reap every ended child (each reported to the launcher); their pids."""
    ended = set()
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.add(pid)
        _say(out, f"x {pid} {os.waitstatus_to_exitcode(status)}")


def _spec_path(line: bytes) -> str:
    """The spec path a request line names (hex, see the protocol); ValueError if none."""
    return os.fsdecode(bytes.fromhex(line.decode("ascii")))


def _start(line: bytes, spare: Optional[_Spare]) -> str:
    """Start the monitor of one request: through the spare if it takes it, else forked
    now. The answer for the launcher."""
    from gflow.launcher import monitor
    try:
        spec_path = _spec_path(line)
    except ValueError:
        if spare is not None:
            spare.retire()      # (it ends unused: nothing else could have been sent it)
        return "e 22"
    if spare is not None and spare.hand(line):
        return f"p {spare.pid} {spare.start!r}"
    try:
        pid = os.fork()
    except OSError as exc:
        return f"e {exc.errno}"
    if pid == 0:
        _child(spec_path)          # never returns
    return f"p {pid} {monitor.process_start_time(pid)!r}"


def serve(inp: int = 0, out: int = 1) -> None:
    from gflow.launcher import monitor  # noqa: F401 - what every child runs
    # What is imported now is shared with every child: no collection of theirs walks
    # (and so copies) it.
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    signal.set_wakeup_fd(wake_w)
    parent = os.getppid()
    _say(out, f"r {os.getpid()}")
    pending = b""
    spare: Optional[_Spare] = None
    spare_at = 0.0
    try:
        while True:
            if SPARE and spare is None and time.monotonic() >= spare_at:
                spare = _fork_spare()
            ready, _, _ = select.select([inp, wake_r], [], [], 1.0)
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            ended = _reap(out)
            if spare is not None and spare.pid in ended:
                spare.retire()                # it died unused (killed): another, later
                spare, spare_at = None, time.monotonic() + RESTART_MIN_SECS
            if inp in ready:
                data = os.read(inp, 65536)
                if not data:
                    return                        # the launcher is gone or closed us
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    _say(out, _start(line, spare))
                    spare = None
            if os.getppid() != parent:
                return
    finally:
        if spare is not None:                 # EOF: it ends at once, unused
            spare.retire()
            try:
                os.waitpid(spare.pid, 0)
            except ChildProcessError:
                pass


def main() -> int:
    os.environ.setdefault("SPT_NOENV", "1")      # keep /proc/<pid>/environ readable
    try:
        import setproctitle
        setproctitle.setproctitle("gflowd: launcher zygote")
    except ImportError:
        pass
    try:
        serve()         # (it imports the monitor, and with it all the monitor imports)
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
