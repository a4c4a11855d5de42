"""`gctl quota list|set|remove`: quotas per user and project (upstream's spelling); set and remove change runtime overrides (admins)."""

# The [quota] table of gflow.toml is the baseline; `gctl quota set` stores an override in
# the daemon's state (it survives restarts) whose fields win over the file's, and
# `gctl quota remove` drops it again.

from __future__ import annotations

import json

from gflow.cli import render
from gflow.cli.common import CommandError, int_type

LIMITS = (("max_running_jobs", "--max-running-jobs", "running jobs at once"),
          ("max_running_gpus", "--max-running-gpus", "GPUs held by running jobs at once"),
          ("max_queued_jobs", "--max-queued-jobs", "queued and held jobs; more submissions "
                                                   "are refused"))


def _subject_args(sp) -> None:
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--user", metavar="USER", help="one user's quota")
    g.add_argument("--project", metavar="PROJECT", help="one project's quota")
    g.add_argument("--default-user", action="store_true",
                   help="the quota of every user without one of their own")
    g.add_argument("--default-project", action="store_true",
                   help="the quota of every project without one of its own")


def add_parser(sub, command) -> None:
    q = command(sub, "quota", "limits per user and per project: list them with what each "
                              "uses, set or remove overrides (admins)")
    qsub = q.add_subparsers(dest="quota_cmd", metavar="COMMAND", parser_class=type(q))
    ls = command(qsub, "list", "every quota and what its user or project runs and queues")
    ls.add_argument("-o", "--output", choices=("table", "json"), default="table",
                    help="table (default) or json")
    st = command(qsub, "set", "set limits (others keep their value; 'none' clears one)")
    _subject_args(st)
    for _key, flag, text in LIMITS:
        st.add_argument(flag, metavar="N", type=_limit_value, help=f"at most N {text}")
    rm = command(qsub, "remove", "remove an override (the config file's limits apply again)")
    _subject_args(rm)


_count = int_type(0, 2**32 - 1, "limit")


CLEAR = "none"


def _limit_value(text: str):
    return CLEAR if text.strip().lower() in ("none", "unlimited", "-") else _count(text)


def _subject(args) -> tuple:
    if args.user is not None:
        return "user", args.user
    if args.project is not None:
        return "project", args.project
    return ("default_user" if args.default_user else "default_project"), None


def run(client, args) -> int:
    cmd = args.quota_cmd
    if cmd in (None, "list"):
        return cmd_list(client, getattr(args, "output", "table"))
    scope, name = _subject(args)
    who = scope if name is None else f"{scope} '{name}'"
    if cmd == "set":
        given = {key: None if getattr(args, key) == CLEAR else getattr(args, key)
                 for key, _f, _t in LIMITS if getattr(args, key) is not None}
        if not given:
            raise CommandError("Error: give at least one of --max-running-jobs, "
                               "--max-running-gpus, --max-queued-jobs")
        body = client.call("PUT", "/quotas", {"scope": scope, "name": name, "limits": given})
        print(f"Updated {who} quota")
        for key, value in sorted((body.get("override") or {}).items()):
            print(f"  {key} = {value}")
        return 0
    client.call("DELETE", "/quotas", query={"scope": scope, "name": name})
    print(f"Removed {who} quota override")
    return 0


def cell(used, limit) -> str:
    shown = "-" if limit is None else str(limit)
    return shown if used is None else f"{used}/{shown}"


def cmd_list(client, output: str) -> int:
    body = client.call("GET", "/quotas")
    rows = body.get("quotas") if isinstance(body, dict) else None
    if rows is None:
        raise CommandError("Error: unexpected reply from the daemon")
    if output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = [["SCOPE", "NAME", "JOBS", "GPUS", "QUEUED", "SOURCE"]]
    for row in rows:
        limits = row.get("limits") or {}
        default = row.get("scope", "").startswith("default")
        source = ("override" if row.get("override") else
                  "config" if row.get("config") else "-")
        table.append([row.get("scope", "?"), row.get("name") or "*",
                      cell(None if default else row.get("running_jobs", 0),
                           limits.get("max_running_jobs")),
                      cell(None if default else row.get("running_gpus", 0),
                           limits.get("max_running_gpus")),
                      cell(None if default else row.get("queued_jobs", 0),
                           limits.get("max_queued_jobs")),
                      source])
    print(render.table([[render.safe(c) for c in r] for r in table], sep="  "))
    print("\nCells are used/limit; `-` means unlimited. Default rows show the limit only.")
    return 0
