"""Which account a job runs as, and how its child becomes that account (as slurmstepd does)."""

from __future__ import annotations

import os
import pwd


class Refused(Exception):
    """The job cannot run as asked; str() is one sentence for its reason detail."""


def account_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def target_account(name) -> pwd.struct_passwd | None:
    """The account to switch to for a spec's `run_as_user`, or None to run the job as
    gflowd's own account (no name, or the name of the account we already are).

    Only root can switch; a daemon of an ordinary account refuses instead of running
    the job as itself (the scheduler should never ask, but a wrong account must never
    be the outcome)."""
    if not name:
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise Refused(f"account {name} does not exist") from None
    euid = os.geteuid()
    if pw.pw_uid == euid:
        return None
    if euid != 0:
        raise Refused(f"gflowd runs as {account_name(euid)} and cannot run jobs as {name}")
    return pw


def job_environment(env: dict, pw: pwd.struct_passwd | None) -> dict:
    """The job's environment: what the submitter's was, but HOME, USER, LOGNAME and SHELL
    always from the password database of the account it runs as (a captured env could
    name someone else's home)."""
    env = dict(env)
    if pw is not None:
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name,
                   SHELL=pw.pw_shell or "/bin/sh")
    return env


def popen_identity(pw: pwd.struct_passwd, cwd: str, errors_fd: int) -> dict:
    """Popen arguments that make the child `pw`: Popen's child does setgroups (the
    account's groups, as initgroups would), setregid, setreuid, in that order, after
    fork and before exec; then `enter` changes into the run directory *as the user*,
    so a directory the user may not enter is refused (Popen's own `cwd` would chdir
    while still root). The failure's reason is written to `errors_fd` (the exception
    itself does not cross the fork). The monitor has no threads, so a preexec_fn is safe.
    """
    def enter() -> None:
        try:
            os.chdir(cwd)
        except OSError as exc:
            os.write(errors_fd, (exc.strerror or str(exc)).encode()[:200])
            raise

    return {"user": pw.pw_uid, "group": pw.pw_gid,
            "extra_groups": os.getgrouplist(pw.pw_name, pw.pw_gid),
            "cwd": None, "preexec_fn": enter}
