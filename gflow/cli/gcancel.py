"""`gcancel`: cancel jobs (and, hidden, 0.4.13's `--finish`/`--fail` job-wrapper reports).

Deliberate differences from 0.4.13 (spec/cli.md §15.8): `gcancel 999` no longer claims
`Job 999 cancelled.` — an unknown id or a job that already ended is reported on stderr and
the exit status is 1 (the other ids are still cancelled); a job that the same command's
cascade already cancelled (`gcancel 5-8` where 7 waits on 5) counts as cancelled, not as an
error; `--dry-run` lists the whole cascade, transitively, including jobs that depend on the
id through a dependency list (`--depends-on-all/any`), not only through the legacy single
dependency.
"""

from __future__ import annotations

import argparse
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli.common import (
    CommandError, Parser, add_config_arg, add_version, api_text, client_for, guarded,
    resolve_job_ids, special_command, u32,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gcancel", description="Cancel jobs.",
               epilog="Subcommands: `gcancel completion bash|zsh|fish` prints a completion "
                      "script.")
    p.add_argument("ids", nargs="?", metavar="IDS", help="job ids: 3, 1-5, 2,4, @ or @~N")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be cancelled (and which queued jobs wait on it)")
    p.add_argument("--cancel", "--kill", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--finish", type=u32, metavar="ID", help=argparse.SUPPRESS)
    p.add_argument("--fail", type=u32, metavar="ID", help=argparse.SUPPRESS)
    add_config_arg(p)
    add_version(p, "gcancel")
    return p


def _deps(job: dict) -> list[int]:
    deps = list(job.get("depends_on_ids") or [])
    if job.get("depends_on") is not None and job["depends_on"] not in deps:
        deps.append(job["depends_on"])
    return deps


def cascade(jobs: list[dict], root: int, dead: set) -> list[tuple[dict, int]]:
    """The waiting jobs that cancelling `root` (after the jobs in `dead`) leaves unable to
    run, transitively, each with the job it waits on: (job, parent) in the order the
    scheduler's cascade reaches them. `dead` grows by root and what it blocks.

    An `--depends-on-any` job is blocked only when none of its dependencies can still
    finish; a job that stays queued (`--no-auto-cancel`) still blocks its own dependents.
    """
    by_id = {j["id"]: j for j in jobs}
    waiting: dict[int, list[dict]] = {}       # dependency id -> the waiting jobs on it
    for job in jobs:
        if job.get("state") in ("Queued", "Hold"):
            for dep in _deps(job):
                waiting.setdefault(dep, []).append(job)
    dead.add(root)
    out: list[tuple[dict, int]] = []
    todo = [root]
    while todo:
        parent = todo.pop(0)
        for job in sorted(waiting.get(parent, ()), key=lambda j: j["id"]):
            if job["id"] in dead:
                continue
            if job.get("dependency_mode") == "Any" and any(
                    d not in dead and (by_id.get(d) or {}).get("state") in
                    ("Queued", "Hold", "Running", "Finished") for d in _deps(job)):
                continue
            dead.add(job["id"])
            out.append((job, parent))
            todo.append(job["id"])
    return out


def dry_run(client, ids: list[int]) -> int:
    jobs = None
    dead: set = set()      # what the ids before this one (and their cascades) cancel
    for job_id in ids:
        job = client.get_job(job_id)
        if job is None:
            raise CommandError(f"Error: Job {job_id} not found")
        state = job.get("state")
        if state not in ("Queued", "Hold", "Running"):
            print(f"{job_id}\t{state}\tinvalid")
            continue
        print(f"{job_id}\t{state}\tok")
        if jobs is None:
            jobs = client.list_jobs()
        for other, parent in cascade(jobs, job_id, dead):
            print(f"{other['id']}\t{other['state']}\tblocked\t{parent}")
    return 0


def cancelled_by(client, job_id: int, cancelled: set) -> Optional[int]:
    """The dependency whose cancellation cascaded to `job_id`, when the cascade started at a
    job of `cancelled` (followed up the DependencyFailed chain), else None."""
    seen = set()
    current = job_id
    first = None
    while current not in seen and len(seen) < 1000:
        seen.add(current)
        job = client.get_job(current)
        reason = (job or {}).get("reason")
        if (job or {}).get("state") != "Cancelled" or not isinstance(reason, dict):
            return None
        parent = reason.get("DependencyFailed")
        if not isinstance(parent, int):
            return None
        first = parent if first is None else first
        if parent in cancelled:
            return first
        current = parent
    return None


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    special = special_command(parser, argv)
    if special is not None:
        return special
    args = parser.parse_args(argv)
    for job_id, action in ((args.finish, "finish"), (args.fail, "fail")):
        if job_id is not None:
            client = client_for(args)
            status, body = client.action(job_id, action)
            if status == 404:
                raise CommandError(f"Error: Job {job_id} not found")
            if status != 200:
                raise CommandError(f"Error: {api_text(status, body)}")
            return 0
    if args.ids is None:
        # 0.4.13 named its hidden --finish/--fail here; they are the job wrapper's, not yours
        raise CommandError("No command specified. Give the IDS of the jobs to cancel: "
                           "gcancel 3, gcancel 1-5 or gcancel 2,4 (see gcancel --help)")
    client = client_for(args)
    ids = resolve_job_ids(client, args.ids, "IDS")
    if args.dry_run:
        return dry_run(client, ids)
    rc = 0
    cancelled: set = set()
    for job_id in ids:
        status, body = client.action(job_id, "cancel")
        if status == 200:
            print(f"Job {job_id} cancelled.")
            cancelled.add(job_id)
            continue
        if status == 404:
            print(f"Error: Job {job_id} not found", file=sys.stderr)
            rc = 1
            continue
        # `gcancel 5-8` with 8 -> 7 -> 5: cancelling 5 cascaded to 7 and 8 first
        parent = cancelled_by(client, job_id, cancelled) if status == 409 and cancelled \
            else None
        if parent is not None:
            print(f"Job {job_id} cancelled (its dependency, job {parent}, was cancelled).")
            cancelled.add(job_id)
            continue
        print(f"Error: {api_text(status, body)}", file=sys.stderr)
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
