"""What gflow adds on a Slurm cluster: submit-to-running and parent-exit-to-child-start in Slurm mode, against sbatch alone on the same cluster (issue 20).

    python -m benchmarks.slurm_overhead [--rounds 10]

Needs a running Slurm (`bash .ci/slurm.sh up` as root). Every time is taken by the jobs
themselves (`date +%s.%N` at their first and last line), so both sides are measured the
same way: submit-to-running is the job's first line minus the moment the submission
was sent (sbatch started, or gflow's HTTP request sent); parent-exit-to-child-start is
the child's first line minus the parent's last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.daemons import Ours, job_body

STAMP = "date +%s.%N >"


def wait_file(path: Path, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
            if text:
                return float(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    raise TimeoutError(f"{path} not written in {timeout:g}s")


def sbatch(command: str, *extra: str) -> str:
    res = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", *extra,
                          "--wrap", command], capture_output=True, text=True, timeout=30,
                         check=True)
    return res.stdout.strip().split(";")[0]


def slurm_alone(work: Path, rounds: int) -> dict:
    starts, chains = [], []
    for i in range(rounds):
        f = work / f"s{i}"
        sent = time.time()
        sbatch(f"{STAMP} {f}")
        starts.append(wait_file(f) - sent)
        p, c = work / f"p{i}", work / f"c{i}"
        parent = sbatch(f"sleep 1; {STAMP} {p}")
        sbatch(f"{STAMP} {c}", f"--dependency=afterok:{parent}", "--kill-on-invalid-dep=yes")
        chains.append(wait_file(c) - wait_file(p))
    return {"submit_to_running": starts, "parent_exit_to_child_start": chains}


def gflow_slurm(bin_dir: Path, work: Path, rounds: int) -> dict:
    d = Ours(bin_dir, work)
    config = d.home / ".config" / "gflow"
    config.mkdir(parents=True)
    (config / "gflow.toml").write_text('[executor]\nkind = "slurm"\n')
    d.env["GFLOW_RUN_AS"] = "daemon"
    d.start()
    try:
        starts, chains = [], []
        for i in range(rounds):
            f = work / f"gs{i}"
            sent = time.time()
            status, body = d.request("POST", "/jobs", job_body(f"{STAMP} {f}"))
            assert status in (200, 201), (status, body)
            starts.append(wait_file(f) - sent)
            p, c = work / f"gp{i}", work / f"gc{i}"
            _, body = d.request("POST", "/jobs", job_body(f"sleep 1; {STAMP} {p}"))
            parent = json.loads(body)["id"]
            d.request("POST", "/jobs", job_body(f"{STAMP} {c}", depends_on_ids=[parent]))
            chains.append(wait_file(c) - wait_file(p))
        return {"submit_to_running": starts, "parent_exit_to_child_start": chains}
    finally:
        d.stop()


def describe(samples: list) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"{statistics.median(ms):7.0f} ms median, {p90:7.0f} ms p90"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--bin", default=str(Path(sys.executable).parent),
                    help="where our gflowd lives (default: this interpreter's bin)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gflow-slurm-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        alone = slurm_alone(work, args.rounds)
        ours = gflow_slurm(Path(args.bin), work, args.rounds)
    print(f"{args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    for key in ("submit_to_running", "parent_exit_to_child_start"):
        a, o = statistics.median(alone[key]), statistics.median(ours[key])
        print(f"{key}:")
        print(f"  sbatch alone : {describe(alone[key])}")
        print(f"  gflow (slurm): {describe(ours[key])}")
        print(f"  gflow adds   : {(o - a) * 1000:+.0f} ms at the median ({o / a:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
