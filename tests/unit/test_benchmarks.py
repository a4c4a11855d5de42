"""The benchmark runner's pure parts: statistics, targets, the table, argument parsing.
No daemon is started here (the scenarios themselves run with `python -m benchmarks`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import report, runner  # noqa: E402
from benchmarks.daemons import job_body, to_epoch  # noqa: E402
from benchmarks.report import MetricSpec, Row, Target  # noqa: E402
from benchmarks.scenarios import SCENARIOS  # noqa: E402


def test_median_and_percentile():
    assert report.median([3, 1, 2]) == 2
    assert report.median([4, 1, 3, 2]) == 2.5
    assert report.median([]) is None
    assert report.median([None, 5]) == 5
    assert report.percentile([1, 2, 3, 4, 5], 50) == 3
    assert report.percentile([1, 2, 3, 4, 5], 100) == 5
    assert report.percentile([0, 10], 99) == pytest.approx(9.9)
    assert report.percentile([7], 99) == 7
    assert report.percentile([], 50) is None
    with pytest.raises(ValueError):
        report.percentile([1], 101)


def test_target_judgement():
    lower = Target(ratio_max=0.05)
    assert lower.judge(1.0, 22.0) is True
    assert lower.judge(2.0, 22.0) is False
    assert lower.judge(None, 22.0) is None
    assert lower.judge(1.0, 0) is None
    higher = Target(ratio_min=0.25, aim="0.5x")
    assert higher.judge(2000, 7000) is True
    assert higher.judge(1000, 7000) is False
    both = Target(ratio_max=2, abs_max=2.0)
    assert both.judge(1.9, 1.4) is True
    assert both.judge(2.1, 1.4) is False          # within 2x but not under 2 s
    assert both.judge(1.0, 0.4) is False          # under 2 s but not within 2x
    assert Target().judge(1, 2) is None
    assert Target(abs_max=2.0).judge(1.0, None) is True


def test_target_describe():
    assert Target(ratio_max=0.05).describe("s") == "<= 0.05x"
    assert Target(ratio_min=0.25, aim="0.5x").describe("/s") == ">= 0.25x (aim 0.5x)"
    assert Target(ratio_max=2, abs_max=2.0).describe("s") == "<= 2x & < 2.00 s"
    assert Target().describe("s") == "-"


def test_format_value():
    assert report.format_value(None, "s") == "-"
    assert report.format_value(0.0123, "s") == "12.3 ms"
    assert report.format_value(0.218, "s") == "218 ms"
    assert report.format_value(22.114, "s") == "22.11 s"
    assert report.format_value(0.0000421, "s") == "42 us"
    assert report.format_value(6512.4, "/s") == "6,512/s"
    assert report.format_value(157.04, "MB") == "157.0 MB"
    assert report.format_ratio(0.0312) == "0.03"
    assert report.format_ratio(0.004) == "0.0040"
    assert report.format_ratio(31.4) == "31"
    assert report.format_ratio(None) == "-"


def rows():
    return [Row(MetricSpec("chain20", "makespan", "s", Target(ratio_max=0.05)), 0.8, 22.0,
                note="theirs scaled"),
            Row(MetricSpec("storm", "acks/s", "/s", Target(ratio_min=0.25)), 1000, 8000),
            Row(MetricSpec("sched", "exit->start p50", "s"), 0.004, 1.1, note="theirs scaled"),
            Row(MetricSpec("cli", "gbatch", "s", Target(ratio_max=4)), 0.05, None)]


def test_table_plain_and_footnotes():
    text = report.format_table(rows())
    lines = text.splitlines()
    assert lines[0].split() == ["scenario", "metric", "ours", "theirs", "ratio", "target",
                                "met?"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    chain = next(line for line in lines if line.startswith("chain20"))
    assert "makespan [1]" in chain and "800 ms" in chain and "22.00 s" in chain
    assert chain.split()[-1] == "yes"
    storm = next(line for line in lines if line.startswith("storm"))
    assert storm.split()[-1] == "NO" and "0.12" in storm
    sched = next(line for line in lines if line.startswith("sched"))
    assert "[1]" in sched                    # the same note is numbered once
    gbatch = next(line for line in lines if line.startswith("cli"))
    assert gbatch.split()[-1] == "-"         # no data on one side: not judged
    assert lines[-1] == "[1] theirs scaled"
    widths = {len(line) for line in lines[:6]}
    assert len(lines[0]) == max(widths) or len(widths) > 1   # aligned columns, no crash


def test_table_markdown():
    text = report.format_table(rows(), markdown=True)
    lines = text.splitlines()
    assert lines[0] == "| scenario | metric | ours | theirs | ratio | target | met? |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2].startswith("| chain20 | makespan [1] | 800 ms | 22.00 s | 0.04 |")


def test_summary():
    assert report.summary(rows()) == "1/2 targets met; not met: storm/acks/s"


def test_parse_args_defaults_and_only(tmp_path):
    args = runner.parse_args([])
    assert args.only == list(SCENARIOS)
    assert args.theirs_bin == Path("~/.cache/gflow-compat/runqd-0.4.13/bin").expanduser()
    assert not args.quick and args.side == "both"
    args = runner.parse_args(["--quick", "--only", "storm,cli", "--only", "sched",
                              "--json", str(tmp_path / "r.json"), "--scale-sizes",
                              "2000,5000", "--theirs-bin", str(tmp_path)])
    assert args.quick and args.only == ["storm", "cli", "sched"]
    assert args.scale_sizes == [2000, 5000] and args.theirs_bin == tmp_path


@pytest.mark.parametrize("argv", [["--only", "nope"], ["--scale-sizes", "1500"],
                                  ["--scale-sizes", "x"], ["--runs", "0"],
                                  ["--side", "mine"]])
def test_parse_args_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        runner.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_theirs_is_one_clear_line(tmp_path, capsys):
    args = runner.parse_args(["--theirs-bin", str(tmp_path / "none"), "--ours-bin",
                              str(tmp_path)])
    assert runner.run(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "gflow 0.4.13 not found" in err and "pip install runqd==0.4.13" in err


def test_every_scenario_has_specs_and_the_brief_targets():
    assert list(SCENARIOS) == ["chain20", "burst100", "storm", "cli", "scale", "sched",
                               "stall", "down"]
    specs = {(s.scenario, s.metric): s for _, group in SCENARIOS.values() for s in group}
    assert specs[("chain20", "makespan")].target.ratio_max == 0.05
    assert specs[("burst100", "makespan")].target.ratio_max == 0.10
    assert specs[("storm", "acks/s")].target.ratio_min == 0.25
    assert specs[("cli", "gqueue -a")].target.ratio_max == 4
    assert specs[("scale", "100k daemon PSS")].target.ratio_max == 2.5
    assert specs[("scale", "100k restart")].target.abs_max == 2.0
    # issue 21's absolute targets
    assert specs[("storm", "acks/s")].target.abs_min == 2500
    assert specs[("storm", "acks/s 32 clients")].target.abs_min == 6000
    assert specs[("stall", "longest during snapshot")].target.abs_max == 0.050
    assert specs[("down", "idle stop")].target.abs_max == 0.2


def test_job_body_and_time_encoding():
    body = job_body("true", gpus=64, run_dir="/x")
    assert len(body) == 30 and body["gpus"] == 64 and body["run_dir"] == "/x"
    assert to_epoch({"secs_since_epoch": 10, "nanos_since_epoch": 500_000_000}) == 10.5
    assert to_epoch(None) is None
