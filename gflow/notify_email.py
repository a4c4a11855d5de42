"""E-mail notifications: two delivery targets beside the webhooks, sending through the same outbox, lanes and retries.

`[notifications.email] to` receives every event the section wants (like a webhook);
a job submitted with `gbatch --notify-email ADDR --notify-on EVENTS` gets its own mail
for those events. The per-job addresses travel in the outbox record under the payload's
private `_mail` key (never sent to a webhook or the event stream), so a delivery owed
across a restart still knows whom to mail.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Optional

from gflow.config_email import EmailConfig, optional_password

log = logging.getLogger("gflow.notify")

# Webhook-style outcome: (status, retry-after, error). 200 sent; 400 refused for good
# (a permanent SMTP error: retrying cannot help); None: try again later.
Outcome = tuple


class _MailTarget:
    """What the Notifier needs of a target: wants(), deliver(), max_retries, url."""

    def __init__(self, cfg: EmailConfig, env=None):
        self.cfg = cfg
        self.env = os.environ if env is None else env
        self.max_retries = cfg.max_retries
        self.url = f"smtp://{cfg.smtp_host}:{cfg.smtp_port}"

    def recipients(self, payload: dict) -> list:
        raise NotImplementedError

    def deliver(self, payload: dict) -> Outcome:
        to = self.recipients(payload)
        if not to:
            return 200, None, None
        return send(self.cfg, to, message(self.cfg, payload, to), self.env)


class ConfiguredMail(_MailTarget):
    """`to` of [notifications.email], for the events and users it names."""

    def wants(self, payload: dict) -> bool:
        from gflow.notify import wants
        return bool(self.cfg.to) and wants(self.cfg, payload)

    def recipients(self, payload: dict) -> list:
        return list(self.cfg.to)


class JobMail(_MailTarget):
    """The addresses a job was submitted with, for the events it asked for."""

    def wants(self, payload: dict) -> bool:
        mail = payload.get("_mail")
        return isinstance(mail, dict) and payload.get("event") in (mail.get("on") or ())

    def recipients(self, payload: dict) -> list:
        return list((payload.get("_mail") or {}).get("email") or ())


def targets(cfg: Optional[EmailConfig]) -> list:
    """The e-mail targets, after the webhooks (outbox records name targets by index)."""
    return [] if cfg is None else [ConfiguredMail(cfg), JobMail(cfg)]


SUBJECT_VERB = {"job_submitted": "submitted", "job_started": "started",
                "job_completed": "completed", "job_failed": "failed",
                "job_cancelled": "cancelled", "job_timeout": "timed out",
                "job_held": "held", "job_released": "released",
                "job_retrying": "failed; retrying", "job_suspended": "suspended",
                "job_resumed": "resumed"}


def message(cfg: EmailConfig, payload: dict, to: list) -> EmailMessage:
    event = payload.get("event", "event")
    job = payload.get("job")
    if isinstance(job, dict):
        what = f"job {job.get('id')}" + (f" ({job['name']})" if job.get("name") else "")
        subject = f"{what} {SUBJECT_VERB.get(event, event)}"
        if job.get("reason_detail") and event not in ("job_started", "job_submitted"):
            subject += f": {job['reason_detail']}"
    else:
        subject = event.replace("_", " ")
    msg = EmailMessage()
    msg["Subject"] = f"{cfg.subject_prefix} {subject}".strip()[:250]
    msg["From"] = cfg.from_addr
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=(payload.get("scheduler") or {}).get("host")
                                   or "gflow")
    msg["X-Gflow-Event-Id"] = payload.get("event_id", "")
    msg["X-Gflow-Event"] = event
    lines = [f"Event: {event}", f"Time: {payload.get('timestamp')}",
             f"Host: {(payload.get('scheduler') or {}).get('host')}"]
    for section in ("job", "reservation", "gpu"):
        item = payload.get(section)
        if isinstance(item, dict):
            lines += ["", f"{section.capitalize()}:"] + [f"  {k}: {v}" for k, v in item.items()]
    if payload.get("text"):
        lines += ["", str(payload["text"])]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send(cfg: EmailConfig, to: list, msg: EmailMessage, env) -> Outcome:
    """One SMTP session: connect (SMTPS, or STARTTLS when asked), log in when a user is
    set, send. 4xx replies and connection trouble are retried, 5xx ones are not."""
    started = time.monotonic()
    try:
        password = optional_password(cfg, env)
        context = ssl.create_default_context()
        if cfg.security == "ssl":
            smtp = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_secs,
                                    context=context)
        else:
            smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_secs)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=context)
            if cfg.username:
                smtp.login(cfg.username, password or "")
            refused = smtp.send_message(msg, from_addr=_bare(cfg.from_addr), to_addrs=to)
        if refused:
            log.warning("mail: refused for %s", ", ".join(sorted(refused)))
        log.debug("mail to %s sent in %.2fs", ", ".join(to), time.monotonic() - started)
        return 200, None, None
    except smtplib.SMTPRecipientsRefused as exc:
        return 400, None, f"recipients refused: {', '.join(sorted(exc.recipients))}"
    except smtplib.SMTPResponseException as exc:
        text = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        return (400 if 500 <= exc.smtp_code < 600 else None), None, text
    except (OSError, smtplib.SMTPException) as exc:
        return None, None, f"{type(exc).__name__}: {exc}"


def _bare(address: str) -> str:
    """`Name <a@b>` -> `a@b` for the envelope."""
    if "<" in address and address.rstrip().endswith(">"):
        return address[address.rindex("<") + 1:-1].strip()
    return address.strip()
