"""``atrium plugins mcp export-registry``: a server's MCP Registry ``server.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from atrium.settings import load_settings
from tests.cli.helpers import CliResult, run_atrium

# modelcontextprotocol/registry, docs/reference/server-json (released schema 2025-12-11)
SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
NAME = re.compile(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``atrium init``'s project, plus an open server that needs no token."""
    root = tmp_path_factory.mktemp("project")
    assert run_atrium("init", str(root)).exit_code == 0
    document = {
        "mcp_servers": {
            "open": {"transport": "remote", "url": "https://upstream.example/mcp"},
        }
    }
    (root / "services/mcp/open.yaml").write_text(json.dumps(document))
    return root


def export(project: Path, *args: str, cwd: Path | None = None) -> CliResult:
    return run_atrium(
        "--project", str(project), "plugins", "mcp", "export-registry", *args, cwd=cwd
    )


def test_the_export_describes_the_public_endpoint_in_the_registry_format(project: Path) -> None:
    result = export(project, "soul", "--output", "-")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["$schema"] == SCHEMA
    assert NAME.fullmatch(document["name"])
    assert document["name"].endswith("/soul")
    assert 1 <= len(document["description"]) <= 100
    assert document["version"]
    assert "packages" not in document  # a local copy would bypass the gateway
    [remote] = document["remotes"]
    assert remote["type"] == "streamable-http"
    assert remote["url"] == load_settings(project, environ={}).endpoint_for("soul")


def test_a_server_requiring_oauth_asks_for_a_secret_authorization_header(project: Path) -> None:
    secured = json.loads(export(project, "soul", "-o", "-").stdout)["remotes"][0]
    open_ = json.loads(export(project, "open", "-o", "-").stdout)["remotes"][0]

    [header] = secured["headers"]
    assert (header["name"], header["isRequired"], header["isSecret"]) == (
        "Authorization",
        True,
        True,
    )
    assert "headers" not in open_


def test_the_file_is_written_with_the_name_and_version_given(project: Path, tmp_path: Path) -> None:
    result = export(
        project, "soul", "--name", "io.github.someone/soul", "--version", "1.4.0", cwd=tmp_path
    )

    assert result.exit_code == 0, result.stderr
    written = json.loads((tmp_path / "server.json").read_text())
    assert (written["name"], written["version"]) == ("io.github.someone/soul", "1.4.0")


def test_an_existing_file_is_replaced_only_with_force(project: Path, tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text("mine\n")

    refused = export(project, "soul", cwd=tmp_path)
    kept = (tmp_path / "server.json").read_text()
    forced = export(project, "soul", "--force", cwd=tmp_path)

    assert (refused.exit_code, kept) == (2, "mine\n")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((tmp_path / "server.json").read_text())["$schema"] == SCHEMA


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--name", "no-slash"),
        ("--name", "two/slash/es"),
        ("--version", "^1.2.3"),
        ("--version", ">=1.0"),
        ("--version", "1.x"),
        ("--version", "1.*"),
    ],
)
def test_a_name_or_version_the_registry_rejects_exits_2_naming_the_option(
    project: Path, tmp_path: Path, option: str, value: str
) -> None:
    result = export(project, "soul", option, value, cwd=tmp_path)

    assert result.exit_code == 2
    assert option in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_server_exits_1(project: Path, tmp_path: Path) -> None:
    assert export(project, "nowhere", cwd=tmp_path).exit_code == 1
