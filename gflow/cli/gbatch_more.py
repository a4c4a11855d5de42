"""`gbatch` options of issue 17: `--begin`, `--max-retries`, `--notify-email/--notify-on`, Slurm-style `--depends-on afterok:ID`, and misused subcommands refused; its start-up shortcuts of issue 21 (the `@` lookup sent ahead, the exit without teardown)."""

from __future__ import annotations

import os
import sys
import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli.common import CommandError, int_type

# Words people type expecting a subcommand (other queues have them); never submitted.
MISUSED = {"list": "gqueue", "queue": "gqueue", "status": "gqueue (or gjob show ID)",
           "log": "gjob log ID"}
# Slurm's dependency types we run; the others are refused by name.
CONDITIONS = ("afterok", "afterany", "afternotok")
SLURM_ONLY = ("after", "aftercorr", "afterburstbuffer", "singleton")
MAX_RETRIES = 255
# --notify-on: gbatch's short names of the job events (the daemon's names work too).
NOTIFY_SHORT = ("submitted", "started", "completed", "failed", "cancelled", "timeout", "held",
                "released", "retrying", "suspended", "resumed")
NOTIFY_DEFAULT = ("completed", "failed", "timeout", "cancelled")


def add_options(p) -> None:
    p.add_argument("--begin", metavar="TIME",
                   help="do not start before TIME: HH:MM[:SS] (next time the clock shows "
                        "it), YYYY-MM-DD[ HH:MM[:SS]], ISO 8601, now+N[s|m|h|d] (minutes "
                        "without a unit); in the configured time zone")
    p.add_argument("--max-retries", type=int_type(0, MAX_RETRIES, "retries"), metavar="N",
                   help="when the job fails (not cancelled or timed out), queue it again, up "
                        "to N more times; each attempt keeps its exit code, times and log")
    p.add_argument("--notify-email", action="append", metavar="ADDR",
                   help="mail ADDR about this job (repeatable, or a comma list); the daemon "
                        "needs [notifications.email]")
    p.add_argument("--notify-on", metavar="EVENTS",
                   help="comma list of " + ", ".join(NOTIFY_SHORT) + " or all (default: "
                        + ",".join(NOTIFY_DEFAULT) + ")")


def refuse_misused(command: list) -> None:
    """`gbatch list` (pueue, task-spooler habits): point to the right command instead of
    submitting a job that runs `list`. A file of that name is still submitted."""
    if not command:
        return
    word = command[0]
    if word in MISUSED and not os.path.exists(word):
        raise CommandError(f"Error: `gbatch {word}` would submit a job that runs `{word}`; "
                           f"gbatch only submits jobs: use {MISUSED[word]} (to run a program "
                           f"named {word}, give its path: gbatch ./{word})")


def current_umask() -> int:
    mask = os.umask(0o022)      # reading the umask means setting it: put it back at once
    os.umask(mask)
    return mask


DEPENDS_ON = ("-d", "--depends-on", "--dependency")


def prefetch_dependency(argv: list, user: str, client_class):
    """For `--depends-on @` (or `@~N`) without a config file: a client that has already
    sent that lookup, before the options are even parsed, so the daemon answers while
    gbatch builds the job; None otherwise. `argv` is only scanned, not parsed: the
    lookup's answer is used only if the parsed options ask the very same (Client.prefetch),
    so a wrong guess costs one unread lookup."""
    if any(w in ("-h", "--help", "-V", "--version") or (
            len(w.split("=", 1)[0]) > 3 and "--config".startswith(w.split("=", 1)[0]))
           for w in argv):
        return None
    text = None
    for i, word in enumerate(argv):
        name = word.split("=", 1)[0]
        if word == "--":
            return None
        if word in DEPENDS_ON and i + 1 < len(argv):
            text = argv[i + 1]
        elif name in DEPENDS_ON[1:] and "=" in word:
            text = word.split("=", 1)[1]
        if text is not None:
            break
    text = (text or "").strip()
    if not text.startswith("@") or ":" in text:
        return None
    from gflow.cli.common import _fast_address
    address = _fast_address()
    if address is None:
        return None
    client = client_class.from_env(*address)
    client.prefetch("/jobs/resolve-dependency", {"username": user, "shorthand": text})
    return client


def as_command(main):
    """`main`, which as the installed `gbatch` command (run by its console script) ends
    the process once its answer is out: what is registered for exit still runs, but
    not the interpreter's teardown of every module (2.5 to 4 ms of a ~30 ms command)."""
    def entry(argv=None):
        rc = main(argv)
        main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
        if argv is None and os.path.basename(main_file) == "gbatch":
            from gflow.procexit import exit_now
            exit_now(rc if isinstance(rc, int) else int(rc is not None))
        return rc
    entry.__wrapped__ = main
    entry.__doc__ = main.__doc__
    return entry


def is_slurm_dependency(text: str) -> bool:
    return ":" in text and not text.strip().startswith("@")


def parse_slurm_dependency(text: str) -> tuple:
    """`afterok:12:13,afterany:@` -> ([(condition, ref), ...], mode); `,` joins
    conditions that must all hold, `?` conditions of which one is enough (Slurm)."""
    raw = text.strip()
    if "," in raw and "?" in raw:
        raise CommandError(f"Error: invalid dependency '{raw}': use either ',' (all) or "
                           "'?' (any) between conditions, not both")
    mode = "Any" if "?" in raw else "All"
    out = []
    for part in raw.replace("?", ",").split(","):
        kind, _, ids = part.strip().partition(":")
        kind = kind.strip().lower()
        if kind in SLURM_ONLY:
            raise CommandError(f"Error: dependency type '{kind}' is not supported; use "
                               + ", ".join(CONDITIONS))
        if kind not in CONDITIONS or not ids.strip():
            raise CommandError(f"Error: invalid dependency '{part.strip()}': expected "
                               "afterok:ID[:ID...], afterany:ID or afternotok:ID")
        for ref in ids.split(":"):
            out.append((kind, ref.strip()))
    return out, mode


def depends_on(args, client, user: str, resolve_one) -> tuple:
    """(ids, mode) for --depends-on; Slurm-style conditions go to
    `args.dependency_conditions` (afterok, the default, is not sent)."""
    text = args.depends_on
    if not is_slurm_dependency(text):
        return [resolve_one(client, text, user)], "All"
    parts, mode = parse_slurm_dependency(text)
    ids, conditions = [], {}
    for kind, ref in parts:
        job_id = resolve_one(client, ref, user)
        if job_id in ids and conditions.get(str(job_id), "afterok") != kind:
            raise CommandError(f"Error: job {job_id} is named twice with different "
                               "dependency types")
        if job_id not in ids:
            ids.append(job_id)
        if kind != "afterok":
            conditions[str(job_id)] = kind
    args.dependency_conditions = conditions
    return ids, mode


def apply(args, job: dict, config) -> None:
    """Put --begin and --max-retries into the job (`config` None: the defaults apply)."""
    if args.max_retries:
        job["max_retries"] = args.max_retries
    notify = notify_settings(args)
    if notify:
        job["notify"] = notify
    if args.begin is None:
        return
    from gflow.begintime import format_begin, parse_begin
    from gflow.errors import ParseError
    tz = config.timezone if config is not None else None
    now = time.time()
    try:
        at = parse_begin(args.begin, now, tz)
    except ParseError as exc:
        raise CommandError(f"Error: invalid value '{args.begin}' for --begin: {exc}") from None
    if at < now - 1:
        print(f"Warning: --begin {args.begin} is in the past "
              f"({format_begin(at, now, tz)}); the job may start at once", file=sys.stderr)
    secs = int(at)
    job["scheduled_at"] = {"secs_since_epoch": max(secs, 0),
                           "nanos_since_epoch": int(round((at - secs) * 1e9)) % 1_000_000_000}


def notify_settings(args) -> "Optional[dict]":
    """{"email": [...], "on": ["job_failed", ...]} from --notify-email/--notify-on."""
    if not args.notify_email:
        if args.notify_on is not None:
            raise CommandError("Error: --notify-on needs --notify-email ADDR")
        return None
    import re
    emails = [a.strip() for text in args.notify_email for a in text.split(",") if a.strip()]
    for address in emails:
        if not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+", address):
            raise CommandError(f"Error: invalid value '{address}' for --notify-email: not an "
                               "e-mail address")
    if not 0 < len(emails) <= 10:
        raise CommandError("Error: --notify-email takes 1 to 10 addresses")
    words = NOTIFY_DEFAULT if args.notify_on is None else [
        w.strip().lower() for w in args.notify_on.split(",") if w.strip()]
    if "all" in words or "*" in words:
        words = NOTIFY_SHORT
    on = []
    for word in words:
        short = word[4:] if word.startswith("job_") else word
        short = {"finished": "completed", "end": "completed", "fail": "failed",
                 "begin": "started"}.get(short, short)
        if short not in NOTIFY_SHORT:
            raise CommandError(f"Error: invalid value '{word}' for --notify-on: use "
                               + ", ".join(NOTIFY_SHORT) + " or all")
        if "job_" + short not in on:
            on.append("job_" + short)
    if not on:
        raise CommandError("Error: --notify-on names no event")
    return {"email": emails, "on": on}


def condition_fields(args) -> dict:
    """The job keys of the Slurm-style conditions --depends-on named, if any."""
    conditions = getattr(args, "dependency_conditions", None)
    return {"dependency_conditions": dict(conditions)} if conditions else {}
