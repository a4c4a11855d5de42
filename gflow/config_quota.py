"""The `[quota]` settings: limits per user and per project, a default for each, merged field by field."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional

from gflow.errors import ConfigError

__all__ = ["QuotaLimits", "QuotaConfig", "parse_quota", "quota_keys", "LIMIT_NAMES", "SCOPES"]

LIMIT_NAMES = ("max_running_jobs", "max_running_gpus", "max_queued_jobs")
# The subjects of `gctl quota` and PUT/DELETE /quotas, as upstream names them.
SCOPES = ("user", "project", "default_user", "default_project")


@dataclass(frozen=True)
class QuotaLimits:
    """None: unlimited. Named entries are merged over the defaults, field by field."""
    max_running_jobs: Optional[int] = None
    max_running_gpus: Optional[int] = None
    max_queued_jobs: Optional[int] = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, n) is None for n in LIMIT_NAMES)

    def merged_with(self, other: "QuotaLimits") -> "QuotaLimits":
        """`other`'s set fields win."""
        return QuotaLimits(**{n: getattr(other, n) if getattr(other, n) is not None
                              else getattr(self, n) for n in LIMIT_NAMES})

    def to_wire(self) -> dict:
        return {n: getattr(self, n) for n in LIMIT_NAMES if getattr(self, n) is not None}

    @classmethod
    def from_wire(cls, data: Any, where: str = "limits") -> "QuotaLimits":
        """From a map of limit names to non-negative integers; ValueError names the key."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a table of {', '.join(LIMIT_NAMES)}")
        out = {}
        for key, value in data.items():
            if key not in LIMIT_NAMES:
                raise ValueError(f"{where}.{key}: unknown limit (known: {', '.join(LIMIT_NAMES)})")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
                raise ValueError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
            out[key] = value
        return cls(**out)


@dataclass(frozen=True)
class QuotaConfig:
    default_user: QuotaLimits = field(default_factory=QuotaLimits)
    default_project: QuotaLimits = field(default_factory=QuotaLimits)
    # name -> QuotaLimits (left out of the hash: Config is hashed, dicts are not hashable)
    users: dict = field(default_factory=dict, hash=False)
    projects: dict = field(default_factory=dict, hash=False)     # project code -> limits

    @property
    def empty(self) -> bool:
        return (self.default_user.empty and self.default_project.empty
                and not self.users and not self.projects)

    def user_limits(self, user: str) -> QuotaLimits:
        named = self.users.get(user)
        return self.default_user if named is None else self.default_user.merged_with(named)

    def project_limits(self, project: Optional[str]) -> Optional[QuotaLimits]:
        """None for a job without a project: it has no project quota."""
        if project is None:
            return None
        named = self.projects.get(project)
        return self.default_project if named is None else self.default_project.merged_with(named)

    def merged_with(self, other: "QuotaConfig") -> "QuotaConfig":
        """`other` (the runtime overrides of `gctl quota set`) over this (the file)."""
        def entries(mine: dict, theirs: dict) -> dict:
            out = dict(mine)
            for name, limits in theirs.items():
                out[name] = out[name].merged_with(limits) if name in out else limits
            return out
        return QuotaConfig(self.default_user.merged_with(other.default_user),
                           self.default_project.merged_with(other.default_project),
                           entries(self.users, other.users),
                           entries(self.projects, other.projects))

    def get(self, scope: str, name: Optional[str]) -> QuotaLimits:
        if scope == "default_user":
            return self.default_user
        if scope == "default_project":
            return self.default_project
        table = self.users if scope == "user" else self.projects
        return table.get(name, QuotaLimits())

    def with_entry(self, scope: str, name: Optional[str],
                   limits: Optional[QuotaLimits]) -> "QuotaConfig":
        """A copy with one subject's limits replaced (None: removed)."""
        if scope in ("default_user", "default_project"):
            return replace(self, **{scope: limits or QuotaLimits()})
        key = "users" if scope == "user" else "projects"
        table = dict(getattr(self, key))
        if limits is None:
            table.pop(name, None)
        else:
            table[name] = limits
        return replace(self, **{key: table})

    def to_wire(self) -> dict:
        return {"default_user": self.default_user.to_wire(),
                "default_project": self.default_project.to_wire(),
                "users": {n: lim.to_wire() for n, lim in sorted(self.users.items())},
                "projects": {n: lim.to_wire() for n, lim in sorted(self.projects.items())}}

    @classmethod
    def from_wire(cls, data: Any, where: str = "quota") -> "QuotaConfig":
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a table")
        kwargs: dict = {}
        for key in ("default_user", "default_project"):
            if data.get(key) is not None:
                kwargs[key] = QuotaLimits.from_wire(data[key], f"{where}.{key}")
        for key in ("users", "projects"):
            table = data.get(key) or {}
            if not isinstance(table, dict):
                raise ValueError(f"{where}.{key}: expected a table of names to limits")
            kwargs[key] = {str(n): QuotaLimits.from_wire(v, f"{where}.{key}.{n}")
                           for n, v in table.items()}
        return cls(**kwargs)


def quota_keys() -> set[str]:
    """The dotted keys `config_keys()` lists for the [quota] section."""
    keys = {"quota.users", "quota.projects"}
    for sub in ("default_user", "default_project"):
        keys |= {f"quota.{sub}.{n}" for n in LIMIT_NAMES}
    return keys


def parse_quota(value: Any, source: str, warnings: list) -> QuotaConfig:
    """The [quota] table of a config file; unknown keys are warnings, bad values errors."""
    if not isinstance(value, dict):
        raise ConfigError(f"quota: expected a table, got {value!r} (from {source})")
    known = {f.name for f in fields(QuotaConfig)}
    for key in value:
        if key not in known:
            warnings.append(f"unknown setting 'quota.{key}' in {source} (ignored)")
    try:
        return QuotaConfig.from_wire({k: v for k, v in value.items() if k in known})
    except ValueError as exc:
        raise ConfigError(f"{exc} (from {source})") from None
