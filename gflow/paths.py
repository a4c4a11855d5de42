"""Where gflow keeps its files, following the XDG base directory rules (DESIGN.md §6)."""

from __future__ import annotations

import os

from gflow.record import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from pathlib import Path
    from typing import Mapping, Optional

# pathlib is imported where a Path is made (Paths.from_env): a client command that only
# looks for the daemon's socket (client_socket_paths) does without it (~3 ms of imports:
# pathlib, fnmatch, urllib.parse, ipaddress).

# SYSTEM_RUNTIME_DIR (a Path, made on first use by __getattr__) is not listed: linters
# cannot see it.
__all__ = ["Paths", "DEFAULT_PORT", "socket_name", "client_socket_paths"]

DEFAULT_PORT = 59000
# Where the system service (contrib/systemd/gflowd-system.service) puts its socket;
# clients of every account look there too, so nobody has to configure anything.
# SYSTEM_RUNTIME_DIR is that as a Path (made on first use, see __getattr__).
_SYSTEM_RUNTIME = "/run/gflow"


def __getattr__(name: str):
    if name == "SYSTEM_RUNTIME_DIR":
        from pathlib import Path
        return Path(_SYSTEM_RUNTIME)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def socket_name(port: int) -> str:
    """`gflowd.sock` for the default port; a daemon on another port has its own name, so
    a client never reaches a daemon other than the one its port names."""
    return "gflowd.sock" if port == DEFAULT_PORT else f"gflowd-{int(port)}.sock"


def _home(env: Mapping[str, str]) -> str:
    home = env.get("HOME")
    if home:
        return home
    import pwd
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # pragma: no cover - a uid without a passwd entry
        return "/"


def _xdg(env: Mapping[str, str], var: str, home: str, default: str) -> str:
    """`$VAR` when set to an absolute path (relative values are ignored, as XDG says)."""
    value = env.get(var)
    if value and os.path.isabs(value):
        return value
    return os.path.join(home, default)


def _clean(path: str) -> str:
    """str(pathlib.PurePosixPath(path)) without pathlib: no empty or `.` parts, no trailing
    slash, a leading `//` kept (POSIX leaves its meaning to the system), `///...` is `/`."""
    if path.startswith("/"):
        root = "//" if path.startswith("//") and not path.startswith("///") else "/"
    else:
        root = ""
    return root + "/".join(part for part in path.split("/") if part and part != ".") or "."


def client_socket_paths(port: int, env: Optional[Mapping[str, str]] = None) -> list[str]:
    """`[str(p) for p in Paths.from_env(env).client_sockets(port)]`, without pathlib: where
    a client looks for the daemon on `port`, this account's socket, then the system's."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR") or ""
    base = runtime if os.path.isabs(runtime) else _xdg(env, "XDG_DATA_HOME", _home(env),
                                                         ".local/share")
    name = socket_name(port)
    return [_clean(os.path.join(base, "gflow", name)), f"{_SYSTEM_RUNTIME}/{name}"]


class Paths(FrozenRecord):
    """Every file of one gflow installation; all derived from HOME and the XDG variables.

    Immutable, compared and hashed by its four directories (record.FrozenRecord).
    """

    __match_args__ = _field_names = ("config_dir", "data_dir", "state_dir", "runtime_dir")

    config_dir: Path
    data_dir: Path
    state_dir: Path
    runtime_dir: Optional[Path]                     # $XDG_RUNTIME_DIR/gflow when set

    def __init__(self, config_dir: Path, data_dir: Path, state_dir: Path,
                 runtime_dir: Optional[Path] = None) -> None:
        self._init(config_dir=config_dir, data_dir=data_dir, state_dir=state_dir,
                   runtime_dir=runtime_dir)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Paths":
        from pathlib import Path
        env = os.environ if env is None else env
        home = _home(env)
        return cls(
            config_dir=Path(_xdg(env, "XDG_CONFIG_HOME", home, ".config"), "gflow"),
            data_dir=Path(_xdg(env, "XDG_DATA_HOME", home, ".local/share"), "gflow"),
            state_dir=Path(_xdg(env, "XDG_STATE_HOME", home, ".local/state"), "gflow"),
            runtime_dir=(Path(env["XDG_RUNTIME_DIR"], "gflow")
                         if os.path.isabs(env.get("XDG_RUNTIME_DIR") or "") else None),
        )

    # --- config ------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.config_dir / "gflow.toml"

    @property
    def shellrc(self) -> Path:
        return self.config_dir / "shellrc"

    # --- data ----------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.msgpack"

    @property
    def legacy_state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def wal_file(self) -> Path:
        return self.data_dir / "state.wal"

    @property
    def journal_file(self) -> Path:
        return self.data_dir / "state.journal.jsonl"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "gflowd.lock"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs_dir / "gflowd.log"

    def job_log(self, job_id: int) -> Path:
        return self.logs_dir / f"{int(job_id)}.log"

    def job_log_archive(self, job_id: int, unix_ts: int) -> Path:
        """Where a previous log goes when a job id runs again (`<id>.log.old.<ts>`)."""
        return self.logs_dir / f"{int(job_id)}.log.old.{int(unix_ts)}"

    def job_attempt_log(self, job_id: int, attempt: int) -> Path:
        """The log of an earlier attempt of a retried job (`gbatch --max-retries`)."""
        return self.logs_dir / f"{int(job_id)}.attempt-{int(attempt)}.log"

    def job_status(self, job_id: int) -> Path:
        return self.logs_dir / f"{int(job_id)}.status"

    def job_pidfile(self, job_id: int) -> Path:
        return self.logs_dir / f"{int(job_id)}.pid"

    # --- sockets -------------------------------------------------------------------------
    def daemon_socket(self, port: int) -> Path:
        """Where this account's daemon on `port` listens when no socket is configured."""
        return (self.runtime_dir or self.data_dir) / socket_name(port)

    def client_sockets(self, port: int) -> list[Path]:
        """Where a client looks for the daemon on `port`: this account's, then the system's
        (client_socket_paths gives the same as strings)."""
        from pathlib import Path
        return [self.daemon_socket(port), Path(_SYSTEM_RUNTIME, socket_name(port))]

    # --- state ---------------------------------------------------------------------------
    @property
    def history_file(self) -> Path:
        return self.state_dir / "shell_history"

    def ensure_dirs(self) -> None:
        """Create the data, logs and state directories (mode 0700 when new)."""
        for d in (self.data_dir, self.logs_dir, self.state_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
