"""`gcancel`: cancel jobs (and, hidden, 0.4.13's `--finish`/`--fail` job-wrapper reports).

Deliberate differences from 0.4.13 (spec/cli.md §15.8): `gcancel 999` no longer claims
`Job 999 cancelled.` — an unknown id or a job that already ended is reported on stderr and
the exit status is 1 (the other ids are still cancelled); `--dry-run` also lists jobs that
depend on the id through a dependency list (`--depends-on-all/any`), not only through the
legacy single dependency.
"""

from __future__ import annotations

import argparse
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli.common import (
    CommandError, Parser, add_config_arg, add_version, api_text, client_for, guarded,
    parse_value, special_command, u32,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gcancel", description="Cancel jobs.",
               epilog="Subcommands: `gcancel completion bash|zsh|fish` prints a completion "
                      "script.")
    p.add_argument("ids", nargs="?", metavar="IDS", help="job ids: 3, 1-5, 2,4")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be cancelled (and which queued jobs wait on it)")
    p.add_argument("--cancel", "--kill", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--finish", type=u32, metavar="ID", help=argparse.SUPPRESS)
    p.add_argument("--fail", type=u32, metavar="ID", help=argparse.SUPPRESS)
    add_config_arg(p)
    add_version(p, "gcancel")
    return p


def dry_run(client, ids: list[int]) -> int:
    jobs = None
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
        for other in jobs:
            if other.get("state") not in ("Queued", "Hold"):
                continue
            deps = set(other.get("depends_on_ids") or [])
            if other.get("depends_on") is not None:
                deps.add(other["depends_on"])
            if job_id in deps:
                print(f"{other['id']}\t{other['state']}\tblocked\t{job_id}")
    return 0


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
        raise CommandError("No command specified. Use --finish <id>, --fail <id>, or provide "
                           "job IDs to cancel")
    from gflow.parsing import parse_id_list
    ids = parse_value(parse_id_list, args.ids, "IDS")
    client = client_for(args)
    if args.dry_run:
        return dry_run(client, ids)
    rc = 0
    for job_id in ids:
        status, body = client.action(job_id, "cancel")
        if status == 200:
            print(f"Job {job_id} cancelled.")
        elif status == 404:
            print(f"Error: Job {job_id} not found", file=sys.stderr)
            rc = 1
        else:
            print(f"Error: {api_text(status, body)}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
