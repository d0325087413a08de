"""``backend:`` in a server's YAML: where the gateway reaches a server that runs on another
host. Only a host (a name or an address the gateway can connect to) and maybe a port; anything
else is refused with the file, line and key path, like every other key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from atrium.registry.schema import HttpServer, StdioServer, parse_server_config
from atrium.registry.sync import record_for
from tests.cli.helpers import CliResult, run_atrium

HTTP = {"binary": "alpha-mcp", "port": 5001}


def error_messages(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        parse_server_config(data)
    return [error["msg"] for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("host", "kept"),
    [
        ("mcp-1.internal", "mcp-1.internal"),
        ("MCP-1.Internal.", "mcp-1.internal"),
        ("github-mcp", "github-mcp"),
        ("10.0.0.7", "10.0.0.7"),
        ("fd00::7", "fd00::7"),
        ("FD00:0::7", "fd00::7"),
    ],
)
def test_a_host_name_or_address_is_kept_in_one_spelling(host: str, kept: str) -> None:
    config = parse_server_config({**HTTP, "backend": {"host": host}})

    assert isinstance(config, HttpServer)
    assert config.backend is not None
    assert (config.backend.host, config.backend.port) == (kept, None)


def test_the_stored_form_keeps_the_backend_and_loads_again() -> None:
    stdio = {"transport": "stdio", "command": ["uvx", "mcp-server-time"], "port": 5002}
    config = parse_server_config({**stdio, "backend": {"host": "mcp-2", "port": 8002}})

    stored = record_for("time", config, "services/mcp/time.yaml").config

    assert stored["backend"] == {"host": "mcp-2", "port": 8002}
    assert parse_server_config(stored) == config
    assert isinstance(config, StdioServer)


@pytest.mark.parametrize(
    "host",
    [
        "http://mcp-1.internal",
        "mcp-1.internal:5050",
        "mcp-1.internal/mcp",
        "[fd00::7]",
        "mcp 1",
        "-mcp.internal",
        "mcp_1.internal",
        "1.2.3",
        "",
        "a" * 64 + ".internal",
        "mcp\x00.internal",
        "mcp-1.internal\n",
        ".".join(["a" * 63] * 4) + ".x",
    ],
)
def test_anything_but_a_bare_host_is_refused(host: str) -> None:
    (message,) = error_messages({**HTTP, "backend": {"host": host}})

    assert "without scheme, port or path" in message


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_address_is_refused(host: str) -> None:
    (message,) = error_messages({**HTTP, "backend": {"host": host}})

    assert "wildcard" in message


@pytest.mark.parametrize("backend", [{"host": "mcp-1", "port": 0}, {"host": "mcp-1", "tls": 1}, {}])
def test_a_bad_port_an_unknown_key_or_no_host_is_refused(backend: dict[str, Any]) -> None:
    assert error_messages({**HTTP, "backend": backend})


def test_a_remote_server_has_no_backend_its_url_says_where_it_is() -> None:
    remote = {"transport": "remote", "url": "https://mcp.example.com/mcp"}

    (message,) = error_messages({**remote, "backend": {"host": "mcp-1"}})

    assert "'backend' is not for transport 'remote'" in message


def mcp_list(project: Path) -> CliResult:
    return run_atrium("--project", str(project), "plugins", "mcp", "list")


def test_a_bad_backend_host_names_file_line_server_and_key_path(tmp_path: Path) -> None:
    (tmp_path / "services/mcp").mkdir(parents=True)
    (tmp_path / "services/mcp/alpha.yaml").write_text(
        textwrap.dedent(
            """\
            mcp_servers:
              alpha:
                binary: alpha-mcp
                port: 5001
                backend:
                  host: http://mcp-1.internal:5001
            """
        )
    )

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    line = next(line for line in result.stderr.splitlines() if "alpha.yaml" in line)
    assert "services/mcp/alpha.yaml:6:7" in line
    assert "mcp_servers.alpha.backend.host" in line
    assert "Traceback" not in result.stderr
