"""What `gbatch` checks before it submits: input that can never work is refused, input that may not work is warned about (issue 23)."""

from __future__ import annotations

import os
import re
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings here
    from typing import Optional

from gflow.cli.common import CommandError

# The launcher's placeholder pattern (gflow/launcher/service.py PARAM_RE): every match in
# a sweep's command is substituted, and one without a value fails the job at start.
PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
# Enough of a script to find a DOS line break without reading a huge file whole.
CRLF_SCAN_BYTES = 4 << 20


def join_negative_values(parser, argv: list[str]) -> list[str]:
    """`-m -5G` → `-m-5G`, `--memory -5G` → `--memory=-5G`, up to the command.

    argparse takes `-5G` for an option and says "expected one argument"; joined, the value
    reaches its own check, which says what is wrong with it ("memory must be positive").
    """
    out = list(argv)
    i = 0
    while i < len(out):
        word = out[i]
        if word == "--" or not word.startswith("-") or word == "-":
            break                               # the command starts here: leave it alone
        action = parser._option_string_actions.get(word)
        if action is None or action.nargs == 0:
            i += 1
            continue
        if i + 1 < len(out) and re.match(r"-[0-9.]", out[i + 1]):
            value = out.pop(i + 1)
            out[i] = f"{word}={value}" if word.startswith("--") else word + value
        i += 2
    return out


def check_crlf_file(path: str, shown: str) -> None:
    try:
        with open(path, "rb") as f:
            data = f.read(CRLF_SCAN_BYTES)
    except OSError:
        return                                  # the launcher reports an unreadable script
    if b"\r\n" in data:
        raise CommandError(crlf_message(shown))


def crlf_message(shown: str) -> str:
    # sbatch's words ("Batch script contains DOS line breaks (\r\n)"), then the way out.
    return (f"Error: {shown} has DOS line breaks (\\r\\n) instead of UNIX line breaks (\\n), "
            f"which bash cannot run: convert it with `dos2unix {shown}` or "
            f"`sed -i 's/\\r$//' {shown}`")


def check_placeholders(command: Optional[str], name_template: Optional[str],
                       combos: list[dict]) -> None:
    """In a sweep, every `{name}` of the command and of --name-template must be a parameter."""
    names = set(combos[0]) if combos else set()
    given = ", ".join(sorted(names)) or "none"
    for what, text in (("the command", command), ("--name-template", name_template)):
        unknown = sorted({m for m in PLACEHOLDER.findall(text or "") if m not in names})
        if unknown:
            shown = ", ".join("{" + u + "}" for u in unknown)
            raise CommandError(f"Error: {what} uses {shown}, which "
                               f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'}"
                               f" (parameters: {given})")


def warn_gpu_count(client, gpus: int) -> None:
    """A job asking for more GPUs than the daemon has (or may use) would wait forever."""
    if gpus <= 0:
        return
    try:
        status, info = client.request("GET", "/info")
    except Exception:   # a check that only warns must never stop a submission
        return          # (an unreachable daemon: the submission itself says so)
    if status != 200 or not isinstance(info, dict) or not isinstance(info.get("gpus"), list):
        return
    if info.get("executor", "local") != "local":
        return          # Slurm places the job: this machine's GPUs do not count
    indices = {g.get("index") for g in info["gpus"] if isinstance(g, dict)}
    allowed = info.get("allowed_gpu_indices")
    if gpus > len(indices):
        print(f"Warning: the job asks for {gpus} GPUs but this gflowd has {len(indices)}: "
              "it will wait in the queue until the daemon has that many", file=sys.stderr)
    elif isinstance(allowed, list) and gpus > len(indices & set(allowed)):
        print(f"Warning: the job asks for {gpus} GPUs but gflowd may use only "
              f"{len(indices & set(allowed))} (`gctl set-gpus`): it will wait in the queue "
              "until more are allowed", file=sys.stderr)


def conda_available(env=None) -> bool:
    """Whether the launcher's `${CONDA_EXE:-conda}` can be found (the job runs here, as you)."""
    env = os.environ if env is None else env
    exe = env.get("CONDA_EXE")
    if exe and os.access(exe, os.X_OK):
        return True
    return any(os.access(os.path.join(d, "conda"), os.X_OK)
               for d in env.get("PATH", "").split(os.pathsep) if d)


def warn_conda(conda_env: Optional[str]) -> None:
    if conda_env and not conda_available():
        print(f"Warning: conda not found (no $CONDA_EXE, no `conda` on PATH): the job will "
              f"fail when it activates environment '{conda_env}'", file=sys.stderr)
