"""Transcripts: a file of shell commands and the output each must produce.

cmd2 4.x dropped its transcript module, so this is ours. A transcript looks like a
session pasted from a terminal:

    # comments start with '#' (anywhere; write /#/ for output that starts with '#')
    gflow> gbatch --name hello bash -c 'echo hi'
    Submitted batch job 1 (hello)
    gflow> wait 1
    Job 1 is Finished (exit code 0).
    gflow> gjob log 1
    hi

Lines that start with the prompt (`gflow> `) are commands; the lines up to the next
command are the output it must print (stdout and stderr together, in order). Matching:

- trailing whitespace on each line and blank lines at the end of a block are ignored;
- `/regex/` inside an expected line matches a volatile part (times, pids, ports):
  `Submitted batch job /\\d+/ (hello)`. A line equal to the output matches as it is,
  so paths need no escaping; in a line that also has a regex write `\\/` for a slash;
- a line that is exactly `...` matches any number of lines (including none);
- `${NAME}` in commands and expected lines is replaced by the variable NAME (the
  environment when run with `gflow-shell --transcript`), e.g. `use 127.0.0.1:${PORT}`.

Pure apart from `run_transcript`, which drives a shell object in process.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

__all__ = ["Step", "Failure", "parse_transcript", "line_matches", "block_matches",
           "substitute", "run_transcript", "DEFAULT_PROMPT"]

DEFAULT_PROMPT = "gflow> "
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    lineno: int = 0


@dataclass
class Failure:
    step: Step
    actual: list[str]
    source: str = ""

    def report(self) -> str:
        where = f"{self.source}:{self.step.lineno}" if self.source else f"line {self.step.lineno}"
        diff = difflib.unified_diff(self.step.expected, self.actual, "expected", "actual",
                                    lineterm="", n=3)
        return f"{where}: {DEFAULT_PROMPT}{self.step.command}\n" + "\n".join(diff)


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """`${NAME}` -> variables[NAME]; unknown names are left as they are."""
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def parse_transcript(text: str, prompt: str = DEFAULT_PROMPT) -> list[Step]:
    steps: list[Step] = []
    bare = prompt.rstrip()
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            continue
        if line.startswith(prompt) or line == bare:
            steps.append(Step(line[len(prompt):].strip() if line != bare else "", [], lineno))
            continue
        if not steps:
            if line.strip():
                raise ValueError(f"line {lineno}: output before the first command "
                                 f"(commands start with {prompt!r})")
            continue
        steps[-1].expected.append(line)
    return steps


def _line_regex(expected: str) -> re.Pattern:
    parts: list[str] = []
    i, literal = 0, []
    while i < len(expected):
        ch = expected[i]
        if ch == "\\" and i + 1 < len(expected) and expected[i + 1] == "/":
            literal.append("/")
            i += 2
            continue
        if ch == "/":
            end = i + 1
            while end < len(expected):
                if expected[end] == "\\":
                    end += 2
                    continue
                if expected[end] == "/":
                    break
                end += 1
            if end < len(expected):             # a closed /regex/
                parts.append(re.escape("".join(literal)))
                literal = []
                parts.append("(?:" + expected[i + 1:end].replace("\\/", "/") + ")")
                i = end + 1
                continue
        literal.append(ch)
        i += 1
    parts.append(re.escape("".join(literal)))
    return re.compile("".join(parts) + r"\Z")


def line_matches(expected: str, actual: str) -> bool:
    expected, actual = expected.rstrip(), actual.rstrip()
    if expected == actual:                  # "Script=/tmp/x" needs no escaping
        return True
    if "/" not in expected:
        return False
    return bool(_line_regex(expected).match(actual))


def _trim(lines: Sequence[str]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    return out


def block_matches(expected: Sequence[str], actual: Sequence[str]) -> bool:
    exp, act = _trim(expected), _trim(actual)

    def match(i: int, j: int) -> bool:
        while i < len(exp):
            if exp[i] == "...":
                return any(match(i + 1, k) for k in range(j, len(act) + 1))
            if j >= len(act) or not line_matches(exp[i], act[j]):
                return False
            i, j = i + 1, j + 1
        return j == len(act)

    return match(0, 0)


def run_transcript(shell, path, variables: Optional[Mapping[str, str]] = None,
                   prompt: str = DEFAULT_PROMPT,
                   on_step: Optional[Callable[[Step, list[str]], None]] = None) -> list[Failure]:
    """Run each command of the transcript at `path` in `shell` (a GflowShell) and compare.

    Output is captured per command; all steps run even after a mismatch (so one run shows
    every difference), unless a command stops the shell (`quit`).
    """
    source = str(path)
    text = Path(path).read_text(encoding="utf-8")
    variables = variables or {}
    steps = parse_transcript(text, prompt)
    failures: list[Failure] = []
    saved = shell.stdout
    stopped = False
    for step in steps:
        step.command = substitute(step.command, variables)
        step.expected = [substitute(line, variables) for line in step.expected]
        if stopped:
            failures.append(Failure(step, ["(not run: an earlier command ended the shell)"],
                                    source))
            continue
        # a real file (not a StringIO), so that pipes and `!cmd` can write to it by fd
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace",
                                    buffering=1) as buf:
            try:
                shell.stdout = buf
                with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                    stopped = (bool(shell.onecmd_plus_hooks(step.command))
                               if step.command else False)
            finally:
                shell.stdout = saved
            buf.flush()
            buf.seek(0)
            actual = buf.read().splitlines()
        if on_step is not None:
            on_step(step, actual)
        if not block_matches(step.expected, actual):
            failures.append(Failure(step, _trim(actual), source))
    return failures
