"""The ``everything`` server: every MCP server feature, for conformance runs and tests.

It is the server the MCP conformance suite (``@modelcontextprotocol/conformance``, ``server``
scenarios) expects at the far end of ``--url``, with the tools, resources and prompts the
scenarios name, built on Atrium's toolkit and so served exactly as every hosted server is:
Streamable HTTP at ``/mcp`` in both protocol eras, ``/health`` for the supervisor. Hosted
behind the gateway, it shows what the gateway preserves of the protocol.

What each feature follows is in the docstring of its module: ``content`` (tool results,
progress, logging), ``definitions`` (tool definitions that must arrive intact),
``interaction`` (requests to the client mid-call, and a stream closed mid-call, the
``initialize`` era), ``input_required`` (``InputRequiredResult``, 2026-07-28), ``tasks`` (the
tasks extension, 2026-07-28), ``resources``, ``prompts``.
This module adds what lives at the protocol level rather than in a tool: cache hints
(SEP-2549), ``logging/setLevel`` and ``resources/subscribe`` for the ``initialize`` era, and
the tools that change the lists so that ``subscriptions/listen`` streams have something to
announce (SEP-2575).
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.caching import CACHEABLE_METHODS, CacheHint
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.types import (
    EmptyResult,
    SetLevelRequestParams,
    SubscribeRequestParams,
    ToolAnnotations,
    UnsubscribeRequestParams,
)

from atrium.__about__ import __version__
from atrium.servers.tasks import Tasks
from atrium.servers.toolkit import AtriumServer
from atrium_everything.content import add_content_tools
from atrium_everything.definitions import add_header_tool, schema_tools
from atrium_everything.input_required import add_input_required_tools
from atrium_everything.interaction import add_interaction_tools
from atrium_everything.prompts import add_prompts
from atrium_everything.resources import Subscriptions, add_resources
from atrium_everything.tasks import add_task_tools

logger = logging.getLogger(__name__)

NAME = "everything"

INSTRUCTIONS = """\
A test server with one of every MCP feature: tools with each kind of content, progress, \
logging, sampling, elicitation and multi-round input, resources and a template, prompts and \
completions. Its tools do nothing useful; use it to check clients and gateways."""

CACHE_HINT = CacheHint(ttl_ms=60_000, scope="public")
"""Every answer here is the same for every caller, and the lists change only for the instant
a list change tool runs.

A gateway that filters ``tools/list`` per caller must make that answer ``private``."""


def create_server() -> AtriumServer[dict[str, Any]]:
    """A new everything server; it keeps no state between processes."""
    tasks = Tasks()
    server: AtriumServer[dict[str, Any]] = AtriumServer(
        NAME,
        version=__version__,
        title="Everything",
        instructions=INSTRUCTIONS,
        # SEP-2549 (2026-07-28 server/utilities/caching): cacheable results carry ttlMs and
        # cacheScope.
        cache_hints=dict.fromkeys(CACHEABLE_METHODS, CACHE_HINT),
        tools=schema_tools(),
        extensions=[tasks],
    )
    add_content_tools(server)
    add_header_tool(server)
    add_interaction_tools(server)
    add_input_required_tools(server)
    add_task_tools(server, tasks)
    add_resources(server)
    add_prompts(server)
    add_list_change_tools(server)
    add_initialize_era_handlers(server, Subscriptions())
    return server


def add_list_change_tools(server: MCPServer[Any]) -> None:
    """Tools that change the tool or prompt list, and announce it to listening clients.

    Each adds an item and takes it away again, so the lists look the same to every other
    client, and publishes the change to ``subscriptions/listen`` streams (2026-07-28).
    """
    annotations = ToolAnnotations(read_only_hint=False, idempotent_hint=True)

    @server.tool(description="Changes the tool list and announces it.", annotations=annotations)
    async def test_trigger_tool_change(ctx: Context[Any, Any]) -> str:
        server.add_tool(_passing_tool, name="test_passing_tool")
        server.remove_tool("test_passing_tool")
        await ctx.notify_tools_changed()
        return "The tool list changed."

    @server.tool(description="Changes the prompt list and announces it.", annotations=annotations)
    async def test_trigger_prompt_change(ctx: Context[Any, Any]) -> str:
        server.add_prompt(Prompt.from_function(_passing_tool, name="test_passing_prompt"))
        server.remove_prompt("test_passing_prompt")
        await ctx.notify_prompts_changed()
        return "The prompt list changed."


def _passing_tool() -> str:
    """Here for a moment only: added and removed by the list change tools."""
    return "passing"


def add_initialize_era_handlers(server: MCPServer[Any], subscriptions: Subscriptions) -> None:
    """``logging/setLevel`` and ``resources/(un)subscribe``, which 2026-07-28 removed.

    MCPServer has no decorator for these methods, so they go on its low-level server; the
    SDK serves them only to ``initialize``-era sessions, and declares the ``logging``
    capability and ``resources.subscribe`` because they are there.
    """
    lowlevel = _lowlevel(server)
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)
    lowlevel.add_request_handler(
        "resources/subscribe", SubscribeRequestParams, subscriptions.subscribe
    )
    lowlevel.add_request_handler(
        "resources/unsubscribe", UnsubscribeRequestParams, subscriptions.unsubscribe
    )


async def _set_level(_ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
    # Accepted and noted; this test server sends its few log messages at info whatever the
    # level (server/utilities/logging lets a server choose what it sends).
    logger.info("client asked for log messages at %s and above", params.level)
    return EmptyResult()


def _lowlevel(server: MCPServer[Any]) -> Server[Any]:
    # The SDK keeps it private and offers no public way to add a spec method the 2026
    # revision removed (mcp.server.extension.MethodBinding says to use this server).
    lowlevel: Server[Any] = server._lowlevel_server
    return lowlevel
