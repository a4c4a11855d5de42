"""Who may do what: the one place that turns a verified caller into yes or a refusal sentence.

Pure (no I/O, no clock): the account lookups it needs are passed in, so tests drive it
with made-up accounts. The scheduler asks it before every change; no route or handler
decides on its own (DESIGN.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from gflow.config import SecurityConfig
from gflow.identity import Caller

__all__ = ["Access", "Refused", "READ_OPS"]

# Requests anyone identified may make (and anonymous callers while anonymous = "read").
READ_OPS = frozenset({
    "health", "info", "list_jobs", "get_job", "resolve", "log_path", "reservation_list",
    "reservation_get", "stats", "metrics_gauges", "event_streams", "debug_state",
    "debug_job", "debug_metrics", "quota_list", "fair_share", "gpus", "gpu_processes",
})
# Requests only admins may make, with the words used in the refusal.
ADMIN_OPS = {"set_gpus": "change the GPUs gflow may use",
             "group_limit": "change group limits",
             "quota_set": "change quotas", "quota_remove": "change quotas",
             "gpu_process_ignore": "ignore a GPU process",
             "gpu_process_unignore": "stop ignoring a GPU process"}
# Job actions as the refusal names them.
ACTION_WORDS = {"finish": "finish", "fail": "fail", "cancel": "cancel", "hold": "hold",
                "release": "release", "update": "update", "redo": "redo",
                "signal": "signal", "env": "read the environment of",
                "suspend": "suspend", "resume": "resume",
                "log": "read the log of"}


class Refused(Exception):
    """A request the caller may not make: HTTP 403 with this one sentence."""


@dataclass(frozen=True)
class Access:
    security: SecurityConfig
    daemon_uid: int
    daemon_user: Optional[str]
    # name -> uid for an existing account, None for none (pwd lookup in the daemon).
    account_uid: Callable[[str], Optional[int]]

    # --- who is who --------------------------------------------------------------------
    def is_admin(self, caller: Caller) -> bool:
        if caller.anonymous:
            return False
        if caller.uid == 0 or caller.uid == self.daemon_uid:
            return True
        if caller.user is not None and caller.user in self.security.admins:
            return True
        group = self.security.admin_group
        return bool(group) and group in caller.groups

    def _name(self, caller: Caller) -> str:
        return caller.user or f"uid {caller.uid}"

    # --- reads -------------------------------------------------------------------------
    def check_read(self, caller: Caller) -> None:
        if caller.anonymous and self.security.anonymous == "none":
            raise Refused("this gflowd does not answer anonymous callers "
                          "([security] anonymous = \"none\"); connect from this machine")

    def may_read_private(self, caller: Caller, owner: str) -> bool:
        """A job's environment (and its log with private_logs) is for owner and admins."""
        return not caller.anonymous and (caller.user == owner or self.is_admin(caller))

    # --- changes -----------------------------------------------------------------------
    def check_change(self, caller: Caller) -> None:
        if caller.anonymous:
            raise Refused("anonymous callers may not change anything; gflowd could not "
                          "tell who you are (connect from this machine, through its "
                          "Unix socket or loopback)")
        if caller.user is None:
            raise Refused(f"uid {caller.uid} has no account on this machine; "
                          "it may not change anything")

    def check_admin(self, caller: Caller, op: str) -> None:
        self.check_change(caller)
        if not self.is_admin(caller):
            raise Refused(f"only a gflow admin may {ADMIN_OPS.get(op, op)}; "
                          f"{self._name(caller)} is not one")

    def check_job(self, caller: Caller, job_id: int, owner: str, action: str) -> None:
        """The owner of job `job_id`, root, the daemon's account and admins may change it."""
        self.check_change(caller)
        if caller.user == owner or self.is_admin(caller):
            return
        verb = ACTION_WORDS.get(action, action)
        raise Refused(f"job {job_id} belongs to {owner}; only {owner} or a gflow admin "
                      f"may {verb} it")

    def check_owned(self, caller: Caller, what: str, owner: str, verb: str) -> None:
        """Like check_job for other things that have an owner (reservations)."""
        self.check_change(caller)
        if caller.user == owner or self.is_admin(caller):
            return
        raise Refused(f"{what} belongs to {owner}; only {owner} or a gflow admin may "
                      f"{verb} it")

    def submission_owner(self, caller: Caller, requested: Optional[str]) -> str:
        """The owner a new job gets: the caller, or (admins only) the account named.

        Refuses owners the daemon could not run the job as.
        """
        self.check_change(caller)
        owner = requested.strip() if isinstance(requested, str) and requested.strip() \
            else caller.user
        if owner != caller.user and not self.is_admin(caller):
            raise Refused(f"you are {self._name(caller)}; only a gflow admin may submit "
                          f"jobs as {owner}")
        if self.security.run_as == "daemon":
            return owner  # everything runs as the daemon's account; the owner is a label
        if self.daemon_uid != 0:
            if owner != self.daemon_user:
                raise Refused(
                    f"this gflowd runs as {self.daemon_user} and runs only "
                    f"{self.daemon_user}'s jobs; use the system service "
                    f"(gflowd service install --system, see docs/operations.md) or set "
                    f"[security] run_as = \"daemon\" to run every job as "
                    f"{self.daemon_user}")
            return owner
        uid = self.account_uid(owner)
        if uid is None:
            raise Refused(f"{owner} has no account on this machine; a job must run as "
                          "an existing user")
        if uid == 0 and caller.uid != 0:
            raise Refused("only root may submit jobs that run as root")
        return owner
