"""``atrium plugins mcp tools|call|validate|test`` before any server answers: names checked
against the registry, arguments checked before connecting, a clear error when the gateway is
down. (Against a running gateway: tests/e2e/test_cli_gateway.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from atrium.client.connect import gateway_url
from atrium.settings import load_settings
from tests.cli.helpers import CliResult, run_atrium
from tests.processes import free_port


def project(tmp_path: Path) -> Path:
    (tmp_path / "services/mcp").mkdir(parents=True)
    (tmp_path / "services/mcp/github.yaml").write_text(
        "mcp_servers: {github: {binary: github-mcp, port: 5100, timeout_s: 5}}\n"
    )
    return tmp_path


def mcp(folder: Path, *args: str, gateway_port: int | None = None) -> CliResult:
    env = {"ATRIUM_GATEWAY_PORT": str(gateway_port or free_port())}
    return run_atrium("--project", str(folder), "plugins", "mcp", *args, env=env)


@pytest.mark.parametrize(
    "command",
    [["tools", "gitlab"], ["call", "gitlab", "search"], ["validate", "gitlab"], ["test", "gitlab"]],
)
def test_an_unknown_server_exits_1_and_names_the_known_ones(
    tmp_path: Path, command: list[str]
) -> None:
    result = mcp(project(tmp_path), *command)

    assert result.exit_code == 1
    assert "server 'gitlab' not found; known: github" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["tools", "github"],
        ["call", "github", "search", "q=x"],
        ["validate", "github"],
        ["test", "github"],
    ],
)
def test_without_a_running_gateway_each_command_exits_1_telling_to_start_atrium(
    tmp_path: Path, command: list[str]
) -> None:
    port = free_port()

    result = mcp(project(tmp_path), *command, gateway_port=port)

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"cannot connect to http://127.0.0.1:{port}/api/v1/mcp/github/mcp" in message
    assert "atrium start" in message
    assert "Traceback" not in result.stderr


def test_an_explicit_url_that_does_not_answer_is_not_blamed_on_atrium(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"

    result = mcp(project(tmp_path), "tools", "anything", "--url", url)

    assert result.exit_code == 1
    assert f"cannot connect to {url}" in result.stderr
    assert "atrium start" not in result.stderr


@pytest.mark.parametrize(
    "arguments", [["--args", "{not json"], ["--args", "[1]"], ["no-equals-sign"]]
)
def test_bad_arguments_are_a_usage_error_before_anything_connects(
    tmp_path: Path, arguments: list[str]
) -> None:
    result = mcp(project(tmp_path), "call", "github", "search", *arguments)

    assert result.exit_code == 2


def test_an_unknown_protocol_mode_exits_1(tmp_path: Path) -> None:
    result = mcp(project(tmp_path), "tools", "github", "--protocol", "1999-01-01")

    assert result.exit_code == 1
    assert "1999-01-01" in result.stderr


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:9000/api/v1/mcp/a/mcp"),
        ("0.0.0.0", "http://127.0.0.1:9000/api/v1/mcp/a/mcp"),
        ("::", "http://[::1]:9000/api/v1/mcp/a/mcp"),
        ("10.1.2.3", "http://10.1.2.3:9000/api/v1/mcp/a/mcp"),
    ],
)
def test_the_gateway_url_reaches_a_wildcard_bind_on_loopback(
    tmp_path: Path, host: str, expected: str
) -> None:
    environ = {"ATRIUM_GATEWAY_HOST": host, "ATRIUM_GATEWAY_PORT": "9000"}
    settings = load_settings(tmp_path, environ=environ)

    assert gateway_url(settings, "a") == expected
