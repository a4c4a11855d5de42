"""`gflow-mcp`: a stdio MCP server that lets a coding agent queue, follow and explain gflow jobs as the user who runs it."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Optional

__all__ = ["main", "build_server", "TOOL_NAMES"]

TOOL_NAMES = ("list_jobs", "show_job", "preview_submit", "submit", "cancel", "hold", "release",
              "read_log", "explain")

INSTRUCTIONS = """\
gflow is the GPU job queue of this machine (Slurm-like: gbatch, gqueue, gjob).
Every call reaches the local gflowd as the user who started this server, so only that
user's jobs can be changed. Typical flow: preview_submit (dry run: where and when a job
would start) -> submit -> show_job / read_log (pass next_offset back to read on) ->
explain when a job waits or failed. Jobs run in run_dir (default: this server's working
directory) with this server's environment unless export_env is false. Times and sizes
use gbatch's syntax: time_limit "90" (minutes), "1:30:00", or "2h", "90m";
memory "16G", "512M".
"""


def _server_class():
    """MCPServer (mcp 2.x) or FastMCP (mcp 1.x): the same decorator API for what we use."""
    try:
        from mcp.server.mcpserver import MCPServer
        return MCPServer
    except ImportError:
        from mcp.server.fastmcp import FastMCP
        return FastMCP


def _tool_error_class():
    """The exception whose message the MCP library passes to the agent (others it hides)."""
    try:
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:
        from mcp.server.fastmcp.exceptions import ToolError
    return ToolError


def _plain_errors(fn):
    """A refusal or an unreachable daemon is a sentence the agent reads, not a crash."""
    from gflow.client import ConnectionFailed
    from gflow.mcp.tools import ToolFailure
    tool_error = _tool_error_class()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ToolFailure, ConnectionFailed) as exc:
            raise tool_error(" ".join(str(exc).split())) from None
    return wrapper


def build_server(tools):
    """The MCP server with one tool per GflowTools method; `tools` does the work."""
    server = _server_class()("gflow", instructions=INSTRUCTIONS)

    def tool(fn):
        return server.tool(name=fn.__name__)(_plain_errors(fn))

    @tool
    def list_jobs(state: str = "active", user: Optional[str] = None,
                  project: Optional[str] = None, limit: int = 50) -> dict:
        """List gflow jobs, newest first. state: "active" (Queued, Hold, Running; the
        default), "ended", "all", or a comma list of states (Running, Queued, Hold,
        Finished, Failed, Cancelled, Timeout or R, PD, H, CD, F, CA, TO). user: default
        your own jobs; "all" for everyone's, or a comma list of names. project: only that
        project. limit: at most this many jobs (1-1000)."""
        return tools.list_jobs(state=state, user=user, project=project, limit=limit)

    @tool
    def show_job(job_id: int) -> dict:
        """Everything about one job: state, command, GPUs, times, limits, dependencies,
        reason and reason_detail, exit code."""
        return tools.show_job(job_id)

    def _job(command, script, gpus, name, project, priority, time_limit, memory,
             gpu_memory, shared, conda_env, depends_on, run_dir, export_env):
        return tools.build_job(command, script, gpus, name, project, priority, time_limit,
                               memory, gpu_memory, shared, conda_env, depends_on, run_dir,
                               export_env)

    @tool
    def preview_submit(command: Optional[str] = None, script: Optional[str] = None,
                       gpus: int = 0, name: Optional[str] = None, project: Optional[str] = None,
                       priority: Optional[int] = None, time_limit: Optional[str] = None,
                       memory: Optional[str] = None, gpu_memory: Optional[str] = None,
                       shared: bool = False, conda_env: Optional[str] = None,
                       depends_on: Optional[list[int]] = None, run_dir: Optional[str] = None,
                       export_env: bool = True) -> dict:
        """Dry run of submit (same arguments; nothing is queued): whether the job would
        start now, on which GPUs, or an estimated start time, which jobs are ahead of it
        and what blocks it. The estimate assumes running jobs use their whole time limit
        and says when no estimate is possible (jobs without a time limit)."""
        job = _job(command, script, gpus, name, project, priority, time_limit, memory,
                   gpu_memory, shared, conda_env, depends_on, run_dir, export_env)
        return tools.preview_submit(job)

    @tool
    def submit(command: Optional[str] = None, script: Optional[str] = None, gpus: int = 0,
               name: Optional[str] = None, project: Optional[str] = None,
               priority: Optional[int] = None, time_limit: Optional[str] = None,
               memory: Optional[str] = None, gpu_memory: Optional[str] = None,
               shared: bool = False, conda_env: Optional[str] = None,
               depends_on: Optional[list[int]] = None, run_dir: Optional[str] = None,
               export_env: bool = True) -> dict:
        """Queue a job (like gbatch). Give exactly one of command (a shell command line)
        or script (a path, relative to run_dir). gpus: how many GPUs; time_limit: e.g.
        "90" (minutes), "2:00:00", "2h" or "90m" (the job is stopped after it);
        memory / gpu_memory: e.g. "16G";
        shared: share GPUs with other shared jobs (needs gpu_memory); depends_on: job ids
        that must finish first; priority 0-255 (default 10); run_dir: working directory
        (default this server's); export_env: run with this server's environment."""
        job = _job(command, script, gpus, name, project, priority, time_limit, memory,
                   gpu_memory, shared, conda_env, depends_on, run_dir, export_env)
        return tools.submit(job)

    @tool
    def cancel(job_id: int) -> dict:
        """Cancel one of your queued, held or running jobs (a running job is stopped)."""
        return tools.act(job_id, "cancel")

    @tool
    def hold(job_id: int) -> dict:
        """Hold one of your queued jobs: it will not start until released."""
        return tools.act(job_id, "hold")

    @tool
    def release(job_id: int) -> dict:
        """Release one of your held jobs back into the queue."""
        return tools.act(job_id, "release")

    @tool
    def read_log(job_id: int, offset: Optional[int] = None, max_bytes: int = 8192,
                 tail_lines: Optional[int] = None) -> dict:
        """Read a slice of a job's output. Without offset: the end of the log (its last
        max_bytes). With offset: max_bytes from that byte on; pass the answer's
        next_offset to continue (eof says whether the end was reached). tail_lines: keep
        only the last N lines of the slice. At most 65536 bytes per call."""
        return tools.read_log(job_id, offset=offset, max_bytes=max_bytes,
                              tail_lines=tail_lines)

    @tool
    def explain(job_id: int) -> dict:
        """Why a job waits or how it ended: its reason and reason_detail, its dependencies
        and their states, for a queued job the jobs ahead of it and the free GPUs, for a
        failed job its exit code and the end of its log."""
        return tools.explain(job_id)

    return server


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gflow-mcp", description="MCP server (stdio) for the local gflowd: lets a "
        "coding agent list, submit, follow and explain your jobs. Add it to the agent's "
        'configuration as {"mcpServers": {"gflow": {"command": "gflow-mcp"}}}.')
    parser.add_argument("--config", help="gflow.toml to read (default: the usual one)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    args = parser.parse_args(argv)
    from gflow import __version__
    if args.version:
        print(f"gflow-mcp {__version__}")
        return 0
    try:
        _server_class()
    except ImportError:
        print("gflow-mcp needs the `mcp` package: pip install 'gflow-scheduler[mcp]'",
              file=sys.stderr)
        return 1
    from gflow.client import Client
    from gflow.config import load_config
    from gflow.mcp.tools import GflowTools
    config = load_config(args.config)
    for warning in config.warnings:
        print(f"gflow-mcp: warning: {warning}", file=sys.stderr)   # stdout is the protocol
    server = build_server(GflowTools(Client.from_config(config, timeout=60)))
    server.run("stdio")
    return 0
