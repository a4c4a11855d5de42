"""A Launcher driven in-process by tests: its paths, and a stand-in for its channel."""

from __future__ import annotations

import os

from gflow.config import Config
from gflow.launcher.service import Launcher
from gflow.paths import Paths


def paths_in(tmp_path) -> Paths:
    p = Paths.from_env({"HOME": str(tmp_path)})
    os.makedirs(p.logs_dir, exist_ok=True)
    return p


class Recorder:
    """Takes what the launcher would send to the scheduler."""

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)
        return True


def make_launcher(tmp_path, paths: Paths | None = None) -> tuple[Launcher, Recorder]:
    launcher = Launcher(paths or paths_in(tmp_path), Config(),
                        notify_address="\0gflow-test-none")
    rec = Recorder()
    launcher.channel = rec
    return launcher, rec
