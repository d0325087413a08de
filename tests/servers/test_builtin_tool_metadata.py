"""Every tool of every built-in server, as a client lists it, says what a host needs to show and
gate it (issue 14): a title, a description, input and output schemas, and the three behaviour
hints set explicitly and honestly (a tool that deletes or replaces is destructive; one that adds
a row on each call is not idempotent). Each server is built by the ``create_server`` that its
console script (``atrium-mcp-<name>``, ``<package>.main``) serves, hosted in-process on loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp.client.client import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import Tool

from atrium.servers.atrium import server as atrium_server
from atrium.servers.atrium.commands import AllowList
from atrium.servers.content_manager import server as content_server
from atrium.servers.marketplace import server as marketplace_server
from atrium.servers.soul import server as soul_server
from atrium.settings import Settings
from tests.servers.helpers import serving

Factory = Callable[[Settings], MCPServer[Any]]
Hints = tuple[bool, bool, bool]  # read-only, destructive, idempotent

READ: Hints = (True, False, True)
ADDS: Hints = (False, False, False)  # writes something new each call, removes nothing
REPLACES: Hints = (False, True, False)  # may overwrite or delete what was there

# What each tool does, judged from its code, not copied from its listing.
HONEST: dict[str, dict[str, Hints]] = {
    "atrium": {
        "atrium": ADDS,  # the default allow-list is read-only; each run keeps an artifact
        "list_agents": READ,
        "list_playbooks": READ,
        "run_agent": REPLACES,  # the agent may call any tool its caller may, write tools too
        "show_playbook": READ,
    },
    "marketplace": {
        "analyze_skill": READ,
        "create_skill": ADDS,
        "get_secrets": READ,
        "get_skill": READ,
        "list_skills": READ,
        "manage_secrets": REPLACES,  # rotate replaces a value, delete removes one
        "sync_skills": (False, True, True),  # prune deletes; the same sync again changes nothing
        "update_skill": ADDS,  # a new version; the one before is kept
    },
    "content-manager": {
        "create_blog_post": REPLACES,  # overwrite replaces the post and its file
        "generate_featured_image": ADDS,
        "get_blog_post": READ,
        "list_blog_posts": READ,
        "research_blog": READ,
    },
    "soul": {
        "answer_from_content": READ,
        "extract_keywords": READ,
        "rewrite": READ,
        "suggest_titles": READ,
        "summarize": READ,
    },
}
FACTORIES: dict[str, Factory] = {
    "atrium": atrium_server.create_server,
    "marketplace": marketplace_server.create_server,
    "content-manager": content_server.create_server,
    "soul": soul_server.create_server,
}
# Resources (and templates) each server lists; each needs a name, title, description, MIME type.
RESOURCES = {
    "atrium": {"ui://atrium/artifact-viewer", "playbook://{name}", "artifact://atrium/{id}"},
    "marketplace": set(),
    "content-manager": {"artifact://content-manager/{artifact_id}"},
    "soul": set(),
}


async def listed(server: MCPServer[Any]) -> tuple[dict[str, Tool], dict[str, Any]]:
    """The tools, and the resources and resource templates by URI, as a client lists them."""
    async with serving(server) as url, Client(f"{url}/mcp") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        resources: dict[str, Any] = {
            str(r.uri): r for r in (await client.list_resources()).resources
        }
        templates = (await client.list_resource_templates()).resource_templates
        resources.update({t.uri_template: t for t in templates})
    return tools, resources


def hints(tool: Tool) -> tuple[bool | None, bool | None, bool | None]:
    annotations = tool.annotations
    assert annotations is not None, f"{tool.name}: no annotations"
    return annotations.read_only_hint, annotations.destructive_hint, annotations.idempotent_hint


@pytest.mark.parametrize("name", sorted(FACTORIES))
async def test_every_tool_has_a_title_a_description_schemas_and_explicit_honest_hints(
    project: Settings, name: str
) -> None:
    tools, _ = await listed(FACTORIES[name](project))

    assert sorted(tools) == sorted(HONEST[name])
    for tool in tools.values():
        assert tool.title, tool.name
        assert tool.description, tool.name
        assert tool.input_schema.get("type") == "object", tool.name
        assert all(p.get("description") for p in tool.input_schema.get("properties", {}).values())
        assert (tool.output_schema or {}).get("type") == "object", tool.name
        assert (tool.output_schema or {}).get("properties"), tool.name
        assert tool.annotations is not None, tool.name
        assert tool.annotations.open_world_hint is not None, tool.name
    assert {tool: hints(t) for tool, t in tools.items()} == HONEST[name]


@pytest.mark.parametrize("name", sorted(FACTORIES))
async def test_every_resource_has_a_title_a_description_and_a_mime_type(
    project: Settings, name: str
) -> None:
    _, resources = await listed(FACTORIES[name](project))

    assert set(resources) == RESOURCES[name]
    for uri, resource in resources.items():
        assert resource.name, uri
        assert resource.title, uri
        assert resource.description, uri
        assert resource.mime_type, uri


async def test_the_atrium_tool_is_destructive_once_its_allow_list_goes_past_the_read_only_one(
    project: Settings,
) -> None:
    broadened = AllowList.parse("plugins mcp list, infra services restart")
    default, _ = await listed(atrium_server.create_server(project))
    wider, _ = await listed(atrium_server.create_server(project, allowed=broadened))

    assert hints(default["atrium"]) == ADDS
    assert hints(wider["atrium"]) == REPLACES
