"""What every command shares: config loading, the current user, error reporting, exit codes."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable, Optional

from gflow.client import ApiError, Client, ConnectionFailed
from gflow.errors import GflowError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A runtime error of a command: printed as is, exit status 1."""

    def __init__(self, message: str, code: int = EXIT_RUNTIME):
        super().__init__(message)
        self.code = code


def current_user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=argparse.SUPPRESS)


def load_config(path: Optional[str] = None, overrides: Optional[dict] = None):
    from gflow.config import load_config as _load
    config = _load(path, overrides=overrides)
    for warning in config.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return config


def client_for(args) -> Client:
    return Client.from_config(load_config(getattr(args, "config", None)))


def guarded(fn: Callable[..., int]) -> Callable[..., int]:
    """Turn every expected failure into one or two clear lines and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> int:
        try:
            return fn(*args, **kwargs)
        except ConnectionFailed as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_RUNTIME
        except ApiError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
        except CommandError as exc:
            print(str(exc), file=sys.stderr)
            return exc.code
        except GflowError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
        except KeyboardInterrupt:
            print("", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # `gqueue | head`: the reader went away; not an error worth a traceback.
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass
            return EXIT_OK

    return wrapper
