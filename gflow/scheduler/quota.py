"""Quotas per user and per project: `[quota]` in the config, overrides from `gctl quota` (persisted), usage and the submission check."""

from __future__ import annotations

from typing import Any, Optional

from gflow.config_quota import LIMIT_NAMES, SCOPES, QuotaConfig, QuotaLimits
from gflow.models import Job
from gflow.scheduler.reply import Reply, error

# The status of a submission refused for its queue quota: the request itself is fine,
# the submitter has too much waiting (retrying later, once some started, works).
QUEUE_QUOTA_STATUS = 429


class QuotaOps:
    """Mixed into SchedulerCore. The running limits are rules of the pass (policy rule 7);
    `max_queued_jobs` is checked here, when jobs are submitted. Usage counts jobs by their
    verified owner (`submitted_by`) and their project."""

    quota_overrides: QuotaConfig = QuotaConfig()
    _quotas: Optional[QuotaConfig] = None

    def load_quota_overrides(self, wire: Any) -> None:
        try:
            self.quota_overrides = QuotaConfig.from_wire(wire) if wire else QuotaConfig()
        except ValueError:
            self.quota_overrides = QuotaConfig()      # unreadable: the file's limits stand
        self._quotas = None

    def effective_quotas(self) -> QuotaConfig:
        """The config file's [quota] with the runtime overrides merged over it."""
        if self._quotas is None:
            self._quotas = self.config.quota.merged_with(self.quota_overrides)
        return self._quotas

    # --- usage ------------------------------------------------------------------------

    def quota_usage(self) -> dict:
        """(scope, name) -> {"running_jobs", "running_gpus", "queued_jobs"} over live jobs."""
        usage: dict = {}

        def add(job: Job, key: str, gpus: int = 0) -> None:
            for subject in (("user", job.submitted_by), ("project", job.project)):
                if subject[1] is None:
                    continue
                row = usage.setdefault(subject, {"running_jobs": 0, "running_gpus": 0,
                                                 "queued_jobs": 0})
                row[key] += 1
                if gpus:
                    row["running_gpus"] += gpus
        for jid in self.running | self.draining:
            job = self.jobs[jid]
            add(job, "running_jobs", len(job.gpu_ids or ()))
        for jid in self.queued | self.held:
            add(self.jobs[jid], "queued_jobs")
        return usage

    def check_queue_quota(self, jobs: list) -> Optional[Reply]:
        """A refusal when admitting `jobs` would put a user or project over its
        `max_queued_jobs` (queued and held jobs count); nothing of a refused batch is
        admitted."""
        quotas = self.effective_quotas()
        if quotas.empty:
            return None
        pending: dict = {}
        for jid in self.queued | self.held:
            job = self.jobs[jid]
            for subject in (("user", job.submitted_by), ("project", job.project)):
                pending[subject] = pending.get(subject, 0) + 1
        for job in jobs:
            for scope, name, limits in (
                    ("user", job.submitted_by, quotas.user_limits(job.submitted_by)),
                    ("project", job.project, quotas.project_limits(job.project))):
                if limits is None or limits.max_queued_jobs is None:
                    continue
                have = pending.get((scope, name), 0)
                if have + 1 > limits.max_queued_jobs:
                    who = name if scope == "user" else f"project {name}"
                    extra = f" (this submission has {len(jobs)} jobs)" if len(jobs) > 1 else ""
                    return error(QUEUE_QUOTA_STATUS,
                                 f"quota: {who} has {have} of {limits.max_queued_jobs} queued "
                                 f"jobs allowed (max_queued_jobs){extra}; nothing was "
                                 "submitted")
                pending[(scope, name)] = have + 1
        return None

    # --- requests ---------------------------------------------------------------------

    def op_quota_list(self, payload) -> Reply:
        """Every subject with a limit or live jobs: its effective limits, what the file
        and the overrides say, and its usage now."""
        quotas, usage = self.effective_quotas(), self.quota_usage()
        rows = []
        for scope in ("default_user", "default_project"):
            rows.append({"scope": scope, "name": None,
                         "limits": quotas.get(scope, None).to_wire(),
                         "config": self.config.quota.get(scope, None).to_wire(),
                         "override": self.quota_overrides.get(scope, None).to_wire()})
        for scope, table in (("user", "users"), ("project", "projects")):
            names = set(getattr(quotas, table)) | {n for s, n in usage if s == scope}
            for name in sorted(names):
                limits = (quotas.user_limits(name) if scope == "user"
                          else quotas.project_limits(name))
                row = {"scope": scope, "name": name, "limits": limits.to_wire(),
                       "config": self.config.quota.get(scope, name).to_wire(),
                       "override": self.quota_overrides.get(scope, name).to_wire()}
                row.update(usage.get((scope, name), {"running_jobs": 0, "running_gpus": 0,
                                                     "queued_jobs": 0}))
                rows.append(row)
        return Reply(200, {"quotas": rows})

    def _subject(self, payload) -> tuple:
        scope = payload.get("scope")
        name = payload.get("name")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        if scope in ("user", "project"):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"a {scope} quota needs a name")
            return scope, name.strip()
        return scope, None

    def op_quota_set(self, payload) -> Reply:
        """Set limits of one subject's override (fields given as null are cleared; those
        not given keep their value)."""
        try:
            scope, name = self._subject(payload)
            raw = payload.get("limits")
            if not isinstance(raw, dict) or not raw:
                raise ValueError("limits: give at least one of " + ", ".join(LIMIT_NAMES))
            given = QuotaLimits.from_wire(raw)
        except ValueError as exc:
            return error(400, str(exc))
        old = self.quota_overrides.get(scope, name)
        new = QuotaLimits(**{n: (getattr(given, n) if getattr(given, n) is not None
                                 else None if n in raw else getattr(old, n))
                             for n in LIMIT_NAMES})
        self._save_overrides(self.quota_overrides.with_entry(
            scope, name, None if new.empty and scope in ("user", "project") else new))
        return Reply(200, {"scope": scope, "name": name, "override": new.to_wire(),
                           "limits": (self.effective_quotas().get(scope, name)
                                      if scope.startswith("default") else
                                      self.effective_quotas().user_limits(name)
                                      if scope == "user" else
                                      self.effective_quotas().project_limits(name)).to_wire()})

    def op_quota_remove(self, payload) -> Reply:
        """Drop one subject's override; the config file's limits (if any) apply again."""
        try:
            scope, name = self._subject(payload)
        except ValueError as exc:
            return error(400, str(exc))
        if self.quota_overrides.get(scope, name).empty:
            who = scope if name is None else f"{scope} {name}"
            return error(404, f"no quota override for {who} (limits from the config file "
                              "are changed there)")
        self._save_overrides(self.quota_overrides.with_entry(scope, name, None))
        return Reply(200, {"scope": scope, "name": name, "removed": True})

    def _save_overrides(self, overrides: QuotaConfig) -> None:
        self.quota_overrides = overrides
        self._quotas = None
        self.save_meta(extras={"quotas": overrides.to_wire()})
        self.pass_needed = True         # a raised limit may let jobs start
