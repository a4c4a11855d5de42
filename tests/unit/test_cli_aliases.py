"""What each 0.4.13 flag, alias and subcommand alias *sets*, from the option tables of
spec/cli.md (§6.1 gbatch, §8.1 gqueue, §9 ginfo, §10 gjob, §11 gcancel, §12 gctl, §14 gstats),
written out here rather than read from the parsers under test.

`expected_values(tool, argv)` walks a command line with these tables and says which
attribute each option must set to which value; test_cli_commands.py's
`test_every_0413_flag_and_alias_parses` checks every combined command line with it, and the
tests below check each alias against its canonical spelling one by one.
"""

from __future__ import annotations

import re

import pytest

from gflow.cli import gbatch, gcancel, gctl, ginfo, gjob, gqueue, gstats

TOOLS = {"gbatch": gbatch, "gqueue": gqueue, "gjob": gjob, "gcancel": gcancel,
         "ginfo": ginfo, "gctl": gctl, "gstats": gstats}

COUNT = object()     # -v/-q: only change verbosity; at least one given


def ids(text):
    return [int(x) for x in text.split(",")]


CONVERT = {"str": str, "int": int, "upper": str.upper, "ids": ids}


def flags(*groups):
    """(spellings, dest, kind) groups -> {spelling: (dest, kind)}."""
    out = {}
    for spellings, dest, kind in groups:
        for s in spellings.split():
            out[s] = (dest, kind)
    return out


VERBOSITY = [("-v --verbose", "verbose", "count"), ("-q --quiet", "quiet", "count"),
             ("--config", "config", "str")]

SPEC = {
    "gbatch": {"rest": "command", "flags": flags(
        ("-c --conda-env", "conda_env", "str"),
        ("-g --gpus --gres", "gpus", "int"),
        ("--shared", "shared", "true"),
        ("-p --priority --nice", "priority", "int"),
        ("-d --depends-on --dependency", "depends_on", "str"),
        ("--depends-on-all", "depends_on_all", "str"),
        ("--depends-on-any", "depends_on_any", "str"),
        ("--no-auto-cancel", "no_auto_cancel", "true"),
        ("--array", "array", "str"),
        ("-t --time --time-limit --timelimit", "time", "str"),
        ("-m --memory --max-mem --max-memory", "memory", "str"),
        ("--gpu-memory --max-gpu-mem --max-gpu-memory", "gpu_memory", "str"),
        ("-n --name --job-name -J", "name", "str"),
        ("--auto-close", "auto_close", "true"),
        ("--param", "param", "append"),
        ("--dry-run", "dry_run", "true"),
        ("--max-concurrent", "max_concurrent", "int"),
        ("--param-file", "param_file", "str"),
        ("--name-template", "name_template", "str"),
        ("-P --project", "project", "str"),
        ("--export", "export", "upper"),       # ours (DESIGN.md: environment capture)
        ("--config", "config", "str"))},
    "gqueue": {"flags": flags(
        ("-u --user --users", "user", "str"),
        ("-n --limit", "limit", "int"),
        ("-a --all", "all", "true"),
        ("-c --completed", "completed", "true"),
        ("--since", "since", "str"),
        ("-r --sort", "sort", "str"),
        ("-s --states", "states", "str"),
        ("-j --jobs --job", "jobs", "str"),
        ("-N --names", "names", "str"),
        ("-P --project", "project", "str"),
        ("-f --format", "format", "str"),
        ("-g --group", "group", "true"),
        ("-t --tree", "tree", "true"),
        ("-T --tmux", "tmux", "true"),
        ("-o --output", "output", "str"),
        ("-w --watch", "watch", "true"),
        ("--interval", "interval", "int"),
        ("--config", "config", "str"))},
    "ginfo": {"flags": flags(*VERBOSITY)},
    "gcancel": {"pos": [("ids", "str")], "flags": flags(
        ("--dry-run", "dry_run", "true"),
        ("--cancel --kill", "cancel", "true"),
        ("--finish", "finish", "int"),
        ("--fail", "fail", "int"),
        ("--config", "config", "str"))},
    "gstats": {"flags": flags(
        ("-u --user", "user", "str"),
        ("-a --all-users", "all_users", "true"),
        ("-t --since", "since", "str"),
        ("-o --output", "output", "str"),
        ("--config", "config", "str"))},
    "gjob": {"flags": flags(*VERBOSITY), "subdest": "cmd", "subs": {
        "attach": {"aliases": ["a"], "pos": [("job", "str")], "flags": flags(*VERBOSITY)},
        "log": {"aliases": ["l"], "pos": [("job", "str")],
                "flags": flags(*VERBOSITY, ("-f --follow", "follow", "true"))},
        "hold": {"aliases": ["h"], "pos": [("job", "str")], "flags": flags(*VERBOSITY)},
        "release": {"aliases": ["r"], "pos": [("job", "str")], "flags": flags(*VERBOSITY)},
        "show": {"aliases": ["s"], "pos": [("job", "str")], "flags": flags(*VERBOSITY)},
        "update": {"aliases": ["u"], "pos": [("job", "str")], "flags": flags(
            *VERBOSITY,
            ("-c --command", "command", "str"),
            ("-s --script", "script", "str"),
            ("-g --gpus", "gpus", "int"),
            ("-e --conda-env", "conda_env", "str"),
            ("--clear-conda-env", "clear_conda_env", "true"),
            ("-p --priority", "priority", "int"),
            ("-t --time-limit", "time_limit", "str"),
            ("--clear-time-limit", "clear_time_limit", "true"),
            ("-m --memory-limit", "memory_limit", "str"),
            ("--clear-memory-limit", "clear_memory_limit", "true"),
            ("--gpu-memory --max-gpu-mem", "gpu_memory", "str"),
            ("--clear-gpu-memory-limit", "clear_gpu_memory_limit", "true"),
            ("-d --depends-on", "depends_on", "ids"),
            ("--depends-on-all", "depends_on_all", "ids"),
            ("--depends-on-any", "depends_on_any", "ids"),
            ("--auto-cancel-on-dep-failure", "auto_cancel_on_dep_failure", "true"),
            ("--no-auto-cancel-on-dep-failure", "no_auto_cancel_on_dep_failure", "true"),
            ("--max-concurrent", "max_concurrent", "int"),
            ("--clear-max-concurrent", "clear_max_concurrent", "true"),
            ("--param", "param", "append"))},
        "redo": {"aliases": [], "pos": [("job", "str")], "flags": flags(
            *VERBOSITY,
            ("-g --gpus", "gpus", "int"),
            ("-p --priority", "priority", "int"),
            ("-d --depends-on", "depends_on", "str"),
            ("-t --time", "time", "str"),
            ("-m --memory", "memory", "str"),
            ("--gpu-memory --max-gpu-mem", "gpu_memory", "str"),
            ("-e --conda-env", "conda_env", "str"),
            ("--clear-deps", "clear_deps", "true"),
            ("--cascade", "cascade", "true"))},
        "close-sessions": {"aliases": ["close"], "flags": flags(
            *VERBOSITY,
            ("-j --jobs", "jobs", "str"),
            ("-s --state", "state", "str"),
            ("-p --pattern", "pattern", "str"),
            ("-a --all", "all", "true"))},
    }},
    "gctl": {"flags": flags(("--config", "config", "str")), "subdest": "cmd", "subs": {
        "set-gpus": {"pos": [("gpu_spec", "str")], "flags": flags(("--config", "config", "str"))},
        "show-gpus": {"flags": flags(("--config", "config", "str"))},
        "set-limit": {"pos": [("target", "str"), ("limit", "int")],
                      "flags": flags(("--config", "config", "str"))},
        "reserve": {"flags": flags(("--config", "config", "str")), "subdest": "reserve_cmd",
                    "subs": {
            "create": {"flags": flags(
                ("--user", "user", "str"), ("--gpus", "gpus", "int"),
                ("--gpu-spec", "gpu_spec", "str"), ("--start", "start", "str"),
                ("--duration", "duration", "str"), ("--timezone", "timezone", "str"),
                ("--config", "config", "str"))},
            "list": {"flags": flags(
                ("--user", "user", "str"), ("--status", "status", "str"),
                ("--active", "active", "true"), ("--timeline", "timeline", "true"),
                ("--range", "range", "str"), ("--from", "from_", "str"),
                ("--to", "to", "str"), ("--timezone", "timezone", "str"),
                ("--config", "config", "str"))},
            "get": {"pos": [("id", "int")], "flags": flags(("--timezone", "timezone", "str"),
                                                            ("--config", "config", "str"))},
            "cancel": {"pos": [("id", "int")], "flags": flags(("--config", "config", "str"))},
        }},
    }},
}

# gjob's subcommand aliases as spec/cli.md §10 lists them: alias -> subcommand.
GJOB_ALIASES_0413 = {"a": "attach", "l": "log", "h": "hold", "r": "release", "u": "update",
                     "s": "show", "close": "close-sessions"}


def expected_values(tool: str, argv: list) -> dict:
    """{attribute: value} that parsing `argv` must give, by the spec tables above.
    Subcommands appear as {dest: ("sub", canonical name)}."""
    out: dict = {}
    _walk(SPEC[tool], list(argv), out)
    return out


def _walk(spec: dict, argv: list, out: dict) -> None:
    table, pos = spec.get("flags", {}), list(spec.get("pos", []))
    i = 0
    while i < len(argv):
        tok = argv[i]
        short_run = re.fullmatch(r"-([vq])\1+", tok)          # -vvv
        if short_run and f"-{short_run.group(1)}" in table:
            out[table[f"-{short_run.group(1)}"][0]] = COUNT
            i += 1
        elif tok in table:
            dest, kind = table[tok]
            if kind == "true":
                out[dest] = True
                i += 1
            elif kind == "count":
                out[dest] = COUNT
                i += 1
            elif kind == "append":
                out.setdefault(dest, []).append(argv[i + 1])
                i += 2
            else:
                out[dest] = CONVERT[kind](argv[i + 1])
                i += 2
        elif "subs" in spec:
            name = tok if tok in spec["subs"] else next(
                n for n, s in spec["subs"].items() if tok in s.get("aliases", ()))
            out[spec["subdest"]] = ("sub", name)
            _walk(spec["subs"][name], argv[i + 1:], out)
            return
        elif "rest" in spec:
            out[spec["rest"]] = argv[i:]
            return
        else:
            dest, kind = pos.pop(0)
            out[dest] = CONVERT[kind](tok)
            i += 1


def check_values(tool: str, argv: list, args) -> None:
    """Every option in `argv` set what the spec tables say, on the attribute they name."""
    expected = expected_values(tool, argv)
    assert expected, argv
    for dest, value in expected.items():
        got = getattr(args, dest)
        if value is COUNT:
            assert got >= 1, (dest, argv)
        elif isinstance(value, tuple) and value[0] == "sub":
            # The parser keeps the word as typed; the tool maps an alias to its command.
            typed = got
            assert typed == value[1] or GJOB_ALIASES_0413.get(typed) == value[1], (dest, argv)
            if tool == "gjob":
                assert gjob.ALIASES.get(typed, typed) == value[1], (typed, argv)
        else:
            assert got == value, (dest, got, value, argv)


# --- each alias sets exactly what its canonical spelling sets --------------------------------

def alias_cases():
    """(tool, prefix, spelling, canonical, value, suffix) for every flag with more than one
    spelling in the tables."""
    cases = []
    value_for = {"str": "x7", "int": "3", "upper": "none", "ids": "4,5", "append": "k=v"}
    contexts = {"gbatch": ([], ["echo"]), "gqueue": ([], []), "gcancel": ([], ["1"]),
                "gstats": ([], []), "ginfo": ([], []),
                ("gjob", "update"): (["update", "1"], []),
                ("gjob", "redo"): (["redo", "1"], []),
                ("gjob", "close-sessions"): (["close-sessions"], []),
                ("gjob", "log"): (["log", "1"], [])}
    for key, (prefix, suffix) in contexts.items():
        spec = SPEC[key] if isinstance(key, str) else SPEC[key[0]]["subs"][key[1]]
        tool = key if isinstance(key, str) else key[0]
        by_dest: dict = {}
        for spelling, (dest, kind) in spec["flags"].items():
            by_dest.setdefault((dest, kind), []).append(spelling)
        for (dest, kind), spellings in by_dest.items():
            if len(spellings) < 2 or kind == "count":
                continue
            canonical = next(s for s in spellings if s.startswith("--"))  # the long form
            for s in spellings:
                if s != canonical:
                    cases.append((tool, prefix, s, canonical, value_for.get(kind), suffix))
    return cases


ALIAS_CASES = alias_cases()


@pytest.mark.parametrize("tool,prefix,spelling,canonical,value,suffix", ALIAS_CASES,
                         ids=[f"{c[0]}{'-' + c[1][0] if c[1] else ''}{c[2]}" for c in ALIAS_CASES])
def test_alias_sets_what_its_canonical_flag_sets(tool, prefix, spelling, canonical, value,
                                                 suffix):
    parser = TOOLS[tool].build_parser()
    tail = [] if value is None else [value]
    alias_ns = vars(parser.parse_args(prefix + [spelling] + tail + suffix))
    canon_ns = vars(TOOLS[tool].build_parser().parse_args(prefix + [canonical] + tail + suffix))
    plain_ns = vars(TOOLS[tool].build_parser().parse_args(prefix + suffix))
    assert alias_ns == canon_ns                    # nothing else set, nothing set elsewhere
    assert alias_ns != plain_ns                    # and it does set something
    check_values(tool, prefix + [spelling] + tail + suffix, parser.parse_args(
        prefix + [spelling] + tail + suffix))


def test_every_alias_of_the_spec_is_covered():
    spelled = {(c[0], c[2]) for c in ALIAS_CASES}
    for tool, alias in [("gbatch", "--gres"), ("gbatch", "--nice"), ("gbatch", "--dependency"),
                        ("gbatch", "--time-limit"), ("gbatch", "--timelimit"),
                        ("gbatch", "--max-mem"), ("gbatch", "--max-memory"),
                        ("gbatch", "--max-gpu-mem"), ("gbatch", "--max-gpu-memory"),
                        ("gbatch", "--job-name"), ("gbatch", "-J"), ("gqueue", "--users"),
                        ("gqueue", "--job"), ("gcancel", "--kill"), ("gjob", "--max-gpu-mem")]:
        assert (tool, alias) in spelled


@pytest.mark.parametrize("alias,name", sorted(GJOB_ALIASES_0413.items()))
def test_gjob_subcommand_alias_runs_its_subcommand(alias, name):
    argv = [alias] + ([] if name == "close-sessions" else ["7"])
    args = gjob.build_parser().parse_args(argv)
    assert gjob.ALIASES.get(args.cmd, args.cmd) == name
    long_args = gjob.build_parser().parse_args([name] + argv[1:])
    assert {k: v for k, v in vars(args).items() if k != "cmd"} == {
        k: v for k, v in vars(long_args).items() if k != "cmd"}


@pytest.mark.parametrize("alias,action,state", [("h", "hold", "Queued"),
                                                ("r", "release", "Hold")])
def test_gjob_hold_and_release_aliases_send_their_action(alias, action, state, monkeypatch,
                                                         capsys):
    sent = []

    class Client:
        def request(self, method, path, body=None, query=None):
            sent.append((method, path))
            return 200, None

        def action(self, job_id, action):
            return self.request("POST", f"/jobs/{job_id}/{action}")

        def get_job(self, job_id):
            return {"id": job_id, "state": state}

    monkeypatch.setattr(gjob, "client_for", lambda args: Client())
    assert gjob.main([alias, "7"]) == 0
    assert ("POST", f"/jobs/7/{action}") in sent
