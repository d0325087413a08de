"""Client configuration: each client's entry, and merging it into a file without losing anything."""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path

import pytest

from atrium.client.configs import (
    ChatGptSetup,
    ConfigFileError,
    Connection,
    chatgpt_steps,
    document,
    inspector_command,
    merge,
    write_atomically,
)

URL = "https://mcp.example.com/api/v1/mcp/github/mcp"
PLAIN = Connection("github", URL)
WITH_TOKEN = Connection("github", URL, {"Authorization": "Bearer abc.def"})


def test_claude_code_gets_an_http_entry_under_mcp_servers() -> None:
    assert document("claude-code", PLAIN) == {
        "mcpServers": {"github": {"type": "http", "url": URL}}
    }


def test_vscode_gets_an_http_entry_under_servers() -> None:
    assert document("vscode", WITH_TOKEN) == {
        "servers": {
            "github": {"type": "http", "url": URL, "headers": {"Authorization": "Bearer abc.def"}}
        }
    }


def test_cursor_gets_a_url_and_the_headers_given() -> None:
    assert document("cursor", WITH_TOKEN) == {
        "mcpServers": {"github": {"url": URL, "headers": {"Authorization": "Bearer abc.def"}}}
    }


def test_merging_keeps_every_other_entry_and_key_in_order() -> None:
    existing = json.dumps(
        {"inputs": [{"id": "key"}], "servers": {"local": {"command": "uvx", "args": ["x"]}}}
    )

    merged = merge("vscode", PLAIN, existing, source="mcp.json", force=False)

    data = json.loads(merged.text)
    assert merged.outcome == "added"
    assert list(data) == ["inputs", "servers"]
    assert data["inputs"] == [{"id": "key"}]
    assert list(data["servers"]) == ["local", "github"]
    assert data["servers"]["local"] == {"command": "uvx", "args": ["x"]}


def test_a_missing_or_empty_file_takes_the_entry_alone() -> None:
    for existing in (None, "", "  \n"):
        merged = merge("claude-code", PLAIN, existing, source=".mcp.json", force=False)
        assert json.loads(merged.text) == document("claude-code", PLAIN)


def test_merging_the_same_entry_again_changes_nothing() -> None:
    first = merge("cursor", PLAIN, None, source="mcp.json", force=False)

    again = merge("cursor", PLAIN, first.text, source="mcp.json", force=False)

    assert (again.outcome, again.text) == ("unchanged", first.text)


def test_a_different_entry_of_the_same_name_is_replaced_only_when_forced() -> None:
    existing = json.dumps({"mcpServers": {"github": {"url": "https://old.example/mcp"}}})

    with pytest.raises(ConfigFileError) as refused:
        merge("cursor", PLAIN, existing, source="mcp.json", force=False)
    forced = merge("cursor", PLAIN, existing, source="mcp.json", force=True)

    assert refused.value.exit_code == 2
    assert forced.outcome == "replaced"
    assert json.loads(forced.text)["mcpServers"]["github"] == {"url": URL}


@pytest.mark.parametrize(
    "existing",
    [
        '{"servers": {}, // a comment VS Code allows\n}',
        "{not json",
        "[1, 2]",
        '{"servers": ["a list"]}',
    ],
)
def test_a_file_that_cannot_take_the_entry_is_refused_and_named(existing: str) -> None:
    with pytest.raises(ConfigFileError) as refused:
        merge("vscode", PLAIN, existing, source=".vscode/mcp.json", force=True)

    assert refused.value.exit_code == 2
    assert str(refused.value).startswith(".vscode/mcp.json")


def test_a_new_file_holding_a_token_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    secret = tmp_path / "deep" / ".mcp.json"
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    shared.chmod(0o640)

    write_atomically(secret, "{}\n", private=True)
    write_atomically(shared, '{"a": 1}\n', private=True)

    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640  # an existing file keeps its mode
    assert shared.read_text() == '{"a": 1}\n'
    assert {p.name for p in tmp_path.iterdir()} == {"deep", "shared.json"}  # no temporaries
    assert [p.name for p in secret.parent.iterdir()] == [".mcp.json"]


def test_the_inspector_command_splits_back_into_its_arguments() -> None:
    words = shlex.split(inspector_command(WITH_TOKEN))

    assert words[:3] == ["npx", "@modelcontextprotocol/inspector", "--cli"]
    assert words[3:] == [
        URL,
        *("--transport", "http", "--method", "tools/list"),
        *("--header", "Authorization: Bearer abc.def"),
    ]


def test_chatgpt_steps_name_the_server_url_oauth_endpoints_and_openapi_document() -> None:
    setup = ChatGptSetup(
        name="github",
        description="GitHub tools",
        url=URL,
        oauth_base="https://mcp.example.com/api/v1/core/oauth",
        openapi_url="https://mcp.example.com/api/v1/mcp/github/openapi.json",
        oauth_required=True,
        scopes=("tools:read",),
    )

    text = "\n".join(chatgpt_steps(setup))
    open_text = "\n".join(chatgpt_steps(ChatGptSetup(**{**vars(setup), "oauth_required": False})))

    for expected in (URL, setup.openapi_url, f"{setup.oauth_base}/authorize", "tools:read"):
        assert expected in text
    assert f"{setup.oauth_base}/token" in text
    assert setup.openapi_url in open_text
    assert f"{setup.oauth_base}/authorize" not in open_text
