"""The built-in ``atrium`` server over HTTP, with the official SDK client, on a real project."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp.client.client import Client

from atrium.servers.atrium.server import create_server
from atrium.settings import Settings
from atrium.store import ArtifactRecord, Store
from tests.servers.helpers import serving

BUILTINS = ["atrium", "content-manager", "marketplace", "soul"]
SHIPPED_PLAYBOOKS = ["add-a-stdio-server", "troubleshoot-a-server"]


async def call(settings: Settings, tool: str, arguments: dict[str, Any], mode: str = "auto") -> Any:
    async with serving(create_server(settings)) as url, Client(f"{url}/mcp", mode=mode) as client:
        return await client.call_tool(tool, arguments)


async def stored_runs(settings: Settings) -> list[ArtifactRecord]:
    async with await Store.open(settings) as store:
        return await store.artifacts.list_recent(limit=10)


async def test_tools_are_listed_with_annotations_and_output_schemas(project: Settings) -> None:
    async with serving(create_server(project)) as url, Client(f"{url}/mcp") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert sorted(tools) == [
        "atrium",
        "list_agents",
        "list_playbooks",
        "run_agent",
        "show_playbook",
    ]
    hints = {
        name: tool.annotations.read_only_hint for name, tool in tools.items() if tool.annotations
    }
    assert hints == {
        "atrium": False,
        "list_agents": True,
        "list_playbooks": True,
        "run_agent": False,
        "show_playbook": True,
    }
    assert all(tool.output_schema for tool in tools.values())
    assert set(tools["atrium"].output_schema or {}) >= {"properties", "required"}


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_atrium_runs_an_allowed_command_and_stores_the_run(
    project: Settings, mode: str
) -> None:
    result = await call(project, "atrium", {"command": "plugins mcp list --json"}, mode)

    assert not result.is_error
    run = result.structured_content
    assert run["exit_code"] == 0
    assert [server["name"] for server in json.loads(run["stdout"])] == BUILTINS
    [stored] = await stored_runs(project)
    assert (stored.id, stored.server, stored.tool, stored.kind) == (
        run["artifact_id"],
        "atrium",
        "atrium",
        "cli-run",
    )
    assert stored.content["stdout"] == run["stdout"]


async def test_a_failing_command_is_a_tool_error_that_is_still_stored(project: Settings) -> None:
    result = await call(project, "atrium", {"command": "plugins mcp show no-such-server"})

    assert result.is_error
    assert result.structured_content["exit_code"] == 1
    assert "no-such-server" in result.content[0].text
    [stored] = await stored_runs(project)
    assert stored.id == result.structured_content["artifact_id"]
    assert stored.content["exit_code"] == 1


@pytest.mark.parametrize(
    "command",
    [
        "cloud sync local mcp --direction to-db -y",
        "plugins mcp list --project /tmp",
        "-p /tmp plugins mcp list",
        "plugins mcp list; cloud sync local mcp --direction to-db -y",
    ],
)
async def test_a_refused_command_is_a_tool_error_and_stores_nothing(
    project: Settings, command: str
) -> None:
    result = await call(project, "atrium", {"command": command})

    assert result.is_error
    assert result.structured_content is None
    assert await stored_runs(project) == []


async def test_a_disallowed_command_is_told_the_allowed_prefixes(project: Settings) -> None:
    result = await call(project, "atrium", {"command": "cloud sync local mcp --direction to-db -y"})

    assert "plugins mcp list" in result.content[0].text


async def test_list_playbooks_lists_the_shipped_playbooks_by_name(project: Settings) -> None:
    result = await call(project, "list_playbooks", {})

    listing = result.structured_content
    assert [playbook["name"] for playbook in listing["playbooks"]] == SHIPPED_PLAYBOOKS
    assert all(p["title"] and p["description"] and p["tags"] for p in listing["playbooks"])
    assert listing["problems"] == []


async def test_show_playbook_returns_the_body_and_the_front_matter(project: Settings) -> None:
    result = await call(project, "show_playbook", {"name": "troubleshoot-a-server"})

    document = result.structured_content
    assert document["title"] == "Troubleshoot a server"
    assert document["body"].startswith("# Troubleshoot a server")
    assert result.content[0].text == document["body"]


async def test_show_playbook_of_an_unknown_name_lists_the_known_ones(project: Settings) -> None:
    result = await call(project, "show_playbook", {"name": "no-such-playbook"})

    assert result.is_error
    assert all(name in result.content[0].text for name in SHIPPED_PLAYBOOKS)


async def test_show_playbook_refuses_a_name_that_could_leave_the_folder(project: Settings) -> None:
    (project.project_dir / "services" / "secret.md").write_text("not a playbook")

    result = await call(project, "show_playbook", {"name": "../secret"})

    assert result.is_error
    assert "not a playbook" not in result.content[0].text


async def test_each_playbook_is_a_markdown_resource(project: Settings) -> None:
    async with serving(create_server(project)) as url, Client(f"{url}/mcp") as client:
        templates = (await client.list_resource_templates()).resource_templates
        read = await client.read_resource("playbook://add-a-stdio-server")

    assert [t.uri_template for t in templates] == ["playbook://{name}", "artifact://atrium/{id}"]
    [content] = read.contents
    assert content.mime_type == "text/markdown"
    assert getattr(content, "text", "").startswith("# Add a stdio server")
