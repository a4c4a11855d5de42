"""gflow: a single-node GPU job scheduler with a Slurm-like workflow."""

__version__ = "0.1.0"
# The gflow release whose behaviour and wire format we re-create.
COMPAT_VERSION = "0.4.13"
