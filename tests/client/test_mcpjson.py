"""``.mcp.json`` files as Claude Code writes them: servers, ``${VAR}`` expansion, and errors that
name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from atrium.client.mcpjson import (
    HttpTarget,
    StdioTarget,
    load_mcp_json,
    load_plugin,
    parse_mcp_json,
)
from atrium.errors import ConfigError

SEED_PLUGIN = {  # seed 004's plugin/.mcp.json, verbatim
    "mcpServers": {
        "asana": {
            "command": "npx",
            "args": ["-y", "@asana/mcp-server"],
            "env": {"ASANA_ACCESS_TOKEN": "${ASANA_TOKEN}"},
        },
        "database": {
            "command": "node",
            "args": ["${CLAUDE_PLUGIN_ROOT}/servers/db-server.js"],
            "env": {"DB_URL": "${DATABASE_URL}"},
        },
    }
}


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def problems(document: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_mcp_json(document, environ or {}, source="x/.mcp.json")
    return [str(problem) for problem in caught.value.problems]


def test_the_seed_plugin_file_loads_with_its_root_and_variables(tmp_path: Path) -> None:
    folder = tmp_path / "asana-plugin"
    folder.mkdir()
    write(folder / ".mcp.json", SEED_PLUGIN)
    environ = {"ASANA_TOKEN": "tok", "DATABASE_URL": "postgres://db"}

    asana, database = load_plugin(folder, environ)

    assert (asana.name, asana.plugin) == ("asana", "asana-plugin")
    assert asana.target == StdioTarget(
        "npx", ("-y", "@asana/mcp-server"), {"ASANA_ACCESS_TOKEN": "tok"}
    )
    assert isinstance(database.target, StdioTarget)
    assert database.target.args == (f"{folder.resolve()}/servers/db-server.js",)
    assert database.target.env == {"DB_URL": "postgres://db"}


def test_atrium_plugin_root_names_the_folder_too(tmp_path: Path) -> None:
    write(tmp_path / ".mcp.json", {"mcpServers": {"s": {"command": "${ATRIUM_PLUGIN_ROOT}/run"}}})

    (spec,) = load_plugin(tmp_path, {"ATRIUM_PLUGIN_ROOT": "/elsewhere"})

    assert isinstance(spec.target, StdioTarget)
    assert spec.target.command == f"{tmp_path.resolve()}/run"


def test_http_and_sse_entries_with_headers_and_defaults() -> None:
    document = {
        "mcpServers": {
            "api": {
                "type": "http",
                "url": "${API_URL:-https://api.example/mcp}",
                "headers": {"Authorization": "Bearer ${API_TOKEN}"},
            },
            "old": {"type": "sse", "url": "http://127.0.0.1:3001/sse"},
            "new": {"type": "streamable-http", "url": "http://127.0.0.1:3002/mcp"},
        }
    }

    api, old, new = parse_mcp_json(document, {"API_TOKEN": "t0k"})

    assert api.target == HttpTarget(
        "https://api.example/mcp", "http", {"Authorization": "Bearer t0k"}
    )
    assert old.target == HttpTarget("http://127.0.0.1:3001/sse", "sse")
    assert isinstance(new.target, HttpTarget)
    assert new.target.transport == "http"


def test_an_empty_variable_takes_the_default_as_a_shell_does() -> None:
    document = {"mcpServers": {"s": {"command": "run", "args": ["${MODE:-fast}", "${SET:-no}"]}}}

    (spec,) = parse_mcp_json(document, {"MODE": "", "SET": "yes"})

    assert isinstance(spec.target, StdioTarget)
    assert spec.target.args == ("fast", "yes")


def test_an_unset_variable_is_an_error_naming_file_server_and_key() -> None:
    document = {"mcpServers": {"asana": SEED_PLUGIN["mcpServers"]["asana"]}}

    (message,) = problems(document)

    assert message.startswith(
        "x/.mcp.json: server 'asana': mcpServers.asana.env.ASANA_ACCESS_TOKEN"
    )
    assert "${ASANA_TOKEN} is not set" in message


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    document = {
        "mcpServers": {
            "a": {"command": "x", "args": ["${ONE}"], "env": {"K": "${TWO}"}},
            "b": {"type": "http", "url": "https://h/${THREE}"},
            "c": {"command": "y", "timeout": 5},
        }
    }

    found = problems(document)

    assert len(found) == 4
    assert any("mcpServers.a.args[0]" in p and "${ONE}" in p for p in found)
    assert any("mcpServers.a.env.K" in p and "${TWO}" in p for p in found)
    assert any("mcpServers.b.url" in p and "${THREE}" in p for p in found)
    assert any("mcpServers.c.timeout" in p and "unknown key" in p for p in found)


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ({"command": "x", "args": "not-a-list"}, "mcpServers.s.args", "valid list"),
        ({"command": "x", "args": [1]}, "mcpServers.s.args.0", "valid string"),
        ({"command": 7}, "mcpServers.s.command", "valid string"),
        ({"args": ["a"]}, "mcpServers.s.command", "Field required"),
        ({"command": ""}, "mcpServers.s.command", "at least 1 character"),
        ({"url": "https://h/mcp"}, "mcpServers.s", "'type'"),
        ({"type": "http", "url": "ftp://h"}, "mcpServers.s.url", "http:// or https://"),
        ({"type": "websocket", "url": "https://h"}, "mcpServers.s.type", "'stdio'"),
        ({"command": "x", "env": {"K": 1}}, "mcpServers.s.env.K", "valid string"),
    ],
)
def test_wrong_entries_name_the_key(entry: dict[str, Any], key: str, words: str) -> None:
    (message,) = problems({"mcpServers": {"s": entry}})

    assert f"server 's': {key}: " in message
    assert words in message


def test_a_file_without_mcp_servers_or_with_a_bad_name_is_refused() -> None:
    assert "mcpServers: Field required" in problems({"servers": {}})[0]
    assert "1-64 letters" in problems({"mcpServers": {"a b": {"command": "x"}}})[0]


def test_a_file_that_is_not_json_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / ".mcp.json"
    path.write_text('{\n  "mcpServers": {,}\n}')

    with pytest.raises(ConfigError) as caught:
        load_mcp_json(path, {})

    assert str(caught.value.problems[0]).startswith(f"{path}:2:")
    assert "not valid JSON" in str(caught.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_mcp_json(tmp_path / "nope.json", {})


def test_a_relative_cwd_is_the_files_folder(tmp_path: Path) -> None:
    path = write(tmp_path / ".mcp.json", {"mcpServers": {"s": {"command": "x", "cwd": "sub"}}})

    (spec,) = load_mcp_json(path, {})

    assert isinstance(spec.target, StdioTarget)
    assert spec.target.cwd == tmp_path / "sub"
