"""E-mail notifications: the [notifications.email] config, the messages, which target wants
what, and SMTP delivery against a real in-process server (aiosmtpd)."""

from __future__ import annotations

import pytest

from gflow.config import WEBHOOK_EVENTS, load_config
from gflow.config_email import EmailConfig, parse_email
from gflow.errors import ConfigError
from gflow.notify import Notifier, Outbox, make_payload
from gflow.models import Job, JobState
from gflow import notify_email
from smtp_server import Mailbox


def payload(event="job_failed", **job):
    j = Job(id=7, command="python train.py", submitted_by="alice", state=JobState.FAILED,
            exit_code=3, reason_detail="exit code 3", **job)
    return make_payload(event, 1795500000.0, "gpu-box", job=j)


def test_email_config_keys_and_errors(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[notifications]\nenabled = true\n[notifications.email]\n'
                    'smtp_host = "mail.lab"\nsmtp_port = 587\nsecurity = "starttls"\n'
                    'from = "GPU box <gflow@lab.org>"\nto = ["admin@lab.org"]\n'
                    'events = ["job_failed", "job_timeout"]\npassword_env = "SMTP_PW"\n')
    cfg = load_config(path, env={"HOME": str(tmp_path)}).notifications.email
    assert cfg == EmailConfig(smtp_host="mail.lab", smtp_port=587, security="starttls",
                              from_addr="GPU box <gflow@lab.org>", to=("admin@lab.org",),
                              events=("job_failed", "job_timeout"), password_env="SMTP_PW")
    for table, words in (({"security": "tls"}, "security"), ({"to": ["nobody"]}, "to"),
                         ({"events": ["job_exploded"]}, "events"), ({"smtp_port": 0}, "port"),
                         ({"sender": "x@y"}, "unknown setting")):
        with pytest.raises(ConfigError, match=words):
            parse_email(table, "notifications.email", "test", WEBHOOK_EVENTS)


def test_message_says_what_happened():
    cfg = EmailConfig(from_addr="gflow@lab.org")
    msg = notify_email.message(cfg, payload(), ["alice@lab.org"])
    assert msg["Subject"] == "[gflow] job 7 (python train.py) failed: exit code 3"
    assert msg["To"] == "alice@lab.org" and msg["From"] == "gflow@lab.org"
    assert msg["X-Gflow-Event"] == "job_failed"
    body = msg.get_content()
    assert "Event: job_failed" in body and "exit_code: 3" in body and "user: alice" in body


def test_which_target_wants_which_event():
    cfg = EmailConfig(to=("admin@lab.org",), events=("job_failed",), filter_users=("alice",))
    configured, per_job = notify_email.targets(cfg)
    assert configured.wants(payload()) and not configured.wants(payload("job_started"))
    bob = payload()
    bob["job"]["user"] = "bob"
    assert not configured.wants(bob)
    assert not per_job.wants(payload())                   # no --notify-email
    mail = {**payload("job_started"), "_mail": {"email": ["a@x.org"], "on": ["job_started"]}}
    assert per_job.wants(mail) and per_job.recipients(mail) == ["a@x.org"]
    assert not EmailConfig().to and not notify_email.targets(EmailConfig())[0].wants(payload())


def test_smtp_delivery_retry_and_refusal():
    with Mailbox() as box:
        cfg = EmailConfig(smtp_port=box.port, from_addr="gflow@lab.org")
        msg = notify_email.message(cfg, payload(), ["alice@lab.org"])
        assert notify_email.send(cfg, ["alice@lab.org"], msg, {}) == (200, None, None)
        rcpts, got = box.wait(1)[0]
        assert rcpts == ["alice@lab.org"] and got["Subject"].startswith("[gflow] job 7")
        box.reply = "451 4.3.0 try again later"
        status, _retry, error = notify_email.send(cfg, ["alice@lab.org"], msg, {})
        assert status is None and "451" in error              # retried by the notifier
        box.reply = "554 5.7.1 rejected"
        assert notify_email.send(cfg, ["alice@lab.org"], msg, {})[0] == 400   # given up
    status, _retry, error = notify_email.send(cfg, ["alice@lab.org"], msg, {})
    assert status is None and "ConnectionRefused" in error     # the server is gone


def test_the_notifier_mails_through_its_outbox(tmp_path):
    from gflow.config import NotificationsConfig
    with Mailbox() as box:
        cfg = NotificationsConfig(enabled=True, email=EmailConfig(
            smtp_port=box.port, to=("admin@lab.org",), events=("job_failed",)))
        outbox = Outbox(tmp_path / "notify.outbox", fsync=False)
        notifier = Notifier(cfg, outbox, "gpu-box")
        notifier.mail_lookup = lambda p: {"email": ["alice@lab.org"], "on": ["job_failed"]}
        notifier.publish(payload())
        outbox.commit()
        notifier.flush()
        got = {tuple(r) for r, _m in box.wait(2)}
        assert got == {("admin@lab.org",), ("alice@lab.org",)}
        notifier.close()
    # The private recipients were never part of what webhooks or streams see.
    assert "_mail" not in payload()
