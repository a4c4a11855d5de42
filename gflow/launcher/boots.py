"""Whether the machine restarted since this data dir's launcher last adopted its jobs."""

# Why it exists: a job's spec file is written without fsync (an fsync of a file just
# renamed into place waits for a journal commit: 1-3 ms on the start path of every job).
# Within one boot the page cache keeps it through the death of any process, so a spec
# missing on adoption means the start was never carried out and the job is started.
# After an OS crash or power loss it may have been lost although the job ran (and died
# with the machine): starting it again would run it twice. So the launcher records the
# boot it last adopted under (fsynced, once per boot); on adoption in another boot a
# missing spec means "unknown" and the job is reported, not started. No record at all:
# no launcher that skips the fsync has run on this data dir (a new one, or one whose
# launcher synced every spec), so the current boot is recorded before any job starts.

from __future__ import annotations

import os
from typing import Optional

from gflow.launcher import safefs

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def current_boot() -> str:
    """The kernel's id of this boot (the boot time where /proc lacks it)."""
    try:
        with open(BOOT_ID_FILE) as f:
            boot = f.read().strip()
        if boot:
            return boot
    except OSError:
        pass
    import psutil
    return f"btime:{int(psutil.boot_time())}"


class BootRecord:
    """`<data_dir>/launcher.boot`: the boot under which the launcher last adopted jobs."""

    def __init__(self, path, boot: Optional[str] = None):
        self.path = os.fspath(path)
        self.boot = boot if boot is not None else current_boot()
        if not os.path.lexists(self.path):
            self._same = False
            try:
                self.record()       # before this launcher starts anything (see above)
            except OSError:
                pass                # stays "restarted" (the safe side); adopt() tries again
            return
        recorded = safefs.read_json(self.path)
        self._same = isinstance(recorded, dict) and recorded.get("boot_id") == self.boot

    @property
    def restarted(self) -> bool:
        """True when the record names another boot (or cannot be read): a spec missing
        now may have been lost."""
        return not self._same

    def record(self) -> None:
        """Name this boot (durably) once every job of an adoption has been dealt with."""
        if not self._same:
            safefs.write_json_atomic(self.path, {"boot_id": self.boot})
            self._same = True
