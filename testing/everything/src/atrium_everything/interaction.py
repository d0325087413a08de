"""Tools that ask the client something in the middle of a call (the ``initialize`` era).

Up to 2025-11-25 a server asks its client by sending it a request while a call runs:
``sampling/createMessage`` (``client/sampling``) or ``elicitation/create``
(``client/elicitation``), on the stream of the call that needs it (``related_request_id``),
which is why those answers travel as SSE. The 2026-07-28 revision replaces this with
``InputRequiredResult`` (SEP-2322, ``basic/utilities/mrtr``); ``test_streaming_elicitation``
asks through the SDK's ``Resolve``, which picks the right mechanism for the request's era.

``test_reconnection`` closes its own stream mid-call (SEP-1699, "server-sse-polling"): the
client reconnects with ``Last-Event-ID`` and gets the result from the server's event store
(``atrium.servers.event_store``).

A client that did not declare the capability a tool needs gets the JSON-RPC error
``MissingRequiredClientCapability`` (-32021, introduced with 2026-07-28 by SEP-2575), its
``data.requiredCapabilities`` naming what is missing.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ClientCapabilities,
    ElicitationCapability,
    ElicitResult,
    MissingRequiredClientCapabilityErrorData,
    SamplingCapability,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, Field

from atrium_everything.schemas import (
    CONTACT_SCHEMA,
    ENUM_VARIANTS_SCHEMA,
    PRIMITIVE_DEFAULTS_SCHEMA,
)

SAMPLING_MAX_TOKENS = 100

_ASKS = ToolAnnotations(read_only_hint=True, open_world_hint=False)


class Confirmation(BaseModel):
    """What ``test_streaming_elicitation`` asks for."""

    confirmed: bool = Field(description="Whether to go on.")


def add_interaction_tools(server: MCPServer[Any]) -> None:
    """Register the tools of the sampling, elicitation and client-capability scenarios."""

    @server.tool(description="Asks the client's model to answer `prompt`.", annotations=_ASKS)
    async def test_sampling(prompt: str, ctx: Context[Any, Any]) -> str:
        _require(ctx, ClientCapabilities(sampling=SamplingCapability()), "sampling")
        message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
        # Deprecated by the SDK since 2026-07-28 (SEP-2577), and still how a 2025-11-25
        # server samples.
        result = await ctx.request_context.session.create_message(
            [message], max_tokens=SAMPLING_MAX_TOKENS, related_request_id=ctx.request_id
        )
        answer = result.content
        text = answer.text if isinstance(answer, TextContent) else f"({answer.type} content)"
        return f"LLM response: {text}"

    @server.tool(description="Asks the user for a username and an email.", annotations=_ASKS)
    async def test_elicitation(message: str, ctx: Context[Any, Any]) -> str:
        result = await _elicit(ctx, message, CONTACT_SCHEMA)
        return f"User response: {_outcome(result)}"

    @server.tool(
        description="Asks with a form whose every primitive field has a default (SEP-1034).",
        annotations=_ASKS,
    )
    async def test_elicitation_sep1034_defaults(ctx: Context[Any, Any]) -> str:
        result = await _elicit(ctx, "Please review your details", PRIMITIVE_DEFAULTS_SCHEMA)
        return f"Elicitation completed: {_outcome(result)}"

    @server.tool(
        description="Asks with a form using each enum variant (SEP-1330).", annotations=_ASKS
    )
    async def test_elicitation_sep1330_enums(ctx: Context[Any, Any]) -> str:
        result = await _elicit(ctx, "Please choose", ENUM_VARIANTS_SCHEMA)
        return f"Elicitation completed: {_outcome(result)}"

    @server.tool(
        description="Needs the client's sampling capability; refuses a client without it.",
        annotations=_ASKS,
    )
    def test_missing_capability(ctx: Context[Any, Any]) -> str:
        _require(ctx, ClientCapabilities(sampling=SamplingCapability()), "sampling")
        return "The client declared sampling."

    @server.tool(
        description="Asks the user to confirm, in the way of the request's protocol era.",
        annotations=_ASKS,
    )
    async def test_streaming_elicitation(
        answer: Annotated[ElicitationResult[Confirmation], Resolve(_ask_confirmation)],
    ) -> str:
        # On 2026-07-28 the question leaves as an InputRequiredResult on the response stream,
        # never as a request of its own (SEP-2575); before, as elicitation/create mid-call.
        if answer.action == "accept":
            return f"confirmed={answer.data.confirmed}"
        return f"action={answer.action}"

    @server.tool(
        description="Closes its stream mid-call; reconnect to get the answer.",
        annotations=_ASKS,
    )
    async def test_reconnection(ctx: Context[Any, Any]) -> str:
        # Only the initialize era has streams to resume (the SDK's Context makes this a no-op
        # elsewhere); the answer waits in the event store for the client's GET.
        await ctx.close_sse_stream()
        return "Reconnected: this answer was sent after the stream was closed."


def _ask_confirmation() -> Elicit[Confirmation]:
    return Elicit("Go on?", Confirmation)


async def _elicit(ctx: Context[Any, Any], message: str, schema: dict[str, Any]) -> ElicitResult:
    _require(ctx, ClientCapabilities(elicitation=ElicitationCapability()), "elicitation")
    return await ctx.request_context.session.elicit_form(
        message, requested_schema=schema, related_request_id=ctx.request_id
    )


def _outcome(result: ElicitResult) -> str:
    content = result.content if result.action == "accept" else {}
    return f"action={result.action}, content={content}"


def _require(ctx: Context[Any, Any], needed: ClientCapabilities, name: str) -> None:
    """Refuse the call with -32021 unless the client declared ``needed``."""
    if ctx.request_context.session.check_client_capability(needed):
        return
    data = MissingRequiredClientCapabilityErrorData(required_capabilities=needed)
    raise MCPError(
        code=MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=f"This tool needs the client's {name} capability",
        data=data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )
