"""`python -m gflow.mcp`: the gflow-mcp server without its console script."""

import sys

from gflow.mcp import main

sys.exit(main())
