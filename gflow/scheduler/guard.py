"""The scheduler's one gate: every request from the API passes `authorize` with its verified caller first.

The rules live in `access` (pure); this mixin only finds what a request is about (the
job, its owner, the reservation) and fills in the owner of what a request creates, so
no handler decides on its own who may do what (DESIGN.md §9).
"""

from __future__ import annotations

import os
import pwd
from typing import Any, Optional

from gflow.identity import Caller
from gflow.scheduler.access import READ_OPS, Access, Refused

__all__ = ["AccessGuard", "Refused", "default_access"]

# Operations that change one existing job, and the verb a refusal uses.
_JOB_OPS = {"update": "update", "redo": "redo", "signal": "signal", "suspend": "suspend",
            "resume": "resume"}


def _account_uid(name: str) -> Optional[int]:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def default_access(security) -> Access:
    """The rules for this process: the daemon's own account is an admin."""
    uid = os.geteuid()
    try:
        name: Optional[str] = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    return Access(security, uid, name, _account_uid)


class AccessGuard:
    """Mixed into `SchedulerCore` (needs `jobs`, `reservations` and `access`)."""

    access: Access

    def authorize(self, op: str, payload: Any, caller: Caller) -> None:
        """Raise Refused when `caller` may not make this request; set the owner of what
        a submission or a redo creates to the verified caller (or whom an admin names)."""
        acc = self.access
        if op == "health":
            return                      # monitoring needs no identity
        if op in READ_OPS:
            acc.check_read(caller)
            if isinstance(payload, dict) and op in ("get_job", "log_path"):
                self._check_private_read(op, payload, caller)
            return
        acc.check_change(caller)
        if op == "submit":
            if isinstance(payload, dict):
                payload["submitted_by"] = acc.submission_owner(
                    caller, _requested(payload.get("submitted_by")))
        elif op == "submit_batch":
            for item in payload if isinstance(payload, list) else ():
                if isinstance(item, dict):
                    item["submitted_by"] = acc.submission_owner(
                        caller, _requested(item.get("submitted_by")))
        elif op == "transition" or op in _JOB_OPS:
            job = self.jobs.get(payload.get("id")) if isinstance(payload, dict) else None
            if job is not None:
                action = payload.get("action") if op == "transition" else _JOB_OPS[op]
                acc.check_job(caller, job.id, job.submitted_by, str(action))
                if op == "redo":
                    payload["submitted_by"] = acc.submission_owner(
                        caller, _requested(payload.get("submitted_by")) or job.submitted_by)
        elif op in ("set_gpus", "quota_set", "quota_remove"):
            acc.check_admin(caller, op)
        elif op in ("gpu_process_ignore", "gpu_process_unignore"):
            acc.check_admin(caller, op)        # it changes what every user's jobs may use
        elif op == "group_limit":
            owners = {j.submitted_by for j in self.jobs.values()
                      if isinstance(payload, dict) and j.group_id == payload.get("group_id")}
            if owners != {caller.user}:
                acc.check_admin(caller, op)
        elif op == "reservation_create":
            user = payload.get("user") if isinstance(payload, dict) else None
            if isinstance(user, str) and user.strip() != caller.user \
                    and not acc.is_admin(caller):
                raise Refused(f"you are {caller.user}; only a gflow admin may reserve GPUs "
                              f"for {user.strip()}")
        elif op == "reservation_cancel":
            r = self.reservations.get(payload.get("id")) if isinstance(payload, dict) else None
            if r is not None:
                acc.check_owned(caller, f"reservation {r.id}", r.user, "cancel")
        else:
            # An operation this gate does not know changes nothing without an admin.
            acc.check_admin(caller, op)

    def _check_private_read(self, op: str, payload: dict, caller: Caller) -> None:
        private = (op == "get_job" and payload.get("with_env")) or \
            (op == "log_path" and self.access.security.private_logs)
        if not private:
            return
        job = self.jobs.get(payload.get("id"))
        if job is not None and not self.access.may_read_private(caller, job.submitted_by):
            what = "environment" if op == "get_job" else "log"
            if caller.anonymous:
                raise Refused(f"the {what} of job {job.id} is only for its owner and gflow "
                              "admins, and gflowd could not tell who you are")
            self.access.check_job(caller, job.id, job.submitted_by,
                                  "env" if op == "get_job" else "log")


def _requested(value: Any) -> Optional[str]:
    """The owner a body names; a missing, empty or non-text value names nobody (the
    caller), "unknown" is what 0.4.13's clients send when they could not tell."""
    if not isinstance(value, str) or not value.strip() or value == "unknown":
        return None
    return value
