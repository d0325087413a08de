"""What tests of real processes share: a free loopback port, liveness (waiting: tests.polling)."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def free_port_in(low: int, high: int, taken: Iterable[int] = ()) -> int:
    """A loopback port of ``low``-``high`` that is free now and not in ``taken`` (tried in a
    random order)."""
    for port in random.sample(range(low, high + 1), high - low + 1):
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


BUILTINS = ("atrium", "soul", "content-manager", "marketplace")


def only_builtins(project: Path, keep: Iterable[str]) -> None:
    """Disable the built-in servers ``atrium init`` enabled but a test does not use: each is a
    process to start (seconds of CPU on a small machine) for nothing."""
    for name in set(BUILTINS) - set(keep):
        path = project / f"services/mcp/{name}.yaml"
        if path.exists():
            path.write_text(path.read_text().replace("enabled: true", "enabled: false"))
