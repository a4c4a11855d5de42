"""Files of retried jobs: before attempt N starts, attempt N-1's log is kept aside and its bookkeeping files go."""

from __future__ import annotations

import logging
import os

from gflow.launcher import safefs

log = logging.getLogger("gflow.launcher")


def attempt_of(spec: dict) -> int:
    return int(spec.get("attempt") or 1)


def stale_spec(spec_path: str, spec: dict) -> bool:
    """True when the monitor spec on disk belongs to an earlier attempt than `spec`'s:
    the attempt the scheduler wants never started (the launcher was away)."""
    if attempt_of(spec) <= 1:
        return False
    on_disk = safefs.read_json(spec_path)
    return not isinstance(on_disk, dict) or attempt_of(on_disk) != attempt_of(spec)


def archive_previous(paths, job_id: int, attempt: int, spec_path: str) -> None:
    """Keep attempt `attempt - 1`'s log as `<id>.attempt-<N-1>.log` (renamed, never
    followed: a planted link moves as a link) and remove its status, pid and spec files,
    so that nothing of it is read as the new attempt's."""
    if attempt <= 1:
        return
    current, kept = paths.job_log(job_id), paths.job_attempt_log(job_id, attempt - 1)
    try:
        if os.path.lexists(current) and not os.path.lexists(kept):
            os.rename(current, kept)
    except OSError as exc:
        log.warning("job %d: cannot keep the log of attempt %d: %s", job_id, attempt - 1, exc)
    for path in (paths.job_status(job_id), paths.job_pidfile(job_id), spec_path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("job %d: cannot remove %s: %s", job_id, path, exc)
