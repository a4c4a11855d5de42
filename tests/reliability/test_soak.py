"""A short soak (the long form is `python -m benchmarks.soak`): memory and open files stay bounded."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.soak import soak  # noqa: E402

# Stated bound: the daemon may grow by what the jobs it keeps cost (their records and
# encoded JSON, about 4 KB each) plus 25 MB of caches and allocator slack; open files
# may not grow by more than 10.
PER_JOB_KB = 4
SLACK_MB = 25


def test_short_soak_stays_bounded(daemon):
    result = soak(daemon.port, daemon.master_pid(), 20.0, sample_every=2.0)
    assert not result.errors, result.errors[:5]
    assert result.requests > 500
    mem, files = result.growth()
    jobs_added = result.samples[-1].jobs - result.samples[2].jobs
    assert files <= 10, f"open files grew by {files}"
    bound = SLACK_MB + jobs_added * PER_JOB_KB / 1024
    assert mem <= bound, f"memory grew {mem:.1f} MB for {jobs_added} jobs (bound {bound:.1f})"
