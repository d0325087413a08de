"""A project folder with fake servers, and free loopback ports, for supervisor tests."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from atrium.registry.loader import Registry, load_registry
from atrium.settings import Settings, load_settings
from tests.processes import free_port

FAKE = Path(__file__).with_name("fake_server.py")


ProjectFactory = Callable[..., tuple[Settings, Registry]]


@pytest.fixture
def fake_project(tmp_path: Path) -> ProjectFactory:
    """``fake_project(name=[extra args], ...)`` → settings and registry of fake servers."""

    def make(
        environ: dict[str, str] | None = None, **servers: list[str]
    ) -> tuple[Settings, Registry]:
        (tmp_path / "services/mcp").mkdir(parents=True, exist_ok=True)
        for name, extra in servers.items():
            command = [sys.executable, str(FAKE), "--port", "{port}", *extra]
            server = {"mcp_servers": {name: {"command": command, "port": free_port()}}}
            (tmp_path / f"services/mcp/{name}.yaml").write_text(json.dumps(server))
        env = {
            "ATRIUM_PORT_RANGE": "1024-65535",
            "ATRIUM_GATEWAY_PORT": str(free_port()),
            "PATH": "/usr/bin:/bin",
            **(environ or {}),
        }
        settings = load_settings(tmp_path, environ=env)
        return settings, load_registry(settings)

    return make
