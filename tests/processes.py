"""What tests of real processes share: a free loopback port, liveness (waiting: tests.polling),
a signal to one of a process's threads."""

from __future__ import annotations

import ctypes
import os
import random
import socket
from collections.abc import Iterable
from pathlib import Path

# Ports the tests choose lie outside the kernel's ephemeral range (32768-60999 by default): a
# port chosen there and released may be taken, before the test's server binds it, as the local
# port of any outgoing connection of any process. Each pytest-xdist worker draws from its own
# share of a range, so two workers do not choose one port, and takes a port it has not handed
# out before while its share has one (the server a test left may still be stopping).
FREE_LOW, FREE_HIGH = 10000, 32767
_handed: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now, of this worker's share of FREE_LOW-FREE_HIGH."""
    return free_port_in(FREE_LOW, FREE_HIGH)


def alive(pid: int) -> bool:
    """Running: a zombie is dead, only not yet reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def other_threads(pid: int) -> list[int]:
    """The ids of ``pid``'s threads but its main one (Linux: ``/proc/PID/task``)."""
    return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)


def signal_thread(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread of ``pid``, as the kernel may when it picks which thread
    takes a signal sent to the process (glibc's ``tgkill``; ``os`` has no wrapper)."""
    if ctypes.CDLL(None, use_errno=True).tgkill(pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}, {signum})")


def free_server_ports(project: Path) -> None:
    """Give every server ``atrium init`` wrote a free port: the built-in ports (5010, 5020 ...)
    are fixed, and tests run side by side. The ports stay in the default range (5000-5999),
    which the projects' settings check."""
    taken: set[int] = set()  # free now is not taken yet: two servers must not draw one port
    for path in (project / "services/mcp").glob("*.yaml"):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if line.strip().startswith("port:") and line.strip()[5:].strip().isdigit():
                port = free_port_in(5000, 5999, taken)
                taken.add(port)
                lines[index] = f"{line.partition('port:')[0]}port: {port}"
        path.write_text("\n".join(lines) + "\n")


def worker_share(low: int, high: int) -> range:
    """This pytest-xdist worker's share of ``low``-``high`` (all of it outside xdist)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = (high - low + 1) // max(count, 1)
    start = low + index % max(count, 1) * size
    return range(start, start + size)


def free_port_in(low: int, high: int, taken: Iterable[int] = ()) -> int:
    """A loopback port of ``low``-``high`` that is free now and not in ``taken``, tried in a
    random order: of this worker's share, one this process has not handed out yet if there is
    one; else any of the share; else any of the range."""
    share = worker_share(low, high)
    avoid = set(taken)
    tries = ((share, True), (share, False), (range(low, high + 1), False))
    for pool, fresh in tries:
        for port in random.sample(pool, len(pool)):
            if port in avoid or (fresh and port in _handed):
                continue
            if _listenable(port):
                _handed.add(port)
                return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _listenable(port: int) -> bool:
    """Whether a server could listen on ``port`` now: as servers do, with ``SO_REUSEADDR``, so
    that a port held only by connections in TIME_WAIT (a server stopped a moment ago) counts."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


BUILTINS = ("atrium", "soul", "content-manager", "marketplace")


def only_builtins(project: Path, keep: Iterable[str]) -> None:
    """Disable the built-in servers ``atrium init`` enabled but a test does not use: each is a
    process to start (seconds of CPU on a small machine) for nothing."""
    for name in set(BUILTINS) - set(keep):
        path = project / f"services/mcp/{name}.yaml"
        if path.exists():
            path.write_text(path.read_text().replace("enabled: true", "enabled: false"))
