"""`python -m benchmarks`: every scenario on our gflowd and on gflow 0.4.13, one table."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .daemons import BenchError, Ours, Theirs
from .report import Row, format_table, summary
from .scaling import DEFAULT_TIMEOUT, format_scaling_table, ours_failed, parse_sizes, run_scaling
from .scenarios import SCENARIOS, Context

REPO = Path(__file__).resolve().parent.parent
THEIRS_DEFAULT = Path("~/.cache/gflow-compat/runqd-0.4.13/bin")
MAKE_THEIRS = ("python3 -m venv ~/.cache/gflow-compat/runqd-0.4.13 && "
               "~/.cache/gflow-compat/runqd-0.4.13/bin/pip install runqd==0.4.13")


def default_ours_bin() -> Path:
    here = Path(sys.executable).parent
    if (here / "gflowd").exists():
        return here
    return REPO / ".venv" / "bin"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmark scenarios on our gflowd and on gflow 0.4.13 "
                    "side by side and print one table (medians of several runs).")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (~2 min): one run each, smaller work for 0.4.13 "
                        "(scaled up, and said so in the notes), scale at 10k only")
    p.add_argument("--only", action="append", metavar="NAME", default=[],
                   help=f"run only these scenarios (repeatable or comma list): "
                        f"{', '.join(SCENARIOS)}")
    p.add_argument("--side", choices=("both", "ours", "theirs"), default="both",
                   help="run one side only (default both)")
    p.add_argument("--json", metavar="PATH", type=Path, help="also save the raw results here")
    p.add_argument("--theirs-bin", type=Path, default=THEIRS_DEFAULT, metavar="DIR",
                   help="bin dir of a venv with runqd==0.4.13 (default %(default)s)")
    p.add_argument("--ours-bin", type=Path, default=None, metavar="DIR",
                   help="bin dir with our gflowd/gbatch/gqueue (default: this Python's, "
                        "else .venv/bin)")
    p.add_argument("--runs", type=int, metavar="N",
                   help="runs per scenario for chain20, burst100, storm (default 3; "
                        "burst100 on 0.4.13: 1) and down (default 5); with --scale, "
                        "repeats of GET /jobs, gqueue and restart at each size (default 3, "
                        "1 above 100k)")
    p.add_argument("--storm-seconds", type=float, metavar="S",
                   help="length of one storm run (default 3, --quick 1)")
    p.add_argument("--scale-sizes", metavar="N,N",
                   help="job counts for scale (default 10000,100000; --quick 10000)")
    p.add_argument("--scale", metavar="SIZES",
                   help="scaling run: for each size (comma list, k/m suffixes, e.g. "
                        "1k,10k,100k,1m) and each side, a fresh daemon filled with that "
                        "many queued jobs: submit rate, PSS, restart, GET /jobs, gqueue "
                        "-a -u all, state size. Alone it runs only this; with --only also "
                        "those scenarios")
    p.add_argument("--scale-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help="--scale: give up on one side at one size after S seconds of "
                        "filling and measuring, recorded as a failure "
                        "(default %(default)g)")
    p.add_argument("--plot", type=Path, metavar="PATH",
                   help="--scale: draw the results to this PNG (needs matplotlib: "
                        "pip install -e '.[bench]')")
    p.add_argument("--python-loadgen", action="store_true",
                   help="use the Python load generator even when a C compiler exists")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--keep", action="store_true", help="keep the temp HOMEs for inspection")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (choose from "
                     f"{', '.join(SCENARIOS)})")
    if args.scale is not None:
        try:
            args.scale = parse_sizes(args.scale)
        except ValueError as exc:
            parser.error(f"--scale: {exc}")
    if args.plot is not None and not args.scale:
        parser.error("--plot draws the --scale run: give --scale SIZES too")
    if args.scale_timeout <= 0:
        parser.error("--scale-timeout must be positive")
    # --scale alone runs only the scaling run; --only adds scenarios to it.
    args.only = names or ([] if args.scale else list(SCENARIOS))
    if args.scale_sizes:
        try:
            args.scale_sizes = [int(x) for x in args.scale_sizes.split(",") if x.strip()]
        except ValueError:
            parser.error(f"--scale-sizes: expected numbers like 10000,100000, got "
                         f"{args.scale_sizes!r}")
        if any(n <= 0 or n % 1000 for n in args.scale_sizes):
            parser.error("--scale-sizes: each size must be a positive multiple of 1000")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    args.theirs_bin = args.theirs_bin.expanduser()
    args.ours_bin = (args.ours_bin or default_ours_bin()).expanduser()
    return args


def preflight(args) -> str | None:
    """One-line reason why the run cannot start, or None."""
    if getattr(args, "plot", None):
        import importlib.util           # find_spec does not import matplotlib itself
        if importlib.util.find_spec("matplotlib") is None:
            return ("--plot needs matplotlib: .venv/bin/pip install -e '.[bench]' "
                    "(or pip install matplotlib)")
    if args.side in ("both", "theirs"):
        if not (args.theirs_bin / "gflowd").exists():
            return (f"gflow 0.4.13 not found: no gflowd in {args.theirs_bin} (make it with: "
                    f"{MAKE_THEIRS}; or pass --theirs-bin DIR)")
        if not shutil.which("tmux"):
            return "gflow 0.4.13 runs its jobs in tmux, and tmux is not on PATH"
    if args.side in ("both", "ours") and not (args.ours_bin / "gflowd").exists():
        return (f"our gflowd not found in {args.ours_bin} (make it with: python3 -m venv .venv "
                f"&& .venv/bin/pip install -e .; or pass --ours-bin DIR)")
    return None


def _cmd(*argv) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem,
            "python": platform.python_version(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "loadavg_start": os.getloadavg(),
            "commit": _cmd("git", "-C", str(REPO), "describe", "--always", "--dirty")}


def describe_machine(m: dict) -> str:
    return (f"{m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Python {m['python']}, "
            f"Linux {m['kernel']}, {m['date']}, commit {m['commit']}, load average "
            f"{m['loadavg_start'][0]:.2f} at start, {m.get('loadavg_end', (0,))[0]:.2f} at end"
            + (f" (per scenario: {', '.join(f'{k} {v:.1f}' for k, v in per.items())})"
               if (per := m.get("loadavg_per_scenario")) else ""))


class Maker:
    """make(ctx) -> a fresh daemon of one side (a context manager)."""

    def __init__(self, cls, bin_dir: Path):
        self.cls, self.bin_dir, self.side = cls, bin_dir, cls.side

    def __call__(self, ctx: Context):
        d = self.cls(self.bin_dir, ctx.workdir)
        d.keep = ctx.keep
        return d


def run(args, out=sys.stdout) -> int:
    reason = preflight(args)
    if reason:
        print(f"benchmarks: {reason}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="gflow-bench-"))
    ctx = Context(ours_bin=args.ours_bin, theirs_bin=args.theirs_bin, workdir=workdir,
                  quick=args.quick, runs=args.runs, keep=args.keep,
                  storm_seconds=args.storm_seconds, scale_sizes=args.scale_sizes,
                  python_loadgen=args.python_loadgen, log=log)
    sides = {"ours": Maker(Ours, args.ours_bin), "theirs": Maker(Theirs, args.theirs_bin)}
    if args.side != "both":
        sides = {args.side: sides[args.side]}
    info = machine()
    raw = {"machine": info, "args": {k: (str(v) if isinstance(v, Path) else v)
                                     for k, v in vars(args).items()},
           "scenarios": {}}
    rows: list[Row] = []
    errors = []
    loads: list[float] = []             # 1-minute load average as each scenario starts
    started = time.monotonic()
    try:
        for name in args.only:
            func, specs = SCENARIOS[name]
            results = {}
            loads.append(os.getloadavg()[0])
            for side, make in sides.items():
                log(f"{name}: {side} ...")
                t0 = time.monotonic()
                try:
                    results[side] = func(ctx, make)
                except (BenchError, OSError, subprocess.SubprocessError, ValueError,
                        KeyError) as exc:
                    errors.append(f"{name}/{side}: {exc}")
                    log(f"{name}: {side} FAILED: {exc}")
                    if os.environ.get("GFLOW_BENCH_DEBUG"):
                        traceback.print_exc()
                    results[side] = {}
                log(f"{name}: {side} done in {time.monotonic() - t0:.1f} s")
            raw["scenarios"][name] = results
            for spec in specs:
                got = {s: results.get(s, {}).get(spec.metric) for s in ("ours", "theirs")}
                if not any(got.values()):
                    continue
                notes = []
                for s in ("ours", "theirs"):
                    note = (got[s] or {}).get("note")
                    if note and note not in notes:
                        notes.append(note)
                rows.append(Row(spec, (got["ours"] or {}).get("value"),
                                (got["theirs"] or {}).get("value"), "; ".join(notes)))
        if args.scale:
            raw["scaling"] = run_scaling(ctx, sides, args.scale, reps=args.runs,
                                         timeout=args.scale_timeout)
            errors += ours_failed(raw["scaling"])
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    info["loadavg_per_scenario"] = dict(zip(args.only, loads))
    info["seconds"] = round(time.monotonic() - started, 1)
    raw["rows"] = [{"scenario": r.spec.scenario, "metric": r.spec.metric, "unit": r.spec.unit,
                    "ours": r.ours, "theirs": r.theirs, "ratio": r.ratio,
                    "target": r.spec.target.describe(r.spec.unit), "met": r.met,
                    "note": r.note} for r in rows]
    raw["errors"] = errors
    if args.only:
        print(format_table(rows, markdown=args.markdown), file=out)
        print("", file=out)
        print(summary(rows), file=out)
    if args.scale:
        if args.only:
            print("", file=out)
        print(format_scaling_table(raw["scaling"], markdown=args.markdown), file=out)
        print("", file=out)
    print(f"machine: {describe_machine(info)}; took {info['seconds']:.0f} s", file=out)
    for err in errors:
        print(f"error: {err}", file=out)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str) + "\n")
    if args.plot:
        from .plot import plot_scaling      # matplotlib: only when a plot is asked for
        try:
            plot_scaling(raw["scaling"], args.plot, subtitle=describe_machine(info))
            print(f"plot: {args.plot}", file=out)
        except (RuntimeError, OSError) as exc:
            print(f"error: --plot: {exc}", file=out)
            errors.append(f"plot: {exc}")
    return 1 if errors else 0


def main(argv=None) -> int:
    return run(parse_args(argv))
