"""`gcancel`: cancel jobs (and, hidden, 0.4.13's `--finish`/`--fail` job-wrapper reports)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from gflow.cli.common import CommandError, add_config_arg, client_for, guarded
from gflow.client import error_text
from gflow.errors import ParseError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gcancel", description="Cancel jobs.")
    p.add_argument("ids", nargs="?", metavar="IDS", help="job ids: 3, 1-5, 2,4")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be cancelled, including dependents")
    p.add_argument("--finish", type=int, metavar="ID", help=argparse.SUPPRESS)
    p.add_argument("--fail", type=int, metavar="ID", help=argparse.SUPPRESS)
    add_config_arg(p)
    return p


def dependents_of(jobs: list[dict], roots: set[int]) -> list[int]:
    """Queued/held jobs that a cancellation of `roots` would cancel in turn."""
    children: dict[int, list[dict]] = {}
    for job in jobs:
        deps = set(job.get("depends_on_ids") or [])
        if job.get("depends_on") is not None:
            deps.add(job["depends_on"])
        for d in deps:
            children.setdefault(d, []).append(job)
    out, todo, seen = [], list(roots), set(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child["id"] in seen or child.get("state") not in ("Queued", "Hold"):
                continue
            if not child.get("auto_cancel_on_dependency_failure"):
                continue
            seen.add(child["id"])
            out.append(child["id"])
            todo.append(child["id"])
    return sorted(out)


@guarded
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    client = client_for(args)
    for flag, action in ((args.finish, "finish"), (args.fail, "fail")):
        if flag is not None:
            status, body = client.action(flag, action)
            if status != 200:
                raise CommandError(f"Error: job {flag}: {error_text(status, body)}")
            return 0
    if not args.ids:
        raise CommandError("error: the following required arguments were not provided:\n"
                           "  <IDS>\n\nUsage: gcancel <IDS>", code=2)
    from gflow.parsing import parse_id_list
    try:
        ids = parse_id_list(args.ids)
    except ParseError as exc:
        raise CommandError(f"Error: {exc}") from None
    if args.dry_run:
        jobs = client.list_jobs()
        by_id = {j["id"]: j for j in jobs}
        rc = 0
        for job_id in ids:
            job = by_id.get(job_id)
            if job is None:
                print(f"Error: Job {job_id} not found", file=sys.stderr)
                rc = 1
                continue
            print(f"Would cancel job {job_id} ({job.get('run_name')}, {job.get('state')})")
        cascade = dependents_of(jobs, {i for i in ids if i in by_id})
        if cascade:
            print("Would also cancel dependent jobs: " + ", ".join(map(str, cascade)))
        return rc
    rc = 0
    for job_id in ids:
        status, body = client.action(job_id, "cancel")
        if status == 200:
            print(f"Job {job_id} cancelled.")
        elif status == 404:
            print(f"Error: Job {job_id} not found", file=sys.stderr)
            rc = 1
        else:
            print(f"Error: Job {job_id}: {error_text(status, body)}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
