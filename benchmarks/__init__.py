"""Benchmarks of our gflowd against gflow 0.4.13, side by side: `python -m benchmarks`."""
