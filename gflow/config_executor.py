"""The `[executor]` settings: whether jobs run on this machine (`local`) or are handed to a Slurm cluster (`slurm`, `[executor.slurm]`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from gflow.errors import ConfigError

__all__ = ["ExecutorConfig", "SlurmConfig", "parse_executor", "executor_keys"]


@dataclass(frozen=True)
class SlurmConfig:
    partition: Optional[str] = None          # sbatch --partition; None: the cluster's default
    account: Optional[str] = None            # sbatch --account
    extra_args: tuple[str, ...] = ()         # more sbatch arguments, each one argument
    poll_secs: float = 0.25                  # how often squeue --json is read
    timeout_secs: float = 15.0               # the longest any Slurm command may take
    sbatch: str = "sbatch"                   # the commands (a name on PATH or a path)
    squeue: str = "squeue"
    scontrol: str = "scontrol"
    scancel: str = "scancel"


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"                      # "local" | "slurm"
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


_KINDS = ("local", "slurm")
_SLURM_STR = ("partition", "account", "sbatch", "squeue", "scontrol", "scancel")
_SLURM_SECS = ("poll_secs", "timeout_secs")


def executor_keys() -> set[str]:
    return {"executor", "executor.kind", "executor.slurm"} | {
        f"executor.slurm.{f.name}" for f in fields(SlurmConfig)}


def _slurm(value: Any, source: str) -> SlurmConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"executor.slurm: expected a table, got {value!r} (from {source})")
    kwargs: dict = {}
    for name, item in value.items():
        key = f"executor.slurm.{name}"
        if name in ("partition", "account") and item == "":
            kwargs[name] = None                  # the cluster's default
        elif name in _SLURM_STR:
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"{key}: expected a non-empty string, got {item!r} "
                                  f"(from {source})")
            kwargs[name] = item
        elif name in _SLURM_SECS:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not item > 0:
                raise ConfigError(f"{key}: expected a number of seconds > 0, got {item!r} "
                                  f"(from {source})")
            kwargs[name] = float(item)
        elif name == "extra_args":
            if not isinstance(item, list) or not all(isinstance(a, str) for a in item):
                raise ConfigError(f'{key}: expected a list of strings (["--qos=high"]), '
                                  f"got {item!r} (from {source})")
            kwargs[name] = tuple(item)
        else:
            known = ", ".join(f.name for f in fields(SlurmConfig))
            raise ConfigError(f"{key}: unknown setting (known: {known}) (from {source})")
    return SlurmConfig(**kwargs)


def parse_executor(value: Any, source: str) -> ExecutorConfig:
    """The [executor] table, with its [executor.slurm] sub-table."""
    if not isinstance(value, dict):
        raise ConfigError(f"executor: expected a table, got {value!r} (from {source})")
    kwargs: dict = {}
    for name, item in value.items():
        if name == "kind":
            if item not in _KINDS:
                raise ConfigError(f'executor.kind: expected "local" or "slurm", got {item!r} '
                                  f"(from {source})")
            kwargs["kind"] = item
        elif name == "slurm":
            kwargs["slurm"] = _slurm(item, source)
        else:
            raise ConfigError(f"executor.{name}: unknown setting (known: kind, slurm) "
                              f"(from {source})")
    return ExecutorConfig(**kwargs)
