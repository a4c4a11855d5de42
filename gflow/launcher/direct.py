"""Plain commands run without the `bash -c` around them, exactly as that bash would run them.

`bash -c 'python train.py --lr 0.1'` parses the one simple command and execs it in place
(no fork); the job is the same process either way. What the bash adds is ~1 ms of its
own start-up before the job's, and four changes to the environment, which `prepare`
makes itself: `_` names the program it found on PATH, PWD names the working directory
(kept when it already does), SHLVL is 0 when unset (bash raises it and lowers it again
for the exec), and an OLDPWD that is not a directory is dropped.

Only a command bash would pass through unchanged is taken: words of letters, digits and
`_ . / : @ % + , = -` separated by spaces (no quoting, expansion, globbing, redirection,
operator or comment), whose first word is no assignment, builtin or keyword and is found
on an absolute PATH entry as an executable file; and only when nothing in the
environment would change what that bash does (exported functions, BASH_ENV, SHELLOPTS,
an odd SHLVL...). Anything else, and any failure to exec the program (a script without
`#!`, say: bash runs those itself), goes through `bash -c` as before.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Optional

_WORDS = re.compile(r"[A-Za-z0-9_./:@%+,=-]+(?: +[A-Za-z0-9_./:@%+,=-]+)*")
_PROGRAM = re.compile(r"[A-Za-z0-9_./+][A-Za-z0-9_./+-]*")
# `compgen -b -k` of bash 5.2 (the names a plain first word could spell), and names
# later bash versions or loadable builtins add, to be safe.
_BASH_OWN = frozenset("""
. alias bg bind break builtin caller case cd command compgen complete compopt continue
coproc declare dirs disown do done echo elif else enable esac eval exec exit export
false fc fg fi for function getopts hash help history if in jobs kill let local logout
mapfile popd printf pushd pwd read readarray readonly return select set shift shopt
source suspend test then time times trap true type typeset ulimit umask unalias unset
until wait while
""".split())
# Environment variables that change what `bash -c` does before or instead of the exec.
_BASH_VARS = ("BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT", "EXECIGNORE",
              "BASH_XTRACEFD", "BASH_COMPAT", "BASH_LOADABLES_PATH", "GLOBIGNORE")


def plain_words(command: str) -> Optional[list]:
    """The words of `command` if it is one plain simple command (see above), else None."""
    command = command.strip(" ")
    if not _WORDS.fullmatch(command):
        return None
    words = command.split(" ")
    words = [w for w in words if w]
    first = words[0]
    if not _PROGRAM.fullmatch(first) or "=" in first or first in _BASH_OWN:
        return None
    return words


def prepare(words: list, env: dict, cwd: str) -> Optional[tuple]:
    """(executable, environment) to exec `words` with, as `bash -c` would, from `cwd`;
    None when only bash itself can tell (then run it through bash)."""
    if any(k in env for k in _BASH_VARS) or any(k.startswith("BASH_FUNC_") for k in env):
        return None
    level = env.get("SHLVL")
    if level is not None and not (level.isascii() and level.isdigit()
                                  and level == str(int(level)) and int(level) < 999):
        return None
    program = words[0]
    if "/" in program:
        executable = found = program
        if not _executable(os.path.join(cwd, program)):
            return None
    else:
        path = env.get("PATH")
        if not path:
            return None
        for entry in path.split(":"):
            if not entry.startswith("/"):
                return None       # "" or a relative entry: bash's search would differ
            candidate = os.path.join(entry, program)
            if _executable(candidate):
                executable = found = candidate
                break
        else:
            return None
    env = dict(env)
    env["_"] = found
    if level is None:
        env["SHLVL"] = "0"
    try:
        here = os.stat(cwd)
        pwd = env.get("PWD")
        if not (pwd and pwd.startswith("/") and _same(pwd, here)):
            env["PWD"] = os.path.realpath(cwd)
    except OSError:
        return None
    old = env.get("OLDPWD")
    if old is not None and not os.path.isdir(os.path.join(cwd, old)):
        del env["OLDPWD"]
    return executable, env


def _executable(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode) and os.access(path, os.X_OK)
    except OSError:
        return False


def _same(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
