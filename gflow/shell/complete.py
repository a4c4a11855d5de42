"""Tab completion for gflow-shell, driven by the tools' own argparse parsers.

`complete_args(parser, words, text)` walks the words already typed through the parser
(subcommands, options and their values, positionals) and says what the word under the
cursor is: a subcommand, an option, a fixed choice, or a value of a kind the shell can
look up (a job id, a GPU index, a user, a reservation id, a path). Words the tools take
but do not declare as argparse choices (job states, sort keys, output formats, reservation
statuses) come from the STATIC table. It is pure: the shell supplies the live values
(`Candidate`s) for the other kinds from the daemon.

Only stdlib imports here (client layer, DESIGN.md §3).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

__all__ = ["Candidate", "Want", "analyse", "complete_args", "value_kind", "STATIC",
           "JOB", "ANY_JOB", "QUEUED_JOB", "HELD_JOB", "GPU", "USER", "RESERVATION", "PATH",
           "STATE"]

# Kinds of values the shell looks up for completion: JOB is a live job (queued, held or
# running); ANY_JOB includes finished ones, which `gjob log/show/redo` are mostly for.
JOB, QUEUED_JOB, HELD_JOB, ANY_JOB = "job", "queued_job", "held_job", "any_job"
_ANY_JOB_COMMANDS = {"log", "l", "show", "s", "redo"}
GPU, USER, RESERVATION, PATH = "gpu", "user", "reservation", "path"

STATE = "state"

# Values known without asking the daemon: (tool, dest) -> words ("*" = any tool).
STATIC: dict[tuple[str, str], tuple[str, ...]] = {
    ("*", "states"): ("Queued", "Hold", "Running", "Finished", "Failed", "Cancelled",
                      "Timeout", "PD", "H", "R", "CD", "F", "CA", "TO"),
    ("*", "state"): ("Queued", "Hold", "Running", "Finished", "Failed", "Cancelled",
                     "Timeout"),
    ("gqueue", "sort"): ("id", "state", "time", "name", "gpus", "priority"),
    ("gqueue", "output"): ("table", "json", "csv", "yaml"),
    ("gstats", "output"): ("table", "json", "csv"),
    ("gctl", "status"): ("pending", "active", "completed", "cancelled"),
}

# Arguments whose value is a comma list (complete the item after the last comma).
_LIST_KINDS = {JOB, ANY_JOB, QUEUED_JOB, HELD_JOB, GPU, USER, STATE}

_JOB_DESTS = {"job", "jobs", "job_id", "job_ids", "ids", "id", "job_or_group_id",
              "depends_on", "depends_on_all", "depends_on_any", "after", "redo", "jobid"}
_USER_DESTS = {"user", "users", "username", "owner", "for_user"}
_GPU_DESTS = {"gpu_spec", "gpu_indices", "indices", "gpu_ids"}
_PATH_DESTS = {"config", "script", "param_file", "file", "path", "output_file",
               "script_path"}


@dataclass(frozen=True)
class Candidate:
    """One completion: the text inserted and a short description for the menu."""

    text: str
    meta: str = ""


@dataclass(frozen=True)
class Want:
    """What the word under the cursor should be."""

    what: str                                   # "subcommand" | "option" | "choice" | kind | "none"
    choices: tuple[Candidate, ...] = ()         # for subcommand / option / choice
    path: tuple[str, ...] = ()                  # subcommand path walked, e.g. ("gjob", "hold")
    dest: str = ""                              # the argument's dest, for value kinds
    parser: Optional[argparse.ArgumentParser] = None   # parser in effect (None past REMAINDER)
    option_value: bool = False                  # the value of an option (not a positional)


def _takes(action: argparse.Action) -> tuple[int, int]:
    """(min, max) number of values an action takes; max -1 means unbounded."""
    nargs = action.nargs
    if nargs is None:
        return 1, 1
    if nargs == argparse.OPTIONAL:
        return 0, 1
    if nargs == argparse.ZERO_OR_MORE:
        return 0, -1
    if nargs in (argparse.ONE_OR_MORE, argparse.REMAINDER, argparse.PARSER):
        return 1, -1
    if isinstance(nargs, int):
        return nargs, nargs
    return 1, 1


def _subparsers(parser: argparse.ArgumentParser) -> Optional[argparse._SubParsersAction]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings]


def value_kind(path: Sequence[str], action: argparse.Action) -> str:
    """The kind of value `action` takes, from its name (dest/metavar) and where it is."""
    names = {(action.dest or "").lower().replace("-", "_")}
    metavar = action.metavar
    if isinstance(metavar, str):
        names.add(metavar.lower().replace("-", "_"))
    where = [p.lower() for p in path]
    dest = (action.dest or "").lower()
    if where and ((where[0], dest) in STATIC or ("*", dest) in STATIC):
        return STATE if dest in ("states", "state") else f"static:{where[0]}:{dest}"
    if "reserve" in where or "reservation" in where:
        if names & {"id", "ids", "reservation", "reservation_id"}:
            return RESERVATION
    if names & _USER_DESTS:
        return USER
    if names & _GPU_DESTS or (where and where[-1] == "set-gpus" and not action.option_strings):
        return GPU
    if names & _JOB_DESTS:
        last = where[-1] if where else ""
        if last in ("hold", "h"):
            return QUEUED_JOB
        if last in ("release", "r"):
            return HELD_JOB
        if where[0] == "gjob" and last in _ANY_JOB_COMMANDS and not action.option_strings:
            return ANY_JOB
        return JOB
    if names & _PATH_DESTS:
        return PATH
    if action.nargs == argparse.REMAINDER:
        return PATH                                 # gbatch SCRIPT_OR_COMMAND...
    return "none"


def _option_candidates(parser: argparse.ArgumentParser) -> tuple[Candidate, ...]:
    out: list[Candidate] = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        help_text = (action.help or "").split("\n")[0]
        if "%(" in help_text:
            help_text = help_text.split("%(")[0].rstrip()
        for opt in action.option_strings:
            out.append(Candidate(opt, help_text))
    return tuple(out)


def _sub_candidates(sub: argparse._SubParsersAction) -> tuple[Candidate, ...]:
    helps = {a.dest: (a.help or "") for a in sub._choices_actions}
    canonical = [Candidate(name, helps.get(name, "")) for name in sub.choices
                 if name in helps or not helps]
    names = {c.text for c in canonical}
    aliases = tuple(Candidate(name, "") for name in sub.choices if name not in names)
    return tuple(canonical) + aliases


def analyse(parser: argparse.ArgumentParser, words: Sequence[str],
            path: Sequence[str] = ()) -> Want:
    """What the next word after `words` should be (the word under the cursor excluded)."""
    path = list(path) or [parser.prog.split()[0]]
    pos_index = 0                # which positional value we are at (counted in values)
    pending: Optional[argparse.Action] = None
    pending_left = 0
    rest_positional = False
    for word in words:
        if pending is not None:
            if pending_left < 0 and word.startswith("-") and word != "-":
                pending = None               # an unbounded option list ends at an option
            else:
                pending_left -= 1
                if pending_left == 0:
                    pending = None
                continue
        if not rest_positional and word == "--":
            rest_positional = True
            continue
        if not rest_positional and word.startswith("-") and word != "-":
            action = _option_action(parser, word)
            if action is not None:
                lo, hi = _takes(action)
                if hi != 0 and not isinstance(action, argparse._VersionAction):
                    pending, pending_left = action, hi
            continue
        # a positional word
        sub = _subparsers(parser)
        target = _positional_at(_positionals(parser), pos_index)
        if sub is not None and target is sub and word in sub.choices:
            parser = sub.choices[word]
            path.append(word)
            pos_index = 0
            continue
        if target is not None and target.nargs == argparse.REMAINDER:
            # the rest is the job's own command line: nothing more to complete from here
            return Want("none", path=tuple(path), dest=target.dest)
        pos_index += 1

    here = tuple(path)
    if pending is not None:
        if pending.choices:
            return Want("choice", tuple(Candidate(str(c)) for c in pending.choices),
                        here, pending.dest, parser, True)
        return Want(value_kind(path, pending), (), here, pending.dest, parser, True)
    target = _positional_at(_positionals(parser), pos_index)
    if target is None:
        return Want("option", _option_candidates(parser), here, "", parser)
    if isinstance(target, argparse._SubParsersAction):
        choices = _sub_candidates(target)
        if not target.required:                  # `gqueue [help|completion]`: options too
            choices += _option_candidates(parser)
        return Want("subcommand", choices, here, target.dest, parser)
    if target.choices:
        return Want("choice", tuple(Candidate(str(c)) for c in target.choices),
                    here, target.dest, parser)
    return Want(value_kind(path, target), (), here, target.dest, parser)


def _option_action(parser: argparse.ArgumentParser, word: str) -> Optional[argparse.Action]:
    """The action of an option word that still wants its value in the next word, if any."""
    opt, eq, _ = word.partition("=")
    if eq:
        return None                          # --opt=value: value included
    action = parser._option_string_actions.get(opt)
    if action is None and not word.startswith("--") and len(word) > 2:
        # -abc: short flags packed together, or -n5 (a value attached)
        first = parser._option_string_actions.get(word[:2])
        if first is not None and _takes(first)[1] != 0:
            return None
        action = parser._option_string_actions.get("-" + word[-1])
    return action


def _positional_at(positionals: list[argparse.Action], index: int) -> Optional[argparse.Action]:
    """The positional action that the `index`-th positional value belongs to."""
    seen = 0
    for action in positionals:
        lo, hi = _takes(action)
        if isinstance(action, argparse._SubParsersAction):
            hi = 1
        if hi < 0 or index < seen + hi:
            return action
        seen += hi
    return None


def complete_args(parser: argparse.ArgumentParser, words: Sequence[str], text: str,
                  lookup: Callable[[str], Sequence[Candidate]],
                  path: Sequence[str] = ()) -> tuple[list[Candidate], Optional[str]]:
    """Completions for `text` after `words`, and the value kind when it is one.

    `lookup(kind)` returns the live candidates of a kind (job ids, GPU indices, ...);
    PATH is left to the caller (the kind is returned with no candidates). A word that
    starts with '-' where no option value is expected completes to the options.
    """
    want = analyse(parser, words, path)
    if text.startswith("-") and not want.option_value and want.parser is not None:
        return _prefixed(_option_candidates(want.parser), text), None
    if want.what in ("subcommand", "choice"):
        return _prefixed(want.choices, text), None
    if want.what == "option":
        return (_prefixed(want.choices, text) if not text else []), None
    if want.what == "none":
        return [], None
    if want.what == PATH:
        return [], PATH
    if want.what.startswith("static:"):
        _, tool, dest = want.what.split(":", 2)
        words = STATIC.get((tool, dest)) or STATIC.get(("*", dest)) or ()
        return _prefixed([Candidate(w) for w in words], text), None
    prefix, tail = "", text
    if want.what in _LIST_KINDS:
        head, sep, tail = text.rpartition(",")
        prefix = head + sep
    if want.what == STATE:
        dest = want.dest if ("*", want.dest) in STATIC else "states"
        values = [Candidate(w) for w in STATIC[("*", dest)]]
        return [Candidate(prefix + c.text) for c in values if c.text.startswith(tail)], None
    found = [Candidate(prefix + c.text, c.meta) for c in lookup(want.what)
             if c.text.startswith(tail)]
    return found, want.what


def _prefixed(cands: Sequence[Candidate], text: str) -> list[Candidate]:
    return [c for c in cands if c.text.startswith(text)]
