"""`gctl gpu-process list|ignore|unignore`: the processes on the GPUs, and taking a foreign one out of the scheduler's way."""

# Ignoring a process tells the scheduler that its GPU may be used although that process
# is there (a stale notebook kernel holding 642 MiB, a monitoring agent). Its memory
# still counts: a job asking --gpu-memory is placed there only if it fits next to it.
# The daemon forgets the entry when the process ends; admins only.

from __future__ import annotations

from gflow.cli import gpu_view, render
from gflow.cli.common import CommandError, api_text, u32


def add_parser(sub, command) -> None:
    gp = command(sub, "gpu-process", "the processes on the GPUs: list them, or ignore a "
                                     "foreign one so its GPU can be used")
    psub = gp.add_subparsers(dest="gpu_process_cmd", metavar="COMMAND",
                             parser_class=type(gp))
    command(psub, "list", "every GPU process: owner, gflow job, memory, utilisation, idle")
    ig = command(psub, "ignore", "let jobs use the GPU of a foreign process (its memory "
                                 "still counts) until it ends (admins)")
    ig.add_argument("pid", type=u32, metavar="PID")
    un = command(psub, "unignore", "count a GPU process as occupying its GPU again (admins)")
    un.add_argument("pid", type=u32, metavar="PID")


def run(client, args) -> int:
    cmd = args.gpu_process_cmd
    if cmd in (None, "list"):
        return cmd_list(client)
    if cmd == "ignore":
        return cmd_ignore(client, args.pid)
    return cmd_unignore(client, args.pid)


def cmd_list(client) -> int:
    body = client.call("GET", "/gpu-processes")
    procs = body.get("processes") if isinstance(body, dict) else None
    if procs:
        print(render.table(gpu_view.process_rows(procs), sep="  "))
    else:
        print("No processes on the GPUs.")
    ignored = body.get("ignored") if isinstance(body, dict) else None
    if ignored:
        print("\nIgnored (until they end):")
        for entry in ignored:
            if isinstance(entry, dict):
                print("  " + gpu_view.describe_ignored(entry))
    return 0


def cmd_ignore(client, pid: int) -> int:
    status, body = client.request("POST", f"/gpu-processes/{pid}/ignore")
    if status != 200:
        raise CommandError(f"Cannot ignore GPU process {pid}: {api_text(status, body)}")
    entry = body.get("ignored") if isinstance(body, dict) else None
    what = gpu_view.describe_ignored(entry) if isinstance(entry, dict) else f"pid {pid}"
    print(f"Ignoring {what}: jobs may now use its GPU (its memory still counts as used) "
          "until it ends.")
    return 0


def cmd_unignore(client, pid: int) -> int:
    status, body = client.request("DELETE", f"/gpu-processes/{pid}/ignore")
    if status != 200:
        raise CommandError(f"Cannot stop ignoring GPU process {pid}: "
                           f"{api_text(status, body)}")
    print(f"GPU process {pid} occupies its GPU again.")
    return 0
