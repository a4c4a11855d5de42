"""The transcript format of gflow-shell: parsing, matching, variables, running."""

from __future__ import annotations

import pytest

from gflow.shell.transcript import (
    block_matches, line_matches, parse_transcript, run_transcript, substitute,
)


def test_parse_commands_output_and_comments():
    steps = parse_transcript(
        "# a comment\n\ngflow> q -a\n JOBID\n 1\n# between\ngflow> status\ngflow>\n")
    assert [(s.command, s.expected, s.lineno) for s in steps] == [
        ("q -a", [" JOBID", " 1"], 3), ("status", [], 7), ("", [], 8)]
    with pytest.raises(ValueError, match="line 1: output before the first command"):
        parse_transcript("stray\ngflow> q\n")


def test_line_matching_literal_and_regex():
    assert line_matches("Job 1 is Finished.", "Job 1 is Finished.   ")   # trailing space
    assert not line_matches("Job 1", "Job 2")
    assert line_matches("Submitted batch job /\\d+/ (x)", "Submitted batch job 42 (x)")
    assert not line_matches("Submitted batch job /\\d+/ (x)", "Submitted batch job (x)")
    assert line_matches("  Script=/tmp/a/b.sh", "  Script=/tmp/a/b.sh")      # paths as is
    assert line_matches("up /\\d\\d:\\d\\d/ in \\/tmp", "up 01:02 in /tmp")
    assert line_matches("date /\\d\\d\\/\\d\\d/", "date 11/24")   # \/ inside a regex
    assert not line_matches("a.b", "axb")                          # literal, not a regex


def test_block_matching_with_ellipsis():
    assert block_matches(["a", "...", "z"], ["a", "b", "c", "z", ""])
    assert block_matches(["a", "...", "z"], ["a", "z"])
    assert block_matches(["a", "..."], ["a"])
    assert not block_matches(["a", "...", "z"], ["a", "b"])
    assert not block_matches(["a"], ["a", "b"])
    assert block_matches([], ["", "  "])


def test_variables():
    assert substitute("use 127.0.0.1:${PORT} ${NOPE}", {"PORT": "7"}) == \
        "use 127.0.0.1:7 ${NOPE}"


class FakeShell:
    """Enough of a shell for run_transcript: echoes, prints to stderr, quits."""

    def __init__(self):
        import sys
        self.stdout = sys.stdout
        self.seen = []

    def onecmd_plus_hooks(self, line):
        import sys
        self.seen.append(line)
        if line == "quit":
            return True
        if line.startswith("err "):
            print(line[4:], file=sys.stderr)
        else:
            self.stdout.write(line.upper() + "\n")
        return False


def test_run_transcript_reports_each_mismatch(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("gflow> hello ${WHO}\nHELLO BOB\ngflow> err oops\noops\n"
                    "gflow> x\nnot X\ngflow> quit\ngflow> after\nAFTER\n")
    shell = FakeShell()
    failures = run_transcript(shell, path, {"WHO": "bob"})
    assert shell.seen == ["hello bob", "err oops", "x", "quit"]
    assert [f.step.command for f in failures] == ["x", "after"]
    report = failures[0].report()
    assert report.startswith(f"{path}:5: gflow> x")
    assert "-not X" in report and "+X" in report
