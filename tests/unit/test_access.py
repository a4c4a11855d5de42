"""Who may do what (gflow.scheduler.access), with made-up accounts and no I/O."""

from __future__ import annotations

import pytest

from gflow.config import SecurityConfig
from gflow.identity import ANONYMOUS, Caller
from gflow.scheduler.access import Access, Refused

ACCOUNTS = {"root": 0, "lab": 900, "alice": 1001, "bob": 1002, "carol": 1003}
ALICE = Caller(1001, "alice", ("alice",), "unix")
BOB = Caller(1002, "bob", ("bob",), "tcp")
CAROL = Caller(1003, "carol", ("carol", "gpu-admins"), "unix")
ROOT = Caller(0, "root", ("root",), "unix")
LAB = Caller(900, "lab", ("lab",), "tcp")
NO_ACCOUNT = Caller(4242, None, (), "tcp")


def access(daemon_uid=0, daemon_user="root", **security) -> Access:
    return Access(SecurityConfig(**security), daemon_uid, daemon_user, ACCOUNTS.get)


def refusal(fn, *args) -> str:
    with pytest.raises(Refused) as exc:
        fn(*args)
    return str(exc.value)


def test_admins_are_root_the_daemon_account_the_list_and_the_group():
    a = access(daemon_uid=900, daemon_user="lab", admins=("bob",), admin_group="gpu-admins")
    assert a.is_admin(ROOT) and a.is_admin(LAB) and a.is_admin(BOB) and a.is_admin(CAROL)
    assert not a.is_admin(ALICE) and not a.is_admin(ANONYMOUS)
    plain = access()
    assert not plain.is_admin(BOB) and not plain.is_admin(CAROL)


def test_only_owner_or_admin_changes_a_job():
    a = access(admin_group="gpu-admins")
    a.check_job(ALICE, 12, "alice", "cancel")
    a.check_job(ROOT, 12, "alice", "cancel")
    a.check_job(CAROL, 12, "alice", "finish")
    assert refusal(a.check_job, BOB, 12, "alice", "cancel") == (
        "job 12 belongs to alice; only alice or a gflow admin may cancel it")
    assert "may fail it" in refusal(a.check_job, BOB, 12, "alice", "fail")
    assert "anonymous callers may not change anything" in refusal(
        a.check_job, ANONYMOUS, 12, "alice", "hold")
    assert "uid 4242 has no account" in refusal(a.check_job, NO_ACCOUNT, 12, "alice", "hold")


def test_admin_ops_are_for_admins_only():
    a = access()
    a.check_admin(ROOT, "set_gpus")
    assert refusal(a.check_admin, BOB, "set_gpus") == (
        "only a gflow admin may change the GPUs gflow may use; bob is not one")


def test_anonymous_reads_follow_the_setting():
    access().check_read(ANONYMOUS)
    assert "anonymous" in refusal(access(anonymous="none").check_read, ANONYMOUS)
    access(anonymous="none").check_read(BOB)


def test_private_reads_are_for_owner_and_admins():
    a = access()
    assert a.may_read_private(ALICE, "alice") and a.may_read_private(ROOT, "alice")
    assert not a.may_read_private(BOB, "alice") and not a.may_read_private(ANONYMOUS, "alice")


def test_submission_owner_in_a_root_daemon():
    a = access()
    assert a.submission_owner(ALICE, None) == "alice"
    assert a.submission_owner(ALICE, "alice") == "alice"
    assert a.submission_owner(ROOT, "bob") == "bob"           # admins submit for others
    assert refusal(a.submission_owner, BOB, "alice") == (
        "you are bob; only a gflow admin may submit jobs as alice")
    assert "ghost has no account" in refusal(a.submission_owner, ROOT, "ghost")
    assert "only root may submit jobs that run as root" in refusal(
        access(admins=("bob",)).submission_owner, BOB, "root")
    assert "anonymous" in refusal(a.submission_owner, ANONYMOUS, None)


def test_a_user_daemon_runs_only_its_users_jobs_unless_run_as_daemon():
    a = access(daemon_uid=1001, daemon_user="alice")
    assert a.submission_owner(ALICE, None) == "alice"
    msg = refusal(a.submission_owner, BOB, None)
    assert msg.startswith("this gflowd runs as alice and runs only alice's jobs")
    assert "gflowd service install --system" in msg and 'run_as = "daemon"' in msg
    lab = access(daemon_uid=900, daemon_user="lab", run_as="daemon")
    assert lab.submission_owner(BOB, None) == "bob"           # owner recorded, runs as lab
    assert lab.submission_owner(LAB, "ghost") == "ghost"      # the daemon account labels
