"""`python -m gflow.shell`: run gflow-shell, as the `gflow-shell` console script does."""

import sys

from gflow.shell import main

if __name__ == "__main__":
    sys.exit(main())
