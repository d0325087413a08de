"""Resolving ``$env``/``$file`` references at server start."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from atrium.errors import ConfigError
from atrium.registry.loader import load_registry
from atrium.registry.secrets import resolve_env, resolve_headers
from atrium.settings import load_settings

SERVERS = dedent(
    """\
    mcp_servers:
      local:
        command: [my-server]
        port: 5001
        env:
          PLAIN: hello
          TOKEN: {$env: LOCAL_TOKEN}
          KEY: {$file: secrets/key.txt}
      upstream:
        transport: remote
        url: https://mcp.example.com/mcp
        headers:
          Authorization: {$env: UPSTREAM_AUTH}
    """
)


def project(tmp_path: Path) -> Path:
    (tmp_path / "services/mcp").mkdir(parents=True)
    (tmp_path / "services/mcp/servers.yaml").write_text(SERVERS)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/key.txt").write_text("s3cret\n")
    return tmp_path


def test_references_resolve_to_the_variable_and_the_file_contents(tmp_path: Path) -> None:
    settings = load_settings(
        project(tmp_path), environ={"LOCAL_TOKEN": "t0k", "UPSTREAM_AUTH": "Bearer u"}
    )
    registry = load_registry(settings)

    assert resolve_env(registry.get("local"), settings) == {
        "PLAIN": "hello",
        "TOKEN": "t0k",
        "KEY": "s3cret",
    }
    assert resolve_headers(registry.get("upstream"), settings) == {"Authorization": "Bearer u"}


def test_an_unset_variable_is_a_warning_at_load_and_an_error_at_start(tmp_path: Path) -> None:
    settings = load_settings(project(tmp_path), environ={"UPSTREAM_AUTH": "x"})
    registry = load_registry(settings)
    assert [w.key_path for w in registry.warnings] == ["mcp_servers.local.env.TOKEN"]

    with pytest.raises(ConfigError) as raised:
        resolve_env(registry.get("local"), settings)

    (problem,) = raised.value.problems
    assert (problem.source, problem.server, problem.key_path) == (
        "services/mcp/servers.yaml",
        "local",
        "mcp_servers.local.env.TOKEN",
    )
    assert "LOCAL_TOKEN" in problem.message


def test_a_missing_file_names_the_key(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "secrets/key.txt").unlink()
    settings = load_settings(root, environ={"LOCAL_TOKEN": "t"})

    with pytest.raises(ConfigError) as raised:
        resolve_env(load_registry(settings).get("local"), settings)

    assert [p.key_path for p in raised.value.problems] == ["mcp_servers.local.env.KEY"]
