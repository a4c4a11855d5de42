"""The argparse-driven completion logic of gflow-shell (pure: no daemon, no terminal)."""

from __future__ import annotations

import argparse

import pytest

from gflow.shell.complete import (
    ANY_JOB, GPU, HELD_JOB, JOB, PATH, QUEUED_JOB, RESERVATION, USER, Candidate, analyse,
    complete_args, value_kind,
)

LIVE = {JOB: ["3", "12"], QUEUED_JOB: ["3"], HELD_JOB: ["12"], GPU: ["0", "1"],
        USER: ["alice", "bob"], RESERVATION: ["1", "2"], ANY_JOB: ["15", "12", "3"]}


def lookup(kind):
    return [Candidate(v, f"{kind} {v}") for v in LIVE.get(kind, [])]


def texts(parser, words, text, path=()):
    found, kind = complete_args(parser, words, text, lookup, path)
    return [c.text for c in found], kind


def tool(name):
    import importlib
    return importlib.import_module(f"gflow.cli.{name}").build_parser()


@pytest.fixture
def toy():
    """A parser shaped like the tools: options, subcommands with aliases, positionals."""
    p = argparse.ArgumentParser(prog="toy")
    p.add_argument("-u", "--user", metavar="USER")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--secret", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    s = sub.add_parser("show", aliases=["s"], help="show jobs")
    s.add_argument("job", metavar="JOB")
    h = sub.add_parser("hold", help="hold jobs")
    h.add_argument("job", metavar="JOB")
    r = sub.add_parser("release", help="release jobs")
    r.add_argument("ids", nargs="+", metavar="IDS")
    res = sub.add_parser("reserve", help="reservations")
    rsub = res.add_subparsers(dest="action", required=True)
    c = rsub.add_parser("cancel", help="cancel one")
    c.add_argument("id", metavar="ID")
    g = sub.add_parser("set-gpus", help="allow-list")
    g.add_argument("spec", metavar="GPU_SPEC")
    run = sub.add_parser("run", help="a command")
    run.add_argument("--mode", choices=["fast", "slow"])
    run.add_argument("-n", "--count", type=int)
    run.add_argument("command", nargs=argparse.REMAINDER)
    return p


def test_subcommands_then_their_arguments(toy):
    assert texts(toy, [], "") == (["show", "hold", "release", "reserve", "set-gpus", "run",
                                   "s"], None)
    assert texts(toy, [], "re") == (["release", "reserve"], None)
    assert texts(toy, ["show"], "") == (["3", "12"], JOB)
    assert texts(toy, ["s"], "1") == (["12"], JOB)          # an alias walks the same way
    assert texts(toy, ["hold"], "") == (["3"], QUEUED_JOB)  # only queued jobs can be held
    assert texts(toy, ["release"], "") == (["12"], HELD_JOB)
    assert texts(toy, ["release", "12"], "") == (["12"], HELD_JOB)   # nargs=+ goes on
    assert texts(toy, ["reserve"], "") == (["cancel"], None)
    assert texts(toy, ["reserve", "cancel"], "") == (["1", "2"], RESERVATION)
    assert texts(toy, ["set-gpus"], "") == (["0", "1"], GPU)


def test_options_and_option_values(toy):
    found, _ = texts(toy, [], "-")
    assert found == ["-h", "--help", "-u", "--user", "-a", "--all"]   # not --secret
    assert texts(toy, ["-u"], "") == (["alice", "bob"], USER)
    assert texts(toy, ["-u", "bob", "-a"], "sh") == (["show"], None)
    assert texts(toy, ["--user=bob"], "ho") == (["hold"], None)
    assert texts(toy, ["show", "3"], "--h") == (["--help"], None)
    assert texts(toy, ["run", "--mode"], "") == (["fast", "slow"], None)
    assert texts(toy, ["run", "-n", "2"], "") == ([], PATH)        # the command: a path
    assert texts(toy, ["run", "python"], "-") == ([], None)        # the job's own argv
    assert texts(toy, ["show", "3"], "") == (["-h", "--help"], None)  # only options left
    assert texts(toy, ["show", "3"], "x") == ([], None)


def test_comma_lists_complete_the_last_item(toy):
    assert texts(toy, ["show"], "3,1") == (["3,12"], JOB)
    assert texts(toy, ["set-gpus"], "0,") == (["0,0", "0,1"], GPU)
    assert texts(toy, ["-u"], "alice,b") == (["alice,bob"], USER)


def test_analyse_reports_where_it_is(toy):
    want = analyse(toy, ["reserve", "cancel"])
    assert want.path == ("toy", "reserve", "cancel") and want.dest == "id"
    assert analyse(toy, ["-u"]).option_value
    assert not analyse(toy, ["show"]).option_value


def test_value_kinds_from_names():
    def kind(path, *flags, **kw):
        p = argparse.ArgumentParser()
        return value_kind(path, p.add_argument(*flags, **kw))

    assert kind(["gbatch"], "--depends-on", metavar="DEPENDS_ON") == JOB
    assert kind(["gqueue"], "-j", "--jobs", metavar="JOBS") == JOB
    assert kind(["gctl", "set-limit"], "job_or_group_id", metavar="JOB_OR_GROUP_ID") == JOB
    assert kind(["gctl", "reserve", "get"], "id", metavar="ID") == RESERVATION
    assert kind(["gctl", "reserve", "create"], "--gpu-spec", metavar="SPEC") == GPU
    assert kind(["gctl", "set-gpus"], "spec", metavar="GPU_SPEC") == GPU
    assert kind(["gstats"], "-u", "--user") == USER
    assert kind(["gflowd"], "--config", metavar="PATH") == PATH
    assert kind(["gbatch"], "--name", metavar="NAME") == "none"


def test_the_real_tools():
    """The classic tools' own parsers: the shell completes what they accept."""
    found, kind = texts(tool("gjob"), [], "")
    assert {"show", "log", "hold", "release"} <= set(found) and kind is None
    assert texts(tool("gjob"), ["hold"], "") == (["3"], QUEUED_JOB)
    # log/show/redo want finished jobs too (issue 23): 15 is one
    assert texts(tool("gjob"), ["log", "-f"], "1") == (["15", "12"], ANY_JOB)
    assert texts(tool("gjob"), ["show"], "") == (["15", "12", "3"], ANY_JOB)
    assert texts(tool("gjob"), ["redo", "-d"], "") == (["3", "12"], JOB)
    assert texts(tool("gcancel"), [], "") == (["3", "12"], JOB)
    assert "--all" in texts(tool("gqueue"), [], "--a")[0]
    assert texts(tool("gqueue"), ["-u"], "a") == (["alice"], USER)
    assert texts(tool("gbatch"), ["--depends-on"], "") == (["3", "12"], JOB)
    assert texts(tool("gbatch"), [], "") == ([], PATH)
    assert texts(tool("gbatch"), ["python"], "-") == ([], None)


def test_gctl_when_present():
    gctl = tool("gctl")
    assert {"set-gpus", "show-gpus", "reserve"} <= set(texts(gctl, [], "")[0])
    assert texts(gctl, ["set-gpus"], "") == (["0", "1"], GPU)
    assert texts(gctl, ["reserve", "cancel"], "") == (["1", "2"], RESERVATION)
    assert texts(gctl, ["reserve", "get"], "") == (["1", "2"], RESERVATION)
    assert texts(gctl, ["reserve", "create", "--user"], "") == (["alice", "bob"], USER)


def test_values_known_without_the_daemon():
    assert texts(tool("gqueue"), ["-s"], "R,C") == (["R,Cancelled", "R,CD", "R,CA"], None)
    assert texts(tool("gqueue"), ["-o"], "") == (["table", "json", "csv", "yaml"], None)
    assert texts(tool("gqueue"), ["--sort"], "p") == (["priority"], None)
    assert texts(tool("gstats"), ["-o"], "") == (["table", "json", "csv"], None)
    assert texts(tool("gctl"), ["reserve", "list", "--status"], "c") == \
        (["completed", "cancelled"], None)
