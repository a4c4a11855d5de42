"""`python -m benchmarks --scale ... --plot PATH`: size parsing, arguments, the scaling
table and the plot, on fake records (no daemon is started here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import runner, scaling  # noqa: E402
from benchmarks.scaling import SCALING_METRICS, format_scaling_table, parse_sizes  # noqa: E402
from benchmarks.scenarios import size_label  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


# -- sizes and arguments ----------------------------------------------------------------
def test_parse_sizes():
    assert parse_sizes("1k,10k,100k,1m") == [1000, 10_000, 100_000, 1_000_000]
    assert parse_sizes("1M, 2K,5000,2k") == [2000, 5000, 1_000_000]   # sorted, deduped
    assert parse_sizes("1.5m,100_000,3k") == [3000, 100_000, 1_500_000]


@pytest.mark.parametrize("text", ["", ",", "abc", "1g", "1500", "0k", "-1k", "2.5k",
                                  "nan", "1kk"])
def test_parse_sizes_errors(text):
    with pytest.raises(ValueError):
        parse_sizes(text)


def test_size_label():
    assert [size_label(n) for n in (1000, 10_000, 100_000, 1_000_000, 2_000_000, 1500,
                                    1_500_000)] == \
        ["1k", "10k", "100k", "1m", "2m", "1500", "1500k"]


def test_default_reps():
    assert scaling.default_reps(100_000) == 3 and scaling.default_reps(1_000_000) == 1


def test_parse_args_scale_alone_runs_only_the_scaling(tmp_path):
    args = runner.parse_args(["--scale", "1k,10k,100k,1m", "--plot", str(tmp_path / "s.png")])
    assert args.scale == [1000, 10_000, 100_000, 1_000_000]
    assert args.only == [] and args.plot == tmp_path / "s.png"
    assert args.scale_timeout == scaling.DEFAULT_TIMEOUT
    args = runner.parse_args(["--scale", "1k", "--only", "cli", "--scale-timeout", "60"])
    assert args.only == ["cli"] and args.scale == [1000] and args.scale_timeout == 60
    args = runner.parse_args([])
    assert args.scale is None and args.plot is None and "scale" in args.only


@pytest.mark.parametrize("argv", [["--scale", "1500"], ["--scale", "x"], ["--scale", ""],
                                  ["--plot", "x.png"], ["--scale", "1k",
                                                        "--scale-timeout", "0"]])
def test_parse_args_scale_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        runner.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


# -- fake records -----------------------------------------------------------------------
def rec(side, size, error=None, skipped=False, seconds=None):
    k = size / 1000
    values = {"submit": 20_000.0 if side == "ours" else 300_000.0,
              "daemon PSS": 200 + 3 * k, "restart": 0.05 * k, "GET /jobs": 0.002 * k,
              "gqueue -a -u all": 0.015 * k, "state file": 0.55 * k}
    if side == "theirs":
        values = {m: (v if m == "submit" else v / 4) for m, v in values.items()}
    return {"side": side, "size": size, "label": size_label(size), "error": error,
            "skipped": skipped, "reps": 1, "loadavg": 1.0,
            "seconds": 0.0 if skipped else (seconds or 0.003 * size),
            "metrics": {} if error else {m: {"value": v, "samples": [v]}
                                         for m, v in values.items()}}


def fake_records():
    return [rec("ours", 1000), rec("theirs", 1000),
            rec("ours", 100_000), rec("theirs", 100_000),
            rec("ours", 1_000_000),
            rec("theirs", 1_000_000, error="timed out after 1200 s of filling and measuring "
                                           "(while filling and measuring)", seconds=1200.4)]


def row(lines, metric, jobs):
    for line in lines:
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells[:2] == [metric, jobs]:
            return cells
    raise AssertionError(f"no row {metric} {jobs}")


def test_scaling_table_plain():
    text = format_scaling_table(fake_records())
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "jobs", "ours", "theirs", "ours/theirs"]
    assert row(lines, "submit", "1k") == ["submit", "1k", "20,000/s", "300,000/s", "0.07"]
    assert row(lines, "restart", "100k") == ["restart", "100k", "5.00 s", "1.25 s", "4.00"]
    # The failure is in the table, as a footnote, and has no ratio.
    assert row(lines, "submit", "1m") == ["submit", "1m", "20,000/s", "failed [1]", "-"]
    assert row(lines, "daemon PSS", "1m")[3] == "failed [1]"
    assert row(lines, "wall time", "1m")[3] == "1200.40 s [1]"
    assert row(lines, "wall time", "1k") == ["wall time", "1k", "3.00 s", "3.00 s", "1.00"]
    assert lines[-1] == ("[1] theirs at 1m: timed out after 1200 s of filling and "
                         "measuring (while filling and measuring)")
    metrics = [m for m, _, _ in SCALING_METRICS] + ["wall time"]
    assert len([line for line in lines if line.split("  ")[0].strip() in metrics]) \
        == len(metrics) * 3


def test_scaling_table_markdown_and_skipped():
    recs = fake_records()[:4] + [rec("ours", 1_000_000, error="boom"),
                                 rec("theirs", 1_000_000, error="skipped: failed at 100k",
                                     skipped=True)]
    text = format_scaling_table(recs, markdown=True)
    lines = text.splitlines()
    assert lines[0] == "| metric | jobs | ours | theirs | ours/theirs |"
    assert "| submit | 1m | failed [1] | skipped [2] | - |" in lines
    assert "| wall time | 1m | 3000.00 s [1] | skipped [2] | - |" in lines
    assert lines[-2:] == ["[1] ours at 1m: boom", "[2] theirs at 1m: skipped: failed at 100k"]
    assert scaling.ours_failed(recs) == ["scale 1m/ours: boom"]
    assert scaling.ours_failed(fake_records()) == []


def test_scaling_table_one_side():
    text = format_scaling_table([rec("ours", 1000), rec("ours", 10_000)])
    assert row(text.splitlines(), "submit", "10k") == ["submit", "10k", "20,000/s", "-", "-"]


def test_run_scaling_records_failures_and_skips_larger_sizes(monkeypatch):
    """A failure of one side at one size is a record, never an exception; that side's
    larger sizes are skipped, the other side goes on."""
    calls = []

    class Make:
        def __init__(self, side):
            self.side = side

    def fake_run_one(ctx, make, size, reps, timeout, batch):
        calls.append((make.side, size, reps))
        if make.side == "theirs" and size >= 10_000:
            return rec("theirs", size, error="gflowd exited with -9")
        return rec(make.side, size)

    monkeypatch.setattr(scaling, "run_one", fake_run_one)
    logs = []
    ctx = type("Ctx", (), {"log": staticmethod(logs.append)})()
    records = scaling.run_scaling(ctx, {"ours": Make("ours"), "theirs": Make("theirs")},
                                  [1000, 10_000, 1_000_000])
    assert calls == [("ours", 1000, 3), ("theirs", 1000, 3), ("ours", 10_000, 3),
                     ("theirs", 10_000, 3), ("ours", 1_000_000, 1)]
    last = records[-1]
    assert (last["side"], last["size"], last["skipped"]) == ("theirs", 1_000_000, True)
    assert last["error"] == "skipped: failed at 10k"
    assert any("FAILED" in line for line in logs)


def test_run_one_turns_any_exception_into_a_record():
    class Boom:
        side = "theirs"

        def __call__(self, ctx):
            raise MemoryError("no room")

    r = scaling.run_one(None, Boom(), 1000, 1, None, b"[]")
    assert r["error"].startswith("MemoryError: no room") and not r["metrics"]
    assert "starting the daemon" in r["error"] and r["seconds"] >= 0


def test_deadline_raises_scale_timeout():
    import time
    with pytest.raises(scaling.ScaleTimeout, match="timed out after 0.05 s"):
        with scaling.deadline(0.05, "waiting"):
            time.sleep(2)
    with scaling.deadline(None, "nothing"):
        pass


# -- the plot ---------------------------------------------------------------------------
def test_runner_does_not_import_matplotlib():
    code = ("import sys; sys.path.insert(0, %r); import benchmarks.runner, "
            "benchmarks.scaling; print('matplotlib' in sys.modules)" % str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_plot_series_and_failure_lines():
    from benchmarks import plot
    recs = fake_records()
    assert plot.series(recs, "ours", "restart") == ([1000, 100_000, 1_000_000],
                                                    [0.05, 5.0, 50.0])
    assert plot.series(recs, "theirs", "restart") == ([1000, 100_000], [0.0125, 1.25])
    recs[4]["metrics"]["restart"]["remark"] = "gflowd up gave up"
    lines = plot.failure_lines(recs)
    assert lines[0].startswith("x  gflow 0.4.13 at 1m jobs: timed out after 1200 s")
    assert lines[-1] == "*  ours (gflowd, this checkout) at 1m jobs, restart: gflowd up gave up"


def test_plot_writes_a_png(tmp_path):
    import matplotlib  # noqa: F401 - the test extra has it; a missing one is a failure
    from benchmarks import plot
    recs = fake_records() + [rec("ours", 10_000),
                             rec("theirs", 10_000, error="x" * 500)]
    out = plot.plot_scaling(recs, tmp_path / "scaling.png", subtitle="fake machine " * 30)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_all_failed_is_still_a_png(tmp_path):
    import matplotlib  # noqa: F401 - the test extra has it; a missing one is a failure
    from benchmarks import plot
    recs = [rec("ours", 1000, error="boom"), rec("theirs", 1000, error="bang")]
    out = plot.plot_scaling(recs, tmp_path / "s.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_plot_labels_and_merging_runs(tmp_path):
    from benchmarks import plot
    assert [plot.human(v) for v in (0.05, 2, 300, 20_000, 1_500_000)] == \
        ["0.05", "2", "300", "20k", "1.5M"]
    first = {"machine": {"date": "d1", "loadavg_start": [1.0], "loadavg_end": [2.0]},
             "scaling": [rec("ours", 1000), rec("theirs", 1000), rec("ours", 100_000)]}
    second = {"machine": {"date": "d2", "loadavg_start": [3.0], "loadavg_end": [4.0],
                          "nproc": 2, "commit": "abc"},
              "scaling": [rec("ours", 100_000, seconds=99.0),
                          rec("theirs", 1_000_000, error="exited")]}
    merged = plot.merge_runs([first, second])
    assert [(r["side"], r["size"]) for r in merged] == [
        ("ours", 1000), ("theirs", 1000), ("ours", 100_000), ("theirs", 1_000_000)]
    assert merged[2]["seconds"] == 99.0                   # the later file wins
    text = plot.describe_runs([first, second])
    assert "ours+theirs 1k: d1, load average 1.0 -> 2.0" in text    # its 100k lost
    assert "ours+theirs 100k,1m: d2" in text
    assert "2 CPUs" in text and "commit abc" in text
    if __import__("importlib").util.find_spec("matplotlib"):
        import json
        a, b = tmp_path / "a.json", tmp_path / "b.json"
        a.write_text(json.dumps(first))
        b.write_text(json.dumps(second))
        assert plot.main([str(a), str(b), "-o", str(tmp_path / "m.png")]) == 0
        assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_fails_before_running(tmp_path, monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    args = runner.parse_args(["--scale", "1k", "--plot", str(tmp_path / "s.png")])
    assert runner.run(args) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_scaling_table_shows_a_metric_remark():
    recs = fake_records()
    recs[4]["metrics"]["restart"]["remark"] = "`gflowd up` itself gave up"
    lines = format_scaling_table(recs).splitlines()
    assert row(lines, "submit", "1m")[3] == "failed [1]"       # numbered in table order
    assert row(lines, "restart", "1m")[2:4] == ["50.00 s [2]", "failed [1]"]
    assert "[2] ours at 1m, restart: `gflowd up` itself gave up" in lines
