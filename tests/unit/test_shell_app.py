"""gflow-shell in process, without a daemon: help, error lines, missing tools, aliases,
prompt, completion wiring and exit statuses."""

from __future__ import annotations

import io
import sys
import types

import pytest

from conftest import free_port
from gflow.client import CONNECT_HELP
from gflow.config import Config, ShellConfig
from gflow.shell.app import GflowShell
from gflow.shell.commands import (
    CATEGORY_ORDER, SHELL_COMMANDS, SHORTCUTS_TABLE, TOOLS, parse_target,
)
from gflow.shell.complete import (
    ANY_JOB, GPU, HELD_JOB, JOB, QUEUED_JOB, RESERVATION, Candidate,
)
from gflow.shell.streams import _StderrLines, _tool_stdout


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An isolated HOME and a daemon address where nothing listens."""
    port = free_port()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USER", "tester")
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "GFLOW_TIMEZONE",
                "GFLOW_DAEMON_GPUS", "GFLOW_DAEMON_GPU_ALLOCATION_STRATEGY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GFLOW_DAEMON_HOST", "127.0.0.1")
    monkeypatch.setenv("GFLOW_DAEMON_PORT", str(port))
    return port


def make(port=None, **shell_config) -> GflowShell:
    from dataclasses import replace
    config = Config(shell=ShellConfig(**shell_config))
    if port is not None:
        config = replace(config, daemon=replace(config.daemon, host="127.0.0.1", port=port))
    return GflowShell(config=config, stdin=io.StringIO(), stdout=io.StringIO(),
                      interactive=False)


def run(shell: GflowShell, line: str, capsys) -> tuple[str, str]:
    shell.stdout = io.StringIO()
    shell.onecmd_plus_hooks(line)
    err = capsys.readouterr().err
    return shell.stdout.getvalue(), err


def test_help_lists_every_command_grouped_by_area(env, capsys):
    out, _ = run(make(), "help", capsys)
    headers = [line[:-1] for line in out.splitlines() if line and not line.startswith(" ")
               and line.endswith(":")]
    assert headers == list(CATEGORY_ORDER)
    sections = {h: [] for h in headers}
    current = None
    for line in out.splitlines():
        if line[:-1] in sections:
            current = line[:-1]
        elif line.startswith("  ") and current:
            sections[current].append(line.split()[0])
    assert set(sections["Jobs"]) | set(sections["Cluster"]) == set(TOOLS)
    assert set(sections["Shortcuts"]) == set(SHORTCUTS_TABLE)
    assert set(SHELL_COMMANDS) | {"help", "quit", "run_script", "history", "alias"} <= \
        set(sections["Shell"])
    assert "run_pyscript" not in out and "Cmd2" not in out


def test_a_daemon_that_does_not_answer_is_one_line(env, capsys):
    shell = make(env)
    out, err = run(shell, "q", capsys)
    assert out == ""
    assert err.splitlines() == [
        f"Cannot reach gflowd at 127.0.0.1:{env}: is it running? ('gflowd up' starts it; "
        "'use' picks another)"]
    assert shell.last_rc == 1
    shell._reachable = True                  # as after a command that worked
    _, err = run(shell, "gcancel 1", capsys)
    assert err.splitlines() == [f"Lost connection to gflowd at 127.0.0.1:{env}; the next "
                                "command tries again."]
    _, err = run(shell, "status", capsys)
    assert err.startswith("Cannot reach gflowd") and len(err.splitlines()) == 1


def test_stderr_filter_keeps_other_lines_and_the_reason():
    target = io.StringIO()
    lines = _StderrLines(target, lambda reason: f"DOWN[{reason}]")
    lines.write("before\n" + CONNECT_HELP + "\n(timed out)\nafter")
    lines.finish()
    assert target.getvalue() == "before\nDOWN[timed out]\nafter"
    assert lines.connection_failed


def fake_tool(monkeypatch, name, main):
    module = types.ModuleType(f"gflow.cli.{name}")
    module.main = main
    module.build_parser = lambda: __import__("argparse").ArgumentParser(prog=name)
    monkeypatch.setitem(sys.modules, f"gflow.cli.{name}", module)


def test_tools_are_run_in_process_and_their_failures_are_contained(env, monkeypatch, capsys):
    def boom(argv):
        raise RuntimeError("boom")

    def exits(argv):
        raise SystemExit(int(argv[0]))

    def writes(argv):
        print("text", argv)
        sys.stdout.buffer.write("bytes é\n".encode())
        print("to stderr", file=sys.stderr)
        return 0

    fake_tool(monkeypatch, "gboom", boom)
    fake_tool(monkeypatch, "gexit", exits)
    fake_tool(monkeypatch, "gwrite", writes)
    shell = make()
    assert shell.run_tool("gboom", []) == 1
    assert capsys.readouterr().err == "Error: gboom failed: RuntimeError: boom\n"
    assert shell.run_tool("gexit", ["3"]) == 3
    shell.stdout = io.StringIO()
    assert shell.run_tool("gwrite", ["a b"]) == 0
    assert shell.stdout.getvalue() == "text ['a b']\nbytes é\n"
    assert capsys.readouterr().err == "to stderr\n"


def test_a_missing_tool_says_so(env, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gflow.cli.gstats", None)   # as if not written yet
    shell = make()
    _, err = run(shell, "gstats", capsys)
    assert err == ("gstats is not available in this installation yet "
                   "(gflow.cli.gstats is missing).\n")
    assert shell.last_rc == 1
    _, err = run(shell, "help gstats", capsys)
    assert "not available" in err
    assert shell.complete("", "gstats ", 7, 7).to_strings() == ()


def test_aliases_and_prompt_from_the_config(env, capsys):
    shell = make(env, prompt="{user}@{host}:{port}> ",
                 aliases=(("qa", "gqueue -a"), ("q", "gqueue -c"), ("bad name", "x")))
    err = capsys.readouterr().err
    assert "[shell] alias 'q' ignored" in err and "[shell] alias 'bad name' ignored" in err
    assert shell.aliases == {"qa": "gqueue -a"}
    assert shell.prompt == f"tester@127.0.0.1:{env}> "
    shell.onecmd_plus_hooks("use 10.1.2.3:4567")
    assert shell.prompt == "tester@10.1.2.3:4567> "


def test_use_sets_the_daemon_for_the_tools_and_default_restores(env, tmp_path, capsys):
    import os
    shell = make(env)
    out, _ = run(shell, "use 127.0.0.1:1", capsys)
    assert out == "Using gflowd at 127.0.0.1:1 (not answering yet: 'gflowd up' starts it).\n"
    assert os.environ["GFLOW_DAEMON_PORT"] == "1"
    config = tmp_path / "other.toml"
    config.write_text('timezone = "UTC"\n[daemon]\nhost = "127.0.0.1"\nport = 2\n')
    out, _ = run(shell, f"use {config}", capsys)
    assert "127.0.0.1:2" in out                # the file wins over the earlier `use`
    assert os.environ["GFLOW_DAEMON_PORT"] == "2" and os.environ["GFLOW_TIMEZONE"] == "UTC"
    run(shell, "use default", capsys)
    assert os.environ["GFLOW_DAEMON_PORT"] == str(env)
    assert "GFLOW_TIMEZONE" not in os.environ
    assert (shell.host, shell.port) == ("127.0.0.1", env)


def test_parse_target():
    assert parse_target("gpu-box:1234") == ("gpu-box", 1234)
    assert parse_target("gpu-box") == ("gpu-box", 59000)
    assert parse_target(":7") == ("", 7)
    assert parse_target("[::1]:8") == ("::1", 8)
    for bad in ("h:0", "h:x", "h:70000", "[::1"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_completion_is_wired_to_the_parsers_and_live_values(env, monkeypatch):
    shell = make()
    live = {JOB: ["3", "12"], QUEUED_JOB: ["3"], HELD_JOB: ["12"], GPU: ["0", "1"],
            RESERVATION: ["7"], ANY_JOB: ["3", "12", "15"]}  # 15: finished
    monkeypatch.setattr(shell, "_lookup",
                        lambda kind: [Candidate(v, kind) for v in live.get(kind, [])])

    def complete(line):
        text = line.split(" ")[-1]
        return list(shell.complete(text, line, len(line) - len(text), len(line)).to_strings())

    assert complete("hold ") == ["3"]
    assert complete("release ") == ["12"]
    assert complete("gjob show ") == ["3", "12", "15"]
    assert complete("show 1") == ["12", "15"]
    assert complete("cancel ") == ["3", "12"]
    assert complete("q --al") == ["--all"]
    assert complete("watch -n 1 show ") == ["3", "12", "15"]
    assert complete("watch -n 1 q --al") == ["--all"]
    assert "show" in complete("gjob ")
    assert complete("help sh") == ["shell", "shortcuts", "show"]
    assert complete("gc") == ["gcancel", "gctl"]
    if "gctl" in TOOLS and shell.tool_parser("gctl") is not None:
        assert complete("gctl set-gpus ") == ["0", "1"]
        assert complete("gctl reserve cancel ") == ["7"]


def test_exit_status_of_a_script_is_the_last_failure(env, capsys):
    shell = make()
    shell.onecmd_plus_hooks("wait x")
    assert shell.last_rc == 2 and shell.exit_code == 2
    shell.onecmd_plus_hooks("help")
    assert shell.last_rc == 0 and shell.exit_code == 2
    shell.exit_on_error = True
    assert shell.onecmd_plus_hooks("nope") is True     # -e: stop
    assert "Stopping: the last command failed" in capsys.readouterr().err


def test_tool_stdout_gets_a_byte_layer_only_when_missing():
    real = sys.__stdout__
    assert _tool_stdout(real) is real
    buf = io.StringIO()
    wrapped = _tool_stdout(buf)
    wrapped.buffer.write(b"caf\xc3")
    wrapped.buffer.write(b"\xa9\n")                     # a character split across writes
    wrapped.write("ok\n")
    assert buf.getvalue() == "café\nok\n"


def test_semicolons_separate_commands_outside_quotes(env, capsys):
    from gflow.shell.app import split_commands
    assert split_commands("q -a; status") == ["q -a", "status"]
    assert split_commands("gbatch bash -c 'a; b'; q") == ["gbatch bash -c 'a; b'", "q"]
    assert split_commands('echo "x;y" \\; z;;') == ['echo "x;y" \\; z']
    assert split_commands(" ; ") == []
    shell = make()
    out, err = run(shell, "help q; help show; bogus; help log", capsys)
    assert "short for: gqueue" in out and "short for: gjob show" in out
    assert "short for: gjob log" in out              # went on after the unknown command
    assert "Unknown command 'bogus'" in err
    assert shell.onecmd_plus_hooks("help q; quit; help show") is True
