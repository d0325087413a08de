"""Finding and reaping processes orphaned onto the supervisor (Linux ``/proc``).

As a child subreaper, the supervisor inherits the grandchildren of a server that died. They are
not ours to keep: each is sent SIGKILL with its process group and reaped, so that stopping or
crashing a server never leaves a stdio server or a node process running.

Why not ``psutil``: being a child subreaper (``PR_SET_CHILD_SUBREAPER``) is Linux-only, so this
never runs where ``/proc`` is missing, and the two reads it needs (a parent pid, an environment)
are the ones ``psutil`` would make from the same files. A compiled dependency for two file
reads, off the request path, is not worth its weight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

logger = logging.getLogger(__name__)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may hold spaces, so split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def carries(pid: int, marker: str) -> bool:
    """Whether the process's environment holds ``marker`` (``NAME=value``)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker.encode() in environ.split(b"\0")


def reap_orphans(marker: str, exclude: set[int]) -> list[int]:
    """Kill and reap our children that carry ``marker`` but are not managed servers.

    The marker (an environment variable set for every server we start, inherited by what it
    starts) tells an orphan of ours from a child that another part of this process started.
    """
    orphans = [
        pid for pid in children_of(os.getpid()) if pid not in exclude and carries(pid, marker)
    ]
    for pid in orphans:
        logger.warning("reaping orphaned process %s", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return orphans
