"""Where gflow keeps its files, following the XDG base directory rules (DESIGN.md §6)."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

__all__ = ["Paths", "SYSTEM_RUNTIME_DIR", "DEFAULT_PORT", "socket_name"]

DEFAULT_PORT = 59000
# Where the system service (contrib/systemd/gflowd-system.service) puts its socket;
# clients of every account look there too, so nobody has to configure anything.
SYSTEM_RUNTIME_DIR = Path("/run/gflow")


def socket_name(port: int) -> str:
    """`gflowd.sock` for the default port; a daemon on another port has its own name, so
    a client never reaches a daemon other than the one its port names."""
    return "gflowd.sock" if port == DEFAULT_PORT else f"gflowd-{int(port)}.sock"


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    if home:
        return Path(home)
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # pragma: no cover - a uid without a passwd entry
        return Path("/")


def _xdg(env: Mapping[str, str], var: str, home: Path, default: str) -> Path:
    """`$VAR` when set to an absolute path (relative values are ignored, as XDG says)."""
    value = env.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return home / default


@dataclass(frozen=True)
class Paths:
    """Every file of one gflow installation; all derived from HOME and the XDG variables."""

    config_dir: Path
    data_dir: Path
    state_dir: Path
    runtime_dir: Optional[Path] = None              # $XDG_RUNTIME_DIR/gflow when set

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Paths":
        env = os.environ if env is None else env
        home = _home(env)
        return cls(
            config_dir=_xdg(env, "XDG_CONFIG_HOME", home, ".config") / "gflow",
            data_dir=_xdg(env, "XDG_DATA_HOME", home, ".local/share") / "gflow",
            state_dir=_xdg(env, "XDG_STATE_HOME", home, ".local/state") / "gflow",
            runtime_dir=(Path(env["XDG_RUNTIME_DIR"]) / "gflow"
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
        """Where a client looks for the daemon on `port`: this account's, then the system's."""
        return [self.daemon_socket(port), SYSTEM_RUNTIME_DIR / socket_name(port)]

    # --- state ---------------------------------------------------------------------------
    @property
    def history_file(self) -> Path:
        return self.state_dir / "shell_history"

    def ensure_dirs(self) -> None:
        """Create the data, logs and state directories (mode 0700 when new)."""
        for d in (self.data_dir, self.logs_dir, self.state_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
