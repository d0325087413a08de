"""Which host's supervisor runs a server (``atrium.supervisor.placement``): one with a
``backend.host`` of this machine runs here, listening on that address; one whose backend is
on another machine is never started here, and asking for it by name says where it runs.

127.0.0.2 stands in for an address of this machine other than the gateway's loopback one (the
whole of 127.0.0.0/8 is this machine's), 192.0.2.10 (TEST-NET-1, RFC 5737) for another host.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from atrium.errors import AtriumError
from atrium.registry.loader import Registry, load_registry
from atrium.registry.schema import port_of
from atrium.settings import Settings, load_settings
from atrium.supervisor.placement import local_address
from atrium.supervisor.spec import launch_spec
from atrium.supervisor.supervisor import RestartPolicy, Supervisor
from tests.processes import free_port
from tests.supervisor.conftest import FAKE

FAST = RestartPolicy(max_crashes=3, window_s=30, backoff_base_s=0.05, health_deadline_s=10)
ELSEWHERE = "192.0.2.10"
FAKE_COMMAND = [sys.executable, str(FAKE), "--port", "{port}", "--host", "{host}"]


def project(tmp_path: Path, **servers: dict[str, Any]) -> tuple[Settings, Registry]:
    """Fake servers (``--host {host}`` in their command), each with the extra YAML given."""
    (tmp_path / "services/mcp").mkdir(parents=True, exist_ok=True)
    document = {
        "mcp_servers": {
            name: {"command": FAKE_COMMAND, "port": free_port(), **extra}
            for name, extra in servers.items()
        }
    }
    (tmp_path / "services/mcp/servers.yaml").write_text(json.dumps(document))
    environ = {"ATRIUM_PORT_RANGE": "1024-65535", "PATH": "/usr/bin:/bin"}
    settings = load_settings(tmp_path, environ=environ)
    return settings, load_registry(settings)


def refused(host: str, port: int | None) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.2", "127.0.0.2"),
        ("localhost", "127.0.0.1"),
        (ELSEWHERE, None),
        ("nowhere.invalid", None),
    ],
)
def test_an_address_is_this_machines_when_the_kernel_lets_us_bind_it(
    host: str, expected: str | None
) -> None:
    assert local_address(host) == expected


async def test_a_server_whose_backend_is_this_host_listens_on_that_address(
    tmp_path: Path,
) -> None:
    settings, registry = project(tmp_path, here={"backend": {"host": "127.0.0.2"}}, plain={})
    here, plain = (port_of(registry.get(name).config) for name in ("here", "plain"))
    supervisor = Supervisor(settings, registry, FAST)
    try:
        results = await supervisor.start()
        async with httpx2.AsyncClient(timeout=5) as http:
            answer = await http.get(f"http://127.0.0.2:{here}/health")

        assert results == {"here": None, "plain": None}
        assert answer.status_code == 200
        assert refused("127.0.0.1", here)  # not on the loopback address the gateway's are on
        assert refused("127.0.0.2", plain)  # a server without backend: stays on 127.0.0.1
        assert not refused("127.0.0.1", plain)
    finally:
        await supervisor.close()


async def test_a_server_whose_backend_is_another_host_is_never_started_here(
    tmp_path: Path,
) -> None:
    settings, registry = project(
        tmp_path,
        there={"backend": {"host": ELSEWHERE}},
        unresolvable={"backend": {"host": "nowhere.invalid"}},
        plain={},
    )
    supervisor = Supervisor(settings, registry, FAST)
    try:
        results = await supervisor.start()

        assert results == {"plain": None}
        assert set(supervisor.state.servers) == {"plain"}
        with pytest.raises(AtriumError) as raised:
            await supervisor.start(["there"])
        assert ELSEWHERE in str(raised.value)
        assert "services/mcp/servers.yaml" in str(raised.value)
        assert set(supervisor.state.servers) == {"plain"}
    finally:
        await supervisor.close()


def test_a_built_in_or_bridged_server_is_told_to_listen_only_when_other_hosts_reach_it(
    tmp_path: Path,
) -> None:
    stdio = {"transport": "stdio", "command": ["/bin/cat"]}
    settings, registry = project(
        tmp_path,
        bridged={**stdio, "backend": {"host": "127.0.0.2"}},
        local={**stdio},
        binary={"binary": "python3", "command": None, "backend": {"host": "127.0.0.2"}},
    )

    bridged, local, binary = (
        launch_spec(registry.get(name), settings) for name in ("bridged", "local", "binary")
    )

    assert "--host" not in local.argv
    assert local.health_url.startswith("http://127.0.0.1:")
    for spec in (bridged, binary):
        at = spec.argv.index("--host")
        assert spec.argv[at + 1] == "127.0.0.2"
        assert spec.health_url == f"http://127.0.0.2:{spec.port}/health"
    assert bridged.argv.index("--host") < bridged.argv.index("--")  # the bridge's, not cat's
