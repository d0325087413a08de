"""The ``atrium`` command of one project, run as a user runs it: a real subprocess each time."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import free_port


class Atrium:
    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env

    @classmethod
    def on_free_ports(cls, project: Path) -> Atrium:
        """A project whose gateway takes a free loopback port and whose servers may take any;
        wide, uncoloured output, so tests read whole lines."""
        env = {
            **os.environ,
            "ATRIUM_PORT_RANGE": "1024-65535",
            "ATRIUM_GATEWAY_PORT": str(free_port()),
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        return cls(project, env)

    @contextmanager
    def running(self) -> Iterator[Atrium]:
        """Every enabled server and the gateway, in the background, until the block ends."""
        started = self("infra", "services", "start", "--all", "--detach")
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            yield self
        finally:
            self("infra", "services", "stop")

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "atrium", "--project", str(self.project), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
