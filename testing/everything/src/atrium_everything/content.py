"""Tools that answer with each kind of content, report progress, log, or fail.

Each tool is the one a scenario of the MCP conformance suite names (``tools-call-*``), with
the content the spec page of that feature defines (2025-11-25 and 2026-07-28,
``server/tools#tool-result``): text, image, audio, an embedded resource, several kinds
mixed, a tool execution error (``isError``), progress (``basic/utilities/progress``) and log
messages (``server/utilities/logging``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)

from atrium_everything.media import (
    PNG_MIME_TYPE,
    WAV_MIME_TYPE,
    base64_text,
    red_pixel_png,
    silent_wav,
)

SIMPLE_TEXT = "This is a simple text response for testing."
ERROR_TEXT = "This tool intentionally returns an error for testing"
EMBEDDED_URI = "test://embedded-resource"
EMBEDDED_TEXT = "This is an embedded resource content."
MIXED_URI = "test://mixed-content-resource"
PROGRESS_STEPS = (0, 50, 100)
LOG_LINES = ("Tool execution started", "Tool processing data", "Tool execution completed")
# The scenarios want the notifications spread out, so that a client is seen to receive
# several of them while the call is still running.
STEP_PAUSE_S = 0.05

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def add_content_tools(server: MCPServer[Any]) -> None:
    """Register the tools of the ``tools-call-*`` scenarios on ``server``."""
    image = ImageContent(type="image", data=base64_text(red_pixel_png()), mime_type=PNG_MIME_TYPE)

    @server.tool(description="Answers with one text block.", annotations=_READ_ONLY)
    def test_simple_text() -> str:
        return SIMPLE_TEXT

    @server.tool(description="Answers with one PNG image block.", annotations=_READ_ONLY)
    def test_image_content() -> CallToolResult:
        return CallToolResult(content=[image])

    @server.tool(description="Answers with one WAV audio block.", annotations=_READ_ONLY)
    def test_audio_content() -> CallToolResult:
        audio = AudioContent(type="audio", data=base64_text(silent_wav()), mime_type=WAV_MIME_TYPE)
        return CallToolResult(content=[audio])

    @server.tool(description="Answers with one embedded text resource.", annotations=_READ_ONLY)
    def test_embedded_resource() -> CallToolResult:
        return CallToolResult(content=[_embedded(EMBEDDED_URI, "text/plain", EMBEDDED_TEXT)])

    @server.tool(description="Answers with text, an image and a resource.", annotations=_READ_ONLY)
    def test_multiple_content_types() -> CallToolResult:
        resource = _embedded(MIXED_URI, "application/json", '{"test": "data", "value": 123}')
        text = TextContent(type="text", text="Multiple content types test:")
        return CallToolResult(content=[text, image, resource])

    @server.tool(description="Always fails with a tool execution error.", annotations=_READ_ONLY)
    def test_error_handling() -> str:
        # A tool execution error is a result with isError, not a JSON-RPC error (server/tools
        # #error-handling): the model can read it and try again.
        raise ToolError(ERROR_TEXT)

    add_progress_and_logging_tools(server)


def add_progress_and_logging_tools(server: MCPServer[Any]) -> None:
    """Tools that send notifications while they run: progress, and log messages."""

    @server.tool(
        description="Reports progress 0, 50 and 100 of 100 when the call has a progressToken.",
        annotations=_READ_ONLY,
    )
    async def test_tool_with_progress(ctx: Context[Any, Any]) -> str:
        # Progress is only sent for a request that carried _meta.progressToken, and echoes it
        # (basic/utilities/progress); the SDK drops it otherwise.
        for step in PROGRESS_STEPS:
            if step:
                await asyncio.sleep(STEP_PAUSE_S)
            await ctx.report_progress(step, total=100, message=f"Completed step {step} of 100")
        return f"reported progress {', '.join(map(str, PROGRESS_STEPS))} of 100"

    @server.tool(description="Sends three info log messages while it runs.", annotations=_READ_ONLY)
    async def test_tool_with_logging(ctx: Context[Any, Any]) -> str:
        await _log_lines(ctx)
        return "Tool with logging executed successfully"

    @server.tool(
        description="Logs at info while it runs; on 2026-07-28 only if the request asked for logs.",
        annotations=_READ_ONLY,
    )
    async def test_logging_tool(ctx: Context[Any, Any]) -> str:
        # 2026-07-28 (SEP-2577): a server sends notifications/message only for a request whose
        # _meta set a log level, and only on that request's stream; the SDK's session keeps
        # to that, which is what the server-stateless scenario checks.
        await _log_lines(ctx)
        return "logged"


async def _log_lines(ctx: Context[Any, Any]) -> None:
    for index, line in enumerate(LOG_LINES):
        if index:
            await asyncio.sleep(STEP_PAUSE_S)
        # Deprecated by the SDK since 2026-07-28 (SEP-2577), and still the feature that
        # 2025-11-25 clients use.
        await ctx.log("info", line, logger_name="everything")


def _embedded(uri: str, mime_type: str, text: str) -> EmbeddedResource:
    return EmbeddedResource(
        type="resource", resource=TextResourceContents(uri=uri, mime_type=mime_type, text=text)
    )
