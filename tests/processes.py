"""What tests of real processes share: a free loopback port, liveness (waiting: tests.polling)."""

from __future__ import annotations

import socket
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
    are fixed, and tests run side by side."""
    for path in (project / "services/mcp").glob("*.yaml"):
        text = path.read_text()
        lines = [
            f"{line.partition('port:')[0]}port: {free_port()}"
            if line.strip().startswith("port:") and line.strip()[5:].strip().isdigit()
            else line
            for line in text.splitlines()
        ]
        path.write_text("\n".join(lines) + "\n")
