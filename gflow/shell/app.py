"""The gflow-shell application: a cmd2 shell whose commands are the classic tools.

Every classic tool (`gbatch`, `gqueue`, `gjob`, `gcancel`, `ginfo`, `gctl`, `gstats`) is a
command with the same arguments and output: the shell calls the tool's `main(argv)` in
process with `sys.stdout` routed to cmd2's `self.stdout` (so `> file` and `| cmd` work) and
completes from the tool's `build_parser()`, so the shell and the commands cannot drift.
Shell-only commands: short aliases, `watch`, `wait`, `status` and `use` (their tables,
parsers and bodies are in gflow.shell.commands).

Client layer (DESIGN.md §3): imports gflow.client, gflow.config, gflow.paths, gflow.parsing
and gflow.cli.* only; the tools are imported when first used, so start-up stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shlex
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

import cmd2
from cmd2 import CompletionItem, Completions

from gflow.client import ApiError, Client, ConnectionFailed
from gflow.shell.commands import (
    CATEGORY_ORDER, EXIT_OK, EXIT_RUNTIME, LIVE_STATES, SHELL, SHELL_COMMANDS, SHORTCUTS,
    SHORTCUTS_TABLE, TOOLS, ShellCommands, ShellParser, _watch_parser,
)
from gflow.shell.complete import (
    ANY_JOB, GPU, HELD_JOB, JOB, PATH, QUEUED_JOB, RESERVATION, USER, Candidate, complete_args,
)
from gflow.shell.streams import _StderrLines, _tool_stdout


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_RUNTIME


def split_commands(line: str) -> list[str]:
    """Split a line at the ';' that are outside quotes; empty commands are dropped."""
    parts, current, quote = [], [], ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "\\" and i + 1 < len(line):
            current.append(ch)
            i += 1
            ch = line[i]
        elif ch == ";":
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


class GflowShell(ShellCommands, cmd2.Cmd):
    """The gflow admin shell (see the module docstring)."""

    def __init__(self, *, config=None, config_path: Optional[str] = None,
                 history_file: str = "", startup_script: str = "",
                 stdin=None, stdout=None, commands: Sequence[str] = (),
                 exit_on_error: bool = False, interactive: Optional[bool] = None):
        from gflow.config import ShellConfig
        shell_config = config.shell if config is not None else ShellConfig()
        self.shell_config = shell_config
        super().__init__(stdin=stdin, stdout=stdout, allow_cli_args=False,
                         persistent_history_file=history_file,
                         startup_script=startup_script, include_py=False,
                         include_ipy=False, auto_suggest=True)
        self._startup_commands.extend(commands)
        stdin_obj = self.stdin
        if interactive is None:
            try:
                interactive = bool(stdin_obj.isatty())
            except (AttributeError, ValueError):
                interactive = False
        self.interactive = interactive
        self.exit_on_error = exit_on_error
        self.config_path = config_path
        self.default_error = "Unknown command '{}'. Type 'help' for the list of commands."
        self.suggest_similar_command = True
        self.default_suggestion_message = "Did you mean '{}'?"
        for name in ("run_pyscript", "py", "ipy", "_relative_run_script", "_eof"):
            if name not in self.hidden_commands:
                self.hidden_commands.append(name)
        self.last_rc = EXIT_OK          # status of the last command
        self.failed_rc = EXIT_OK        # status of the last failed command (0: none failed)
        self._rc: Optional[int] = None  # set by the command being run
        self._interrupted = False
        self._reachable: Optional[bool] = None
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lookup_failed = False
        self._parsers: dict[str, Optional[argparse.ArgumentParser]] = {}
        self._client: Optional[Client] = None
        self._completion_client: Optional[Client] = None
        self._initial_env = {k: os.environ.get(k) for k in
                             ("GFLOW_DAEMON_HOST", "GFLOW_DAEMON_PORT", "GFLOW_TIMEZONE")}
        if config is not None:
            self.host, self.port = config.daemon.host, config.daemon.port
        else:
            self.host, self.port = "localhost", 59000
        self._initial_target = (self.host, self.port)
        self._prompt_template = shell_config.prompt
        self._update_prompt()
        for name, expansion in shell_config.aliases:
            self._add_alias(name, expansion)
        self.register_precmd_hook(self._before_command)
        self.register_cmdfinalization_hook(self._after_command)

    # --- target daemon -------------------------------------------------------------------

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _update_prompt(self) -> None:
        self.prompt = (self._prompt_template.replace("{host}", self.host)
                       .replace("{port}", str(self.port))
                       .replace("{user}", os.environ.get("USER", "")))

    def client(self) -> Client:
        if self._client is None:
            self._client = Client.from_env(self.host, self.port, timeout=10)
        return self._client

    def _switch(self, host: str, port: int, timezone: Optional[str] = None,
                restore: bool = False) -> None:
        if restore:
            for key, value in self._initial_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        else:
            os.environ["GFLOW_DAEMON_HOST"] = host
            os.environ["GFLOW_DAEMON_PORT"] = str(port)
            timezone = timezone or self._initial_env.get("GFLOW_TIMEZONE")
            if timezone:
                os.environ["GFLOW_TIMEZONE"] = timezone
            else:
                os.environ.pop("GFLOW_TIMEZONE", None)
        self.host, self.port = host, port
        with self._lock:
            for c in (self._client, self._completion_client):
                if c is not None:
                    c.close()
            self._client = self._completion_client = None
            self._cache.clear()
        self._reachable = None
        self._update_prompt()

    def _connection_message(self, reason: Optional[str]) -> str:
        why = f" ({reason})" if reason else ""
        if self._reachable:
            msg = (f"Lost connection to gflowd at {self.target}{why}; "
                   "the next command tries again.")
        else:
            msg = (f"Cannot reach gflowd at {self.target}{why}: is it running? "
                   "('gflowd up' starts it; 'use' picks another)")
        self._reachable = False
        return msg

    # --- one line, several commands -------------------------------------------------------

    def onecmd_plus_hooks(self, line: str, **kwargs: Any) -> bool:
        """`q; status` runs both, as in sh (cmd2 alone would drop what follows the ';')."""
        parts = split_commands(line) if isinstance(line, str) else [line]
        if len(parts) <= 1:
            return super().onecmd_plus_hooks(line, **kwargs)
        for part in parts:
            if super().onecmd_plus_hooks(part, **kwargs):
                return True
        return False

    # --- hooks: exit statuses -----------------------------------------------------------

    def _before_command(self, data: cmd2.plugin.PrecommandData) -> cmd2.plugin.PrecommandData:
        self._rc = None
        return data

    def _after_command(self, data: cmd2.plugin.CommandFinalizationData
                       ) -> cmd2.plugin.CommandFinalizationData:
        rc = self._rc if self._rc is not None else EXIT_OK
        self.last_rc = rc
        self._cache.clear()                     # a command may have changed jobs or GPUs
        with contextlib.suppress(Exception):   # keep stdout and stderr in order in pipes
            self.stdout.flush()
        if rc not in (EXIT_OK, 130):            # 130: stopped with Ctrl-C, not a failure
            self.failed_rc = rc
            if self.exit_on_error and not data.stop:
                self.perror(f"Stopping: the last command failed (exit status {rc}).",
                            style=None)
                data = type(data)(True, data.statement)
        self.exit_code = self.failed_rc
        return data

    def default(self, statement) -> Optional[bool]:  # unknown command
        super().default(statement)
        self._rc = EXIT_RUNTIME
        return None

    def pexcept(self, exception: BaseException, **kwargs: Any) -> None:
        """Any unexpected error: one line (the traceback only with `set debug true`)."""
        self._rc = EXIT_RUNTIME
        if self.debug:
            import traceback
            traceback.print_exception(exception, file=sys.stderr)
        text = str(exception) or type(exception).__name__
        self.perror(f"Error: {text}", style=None)

    def _get_command_category(self, func) -> str:
        category = getattr(func, cmd2.constants.COMMAND_ATTR_HELP_CATEGORY, None)
        return category or SHELL

    def _add_alias(self, name: str, expansion: str) -> None:
        valid, why = self.statement_parser.is_valid_command(name)
        if not valid or name in self.get_all_commands():
            reason = why or "it is a command name"
            self.perror(f"Warning: [shell] alias '{name}' ignored: {reason}", style=None)
            return
        self.statement_parser.aliases[name] = expansion

    # --- running the classic tools -------------------------------------------------------

    def tool_module(self, tool: str):
        """gflow.cli.<tool>, or None when this installation does not have it yet."""
        name = f"gflow.cli.{tool}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name in (name, "gflow.cli"):
                return None
            raise
        if not callable(getattr(module, "main", None)):
            return None
        return module

    def tool_parser(self, tool: str) -> Optional[argparse.ArgumentParser]:
        if tool not in self._parsers:
            parser = None
            with contextlib.suppress(Exception):
                if tool in SHELL_COMMANDS:
                    parser = self._shell_parser(tool)
                else:
                    module = self.tool_module(tool)
                    if module is not None and hasattr(module, "build_parser"):
                        parser = module.build_parser()
            self._parsers[tool] = parser
        return self._parsers[tool]

    def _shell_parser(self, name: str) -> ShellParser:
        if name == "watch":
            return _watch_parser(self.shell_config.refresh_secs)
        return SHELL_COMMANDS[name][0]()

    def run_tool(self, tool: str, argv: Sequence[str]) -> int:
        """Run a classic tool in process; its output goes where this command's goes."""
        try:
            module = self.tool_module(tool)
        except Exception as exc:  # a broken install: say which part is missing
            return self._fail(f"{tool} cannot be loaded: {type(exc).__name__}: {exc}")
        if module is None:
            return self._fail(f"{tool} is not available in this installation yet "
                              f"(gflow.cli.{tool} is missing).")
        err = _StderrLines(sys.stderr, self._connection_message)
        out = _tool_stdout(self.stdout)
        rc = EXIT_OK
        with contextlib.suppress(Exception):
            self.stdout.flush()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = module.main(list(argv))
                except SystemExit as exc:
                    rc = _exit_status(exc)
                except KeyboardInterrupt:
                    print("", file=sys.stderr)
                    rc = 130
                except ConnectionFailed as exc:
                    print(str(exc), file=sys.stderr)
                    rc = EXIT_RUNTIME
                except Exception as exc:  # a bug in the tool: one line, and keep going
                    if self.debug:
                        import traceback
                        traceback.print_exception(exc, file=sys.stderr)
                    print(f"Error: {tool} failed: {type(exc).__name__}: {exc}",
                          file=sys.stderr)
                    rc = EXIT_RUNTIME
        finally:
            err.finish()
            with contextlib.suppress(Exception):
                self.stdout.flush()
        if rc is None:
            rc = EXIT_OK
        if rc == 130:
            self._interrupted = True
        if not err.connection_failed and rc == EXIT_OK:
            self._reachable = True
        self._rc = int(rc) if isinstance(rc, int) else EXIT_RUNTIME
        return self._rc

    def _fail(self, message: str, rc: int = EXIT_RUNTIME) -> int:
        self.perror(message, style=None)
        self._rc = rc
        return rc

    def _parse(self, name: str, argv: Sequence[str]) -> Optional[argparse.Namespace]:
        parser = self.tool_parser(name)
        assert parser is not None
        try:
            with contextlib.redirect_stdout(self.stdout):
                return parser.parse_args(list(argv))
        except SystemExit as exc:
            self._rc = _exit_status(exc)
            return None

    # --- completion -------------------------------------------------------------------

    def complete_tool(self, tool: str, prefix: Sequence[str], text: str, line: str,
                      begidx: int, endidx: int) -> Completions:
        parser = self.tool_parser(tool)
        if parser is None:
            return Completions()
        tokens, _raw = self.tokens_for_completion(line, begidx, endidx)
        words = list(prefix) + tokens[1:-1]
        if tool == "watch":
            inner = self._watch_inner(parser, words)
            if inner is not None:
                return self._complete_inner(inner, text, line, begidx, endidx)
        self._lookup_failed = False
        cands, kind = complete_args(parser, words, text, self._lookup, path=[tool])
        if kind == PATH:
            return self.path_complete(text, line, begidx, endidx)
        if kind is not None and not cands:
            if self._lookup_failed:
                return Completions(hint=f"(gflowd at {self.target} does not answer)")
            return Completions(hint=self._hint(kind))
        return Completions(items=[CompletionItem(c.text, display_meta=c.meta) for c in cands])

    def _watch_inner(self, parser, words: list[str]) -> Optional[list[str]]:
        """The words of the command that `watch` runs, once it has started."""
        i = 0
        while i < len(words):
            w = words[i]
            if w in ("-n", "--interval", "-c", "--count"):
                i += 2
                continue
            if w.startswith("-"):
                i += 1
                continue
            return words[i:]
        return None

    def _complete_inner(self, words: list[str], text: str, line: str, begidx: int,
                        endidx: int) -> Completions:
        command = words[0]
        if command in SHORTCUTS_TABLE:
            tool, prefix, _ = SHORTCUTS_TABLE[command]
        elif command in TOOLS or command in SHELL_COMMANDS:
            tool, prefix = command, ()
        else:
            return Completions()
        # re-enter with the inner command line ending at the cursor
        inner_line = " ".join(shlex.quote(w) for w in words) + " " + text
        start = len(inner_line) - len(text)
        return self.complete_tool(tool, prefix, text, inner_line, start, len(inner_line))

    @staticmethod
    def _hint(kind: str) -> str:
        return {JOB: "(no live jobs)", ANY_JOB: "(no jobs)", QUEUED_JOB: "(no queued jobs)",
                HELD_JOB: "(no held jobs)", GPU: "(no GPUs)", USER: "",
                RESERVATION: "(no reservations)"}.get(kind, "")

    def _fetch(self, path: str, query: Optional[dict] = None) -> Any:
        with self._lock:
            if self._completion_client is None:
                self._completion_client = Client.from_env(self.host, self.port, timeout=2)
            client = self._completion_client
        return client.call("GET", path, query=query)

    def _cached(self, key: str, fetch: Callable[[], Any], ttl: float = 2.0) -> Any:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        try:
            value = fetch()
        except (ConnectionFailed, ApiError, OSError, ValueError, KeyError, TypeError):
            value = None
            self._lookup_failed = True
        self._cache[key] = (now, value)
        return value

    def _live_jobs(self) -> list[dict]:
        jobs = self._cached("jobs", lambda: self._fetch(
            "/jobs", {"state": ",".join(LIVE_STATES)}))
        return [j for j in jobs or [] if isinstance(j, dict) and "id" in j]

    def _reservations(self) -> list[dict]:
        found = self._cached("reservations", lambda: self._fetch("/reservations"))
        return [r for r in found or [] if isinstance(r, dict) and "id" in r]

    def _all_jobs(self) -> list[dict]:
        jobs = self._cached("all_jobs", lambda: self._fetch("/jobs"))
        return [j for j in jobs or [] if isinstance(j, dict) and "id" in j]

    def _lookup(self, kind: str) -> list[Candidate]:
        """Live values of a kind, for completion (empty when the daemon does not answer)."""
        if kind == ANY_JOB:
            # finished jobs too (`gjob log/show/redo`), newest first: the likely one
            return [Candidate(str(j["id"]), f"{j.get('state', '?')} {j.get('run_name') or ''}")
                    for j in sorted(self._all_jobs(), key=lambda j: -j["id"])]
        if kind in (JOB, QUEUED_JOB, HELD_JOB):
            wanted = {JOB: LIVE_STATES, QUEUED_JOB: ("Queued",), HELD_JOB: ("Hold",)}[kind]
            return [Candidate(str(j["id"]), f"{j.get('state', '?')} {j.get('run_name') or ''}")
                    for j in self._live_jobs() if j.get("state") in wanted]
        if kind == GPU:
            info = self._cached("info", lambda: self._fetch("/info")) or {}
            allowed = info.get("allowed_gpu_indices") if isinstance(info, dict) else None
            out = []
            for gpu in (info.get("gpus") or []) if isinstance(info, dict) else []:
                meta = "available" if gpu.get("available") else "in use"
                if allowed is not None and gpu.get("index") not in allowed:
                    meta += ", restricted"
                out.append(Candidate(str(gpu.get("index")), meta))
            return out
        if kind == USER:
            users = {os.environ.get("USER") or ""}
            users.update(str(j.get("submitted_by")) for j in self._live_jobs()
                         if j.get("submitted_by"))
            users.update(str(r.get("user")) for r in self._reservations() if r.get("user"))
            users.discard("")
            return [Candidate(u) for u in sorted(users)]
        if kind == RESERVATION:
            out = []
            for r in self._reservations():
                spec = r.get("gpu_spec") or {}
                gpus = (f"{spec['count']} GPUs" if "count" in spec else
                        "GPU " + ",".join(map(str, spec.get("indices") or [])))
                out.append(Candidate(str(r["id"]),
                                     f"{r.get('user', '?')} {r.get('status', '?')} {gpus}"))
            return out
        return []

    # --- help ----------------------------------------------------------------------------

    def do_help(self, statement) -> None:
        """List the commands by area, or show one command's help: help [COMMAND]"""
        argv = statement.argv[1:]
        topics = [a for a in argv if a not in ("-v", "--verbose")]
        if not topics:
            self._print_command_list()
            return
        for topic in topics:
            self._help_on(topic)

    def _print_command_list(self) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        for name in sorted(self.get_visible_commands()):
            func = self.get_command_func(name)
            if func is None:
                continue
            doc = (func.__doc__ or "").strip().splitlines()
            groups.setdefault(self._get_command_category(func), []).append(
                (name, doc[0].strip() if doc else ""))
        order = list(CATEGORY_ORDER) + sorted(c for c in groups if c not in CATEGORY_ORDER)
        width = max((len(n) for items in groups.values() for n, _ in items), default=8) + 2
        first = True
        for category in order:
            items = groups.get(category)
            if not items:
                continue
            if not first:
                self.poutput("")
            first = False
            self.poutput(f"{category}:")
            for name, doc in items:
                self.poutput(f"  {name:<{width}}{doc}".rstrip())
        if self.aliases:
            self.poutput("")
            self.poutput("Aliases:")
            for name, value in sorted(self.aliases.items()):
                self.poutput(f"  {name:<{width}}{value}")
        self.poutput("")
        self.poutput("'help COMMAND' or 'COMMAND --help' for details; Tab completes commands, "
                     "options, job ids, GPUs, users and reservation ids.")
        self.poutput("';' separates commands; '> FILE' and '| PROGRAM' redirect a command's "
                     "output; '!' runs a program.")

    def _help_on(self, topic: str) -> None:
        if topic in self.aliases:
            self.poutput(f"{topic} is an alias for: {self.aliases[topic]}")
            return
        if topic in SHORTCUTS_TABLE:
            tool, prefix, _ = SHORTCUTS_TABLE[topic]
            self.poutput(f"{topic} is short for: {' '.join((tool,) + prefix)}")
            self._print_tool_help(tool, prefix)
            return
        if topic in TOOLS or topic in SHELL_COMMANDS:
            self._print_tool_help(topic, ())
            return
        func = self.get_command_func(topic)
        if func is None:
            self._fail(f"help: no command '{topic}'. Type 'help' for the list of commands.")
            return
        parser = self.command_parsers.get(func)
        if parser is not None:
            self.poutput(parser.format_help().rstrip("\n"))
        else:
            self.poutput((func.__doc__ or "").strip())

    def _print_tool_help(self, tool: str, prefix: Sequence[str]) -> None:
        parser = self.tool_parser(tool)
        if parser is None:
            self._fail(f"{tool} is not available in this installation yet "
                       f"(gflow.cli.{tool} is missing).")
            return
        for word in prefix:
            sub = next((a for a in parser._actions
                        if isinstance(a, argparse._SubParsersAction)), None)
            if sub is None or word not in sub.choices:
                break
            parser = sub.choices[word]
        with contextlib.redirect_stdout(self.stdout):
            self.poutput(parser.format_help().rstrip("\n"))

    def complete_help(self, text, line, begidx, endidx) -> Completions:
        names = sorted(set(self.get_visible_commands()) | set(self.aliases))
        return self.basic_complete(text, line, begidx, endidx, names)


def _make_tool_command(name: str, tool: str, prefix: tuple[str, ...], doc: str,
                       category: str):
    def do(self: GflowShell, statement) -> None:
        self.run_tool(tool, list(prefix) + statement.argv[1:])

    def complete(self: GflowShell, text, line, begidx, endidx) -> Completions:
        return self.complete_tool(tool, prefix, text, line, begidx, endidx)

    do.__name__ = do.__qualname__ = f"do_{name}"
    complete.__name__ = complete.__qualname__ = f"complete_{name}"
    do.__doc__ = doc
    setattr(do, cmd2.constants.COMMAND_ATTR_HELP_CATEGORY, category)
    setattr(GflowShell, f"do_{name}", do)
    setattr(GflowShell, f"complete_{name}", complete)


def _make_shell_command(name: str, doc: str):
    def do(self: GflowShell, statement) -> None:
        self.run_shell_command(name, statement)

    def complete(self: GflowShell, text, line, begidx, endidx) -> Completions:
        return self.complete_tool(name, (), text, line, begidx, endidx)

    do.__name__ = do.__qualname__ = f"do_{name}"
    complete.__name__ = complete.__qualname__ = f"complete_{name}"
    do.__doc__ = doc
    setattr(do, cmd2.constants.COMMAND_ATTR_HELP_CATEGORY, SHELL)
    setattr(GflowShell, f"do_{name}", do)
    setattr(GflowShell, f"complete_{name}", complete)


for _tool, (_category, _doc) in TOOLS.items():
    _make_tool_command(_tool, _tool, (), _doc, _category)
for _name, (_tool, _prefix, _doc) in SHORTCUTS_TABLE.items():
    _make_tool_command(_name, _tool, _prefix, _doc, SHORTCUTS)
for _name, (_factory, _doc) in SHELL_COMMANDS.items():
    _make_shell_command(_name, _doc)
