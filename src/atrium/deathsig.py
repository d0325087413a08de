"""A process Atrium's supervisor starts dies with the supervisor, at every moment of its life.

The supervisor stops its servers on SIGTERM and SIGINT, but nothing catches a SIGKILL (a service
manager's second signal, the OOM killer). Its servers would run on, holding their ports, and the
next ``atrium start`` could not start them. So every process the supervisor starts asks the
kernel for a signal when its parent dies (Linux ``PR_SET_PDEATHSIG``) and then checks that its
parent is still the supervisor, whose pid it is given in ``ATRIUM_SUPERVISOR_PID``: a supervisor
that died before the request (while the server was still being forked or importing) is caught
by the check, one that dies after it by the kernel.

The request does not survive ``exec`` of a set-user-ID program and must be made by the process
itself, so a program that is not Atrium's own Python is started through this file run as a
script: ``python -S -I deathsig.py <supervisor pid> <program> <args...>`` makes the request and
then ``exec``s the program, which keeps it. For that, this module imports the standard library
only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping

SUPERVISOR_PID_VARIABLE = "ATRIUM_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1
EXEC_FAILED = 127


def expected_parent(environ: Mapping[str, str] | None = None) -> int | None:
    """The supervisor's pid, when the supervisor started this process."""
    # Standard library only (this file runs without site-packages), so not atrium.settings.
    env = os.environ if environ is None else environ  # noqa: TID251
    value = env.get(SUPERVISOR_PID_VARIABLE, "")
    return int(value) if value.isdigit() else None


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Be sent ``signum`` when the parent dies; exit now if ``parent`` is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    # After the request: a parent that dies from here on is the kernel's to report.
    if os.getppid() != parent:
        raise SystemExit(f"atrium: the supervisor (pid {parent}) is gone: not starting")


def _exec(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        raise SystemExit("usage: deathsig.py <supervisor pid> <program> [args...]")
    die_with_parent(int(argv[0]))
    try:
        os.execvp(argv[1], argv[1:])
    except OSError as exc:
        print(f"atrium: cannot run {argv[1]}: {exc.strerror}", file=sys.stderr)
        sys.exit(EXEC_FAILED)


if __name__ == "__main__":
    _exec(sys.argv[1:])
