"""What tests of real processes share: a free loopback port, liveness (waiting: tests.polling)."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterable
from pathlib import Path

# Ports the tests choose lie outside the kernel's ephemeral range (32768-60999 by default): a
# port chosen there and released may be taken, before the test's server binds it, as the local
# port of any outgoing connection of any process. Each pytest-xdist worker draws from its own
# share of a range, so two workers never choose one port, and a process never chooses a port
# twice (the server a test left may still hold it).
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
    """A loopback port of this worker's share of ``low``-``high`` that is free now, not in
    ``taken`` and not handed out before by this process (tried in a random order)."""
    share = worker_share(low, high)
    avoid = set(taken)
    if all(port in _handed or port in avoid for port in share):
        _handed.difference_update(share)  # every port once: start again
    for port in random.sample(share, len(share)):
        if port in avoid or port in _handed:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    raise RuntimeError(f"no free port in {share.start}-{share.stop - 1}")


BUILTINS = ("atrium", "soul", "content-manager", "marketplace")


def only_builtins(project: Path, keep: Iterable[str]) -> None:
    """Disable the built-in servers ``atrium init`` enabled but a test does not use: each is a
    process to start (seconds of CPU on a small machine) for nothing."""
    for name in set(BUILTINS) - set(keep):
        path = project / f"services/mcp/{name}.yaml"
        if path.exists():
            path.write_text(path.read_text().replace("enabled: true", "enabled: false"))
