"""`<tool> completion SHELL`: shell completion scripts generated from the argparse parsers
(by shtab), so the completions can never drift from the commands."""

from __future__ import annotations

import argparse


def generate(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab
    prog = parser.prog.split()[0]
    script = shtab.complete(parser, shell=shell, root_prefix=prog.replace("-", "_"))
    return script if script.endswith("\n") else script + "\n"
