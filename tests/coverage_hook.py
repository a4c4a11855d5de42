"""Coverage of every Python process the tests start (docs/testing.md).

    .venv/bin/python tests/coverage_hook.py install     # once per venv
    .venv/bin/python tests/coverage_hook.py uninstall

`install` puts `gflow_coverage.pth` and `_gflow_coverage.py` into the venv's
site-packages. In any Python process that starts with COVERAGE_PROCESS_START set, the
hook starts coverage (as coverage's own `a1_coverage.pth` does, when it is there) and
makes `os._exit` save the data first: gflowd's API worker and the other workers end with
`os._exit` after draining, which would otherwise lose everything they measured. Without
COVERAGE_PROCESS_START the hook does nothing.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

HOOK_MODULE = '''\
"""gflow's coverage hook (tests/coverage_hook.py): start coverage in every process when
COVERAGE_PROCESS_START is set, and save its data before os._exit."""
import os

if os.environ.get("COVERAGE_PROCESS_START"):
    try:
        import coverage
    except ImportError:
        coverage = None
    if coverage is not None:
        coverage.process_startup()
        if coverage.Coverage.current() is not None and not getattr(os._exit, "_gflow", 0):
            _real_exit = os._exit

            def _exit(code, _real_exit=_real_exit):
                try:
                    cov = coverage.Coverage.current()
                    if cov is not None:
                        cov.stop()
                        cov.save()
                except Exception:
                    pass
                _real_exit(code)

            _exit._gflow = 1
            os._exit = _exit
'''

PTH_NAME = "gflow_coverage.pth"
MODULE_NAME = "_gflow_coverage.py"


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def install() -> None:
    site = site_packages()
    (site / MODULE_NAME).write_text(HOOK_MODULE)
    (site / PTH_NAME).write_text("import _gflow_coverage\n")
    print(f"installed {site / PTH_NAME} and {site / MODULE_NAME}")


def uninstall() -> None:
    site = site_packages()
    for name in (PTH_NAME, MODULE_NAME):
        (site / name).unlink(missing_ok=True)
    print(f"removed {PTH_NAME} and {MODULE_NAME} from {site}")


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action == "install":
        install()
    elif action == "uninstall":
        uninstall()
    else:
        sys.exit("usage: python tests/coverage_hook.py install|uninstall")
