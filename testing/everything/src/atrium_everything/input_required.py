"""Multi-round-trip requests of the 2026-07-28 revision (SEP-2322, ``basic/utilities/mrtr``).

A stateless server cannot ask its client mid-call, so it answers ``tools/call`` (or
``prompts/get``, ``resources/read``) with an ``InputRequiredResult``: ``resultType:
"input_required"``, the ``inputRequests`` it needs answered (keyed by names the server
chooses), and an opaque ``requestState``. The client retries the same request with
``inputResponses`` under the same keys and the ``requestState`` echoed.

The client is not trusted with ``requestState``: the SDK's ``RequestStateBoundary`` seals each
value it sends and refuses (-32602) an echo that fails verification, so ``ctx.request_state``
only ever holds what this server wrote. Keys, messages and shapes follow the conformance
scenarios ``input-required-result-*``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    MissingRequiredClientCapabilityErrorData,
    SamplingCapability,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)

ResponseT = TypeVar("ResponseT", ElicitResult, CreateMessageResult, ListRootsResult)

CONFIRMED_STATE = "awaiting-confirmation"

_ASKS = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def add_input_required_tools(server: MCPServer[Any]) -> None:
    """Register the tools and the prompt of the ``input-required-result-*`` scenarios."""

    @server.tool(description="Asks the user's name, then greets them.", annotations=_ASKS)
    def test_input_required_result_elicitation(ctx: Context[Any, Any]) -> str | InputRequiredResult:
        # Wrong or missing answers get the question again, not an error (SEP-2322: a server
        # SHOULD re-request what it is missing).
        answer = response(ctx, "user_name", ElicitResult)
        if answer is None:
            return InputRequiredResult(input_requests={"user_name": ask_name()})
        return f"Hello, {_field(answer, 'name')}!"

    @server.tool(description="Asks the client's model a question.", annotations=_ASKS)
    def test_input_required_result_sampling(ctx: Context[Any, Any]) -> str | InputRequiredResult:
        answer = response(ctx, "capital_question", CreateMessageResult)
        if answer is None:
            question = ask_model("What is the capital of France?")
            return InputRequiredResult(input_requests={"capital_question": question})
        return f"Model said: {_text(answer)}"

    @server.tool(description="Asks the client for its roots.", annotations=_ASKS)
    def test_input_required_result_list_roots(ctx: Context[Any, Any]) -> str | InputRequiredResult:
        answer = response(ctx, "client_roots", ListRootsResult)
        if answer is None:
            return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})
        uris = ", ".join(str(root.uri) for root in answer.roots) or "none"
        return f"Client roots ({len(answer.roots)}): {uris}"

    add_request_state_tools(server)
    add_multiple_inputs_tools(server)
    add_multi_round_tool(server)
    add_input_required_prompt(server)


def add_request_state_tools(server: MCPServer[Any]) -> None:
    """State the server writes into ``requestState`` and reads back, or refuses altered."""

    @server.tool(description="Asks for a confirmation and keeps state.", annotations=_ASKS)
    def test_input_required_result_request_state(
        ctx: Context[Any, Any],
    ) -> str | InputRequiredResult:
        if ctx.request_state == CONFIRMED_STATE and response(ctx, "confirm", ElicitResult):
            return f"state-ok: the server wrote {CONFIRMED_STATE!r} and read it back"
        return InputRequiredResult(
            input_requests={"confirm": ask_confirmation()}, request_state=CONFIRMED_STATE
        )

    @server.tool(description="Asks for a confirmation; refuses altered state.", annotations=_ASKS)
    def test_input_required_result_tampered_state(
        ctx: Context[Any, Any],
    ) -> str | InputRequiredResult:
        # A tampered echo never reaches this function: the SDK's boundary rejects it first.
        if ctx.request_state is not None:
            return f"state-ok: {ctx.request_state}"
        return InputRequiredResult(
            input_requests={"confirm": ask_confirmation()}, request_state="round-1"
        )


def add_multiple_inputs_tools(server: MCPServer[Any]) -> None:
    """A request asking several things at once, and one asking only what the client can do."""

    @server.tool(description="Asks for a name, a greeting and the roots.", annotations=_ASKS)
    def test_input_required_result_multiple_inputs(
        ctx: Context[Any, Any],
    ) -> str | InputRequiredResult:
        name = response(ctx, "user_name", ElicitResult)
        greeting = response(ctx, "greeting", CreateMessageResult)
        roots = response(ctx, "client_roots", ListRootsResult)
        if name and greeting and roots:
            return f"{_text(greeting)} {_field(name, 'name')} ({len(roots.roots)} roots)"
        requests: dict[str, InputRequest] = {
            "user_name": ask_name(),
            "greeting": ask_model("Generate a greeting", max_tokens=50),
            "client_roots": ListRootsRequest(),
        }
        return InputRequiredResult(input_requests=requests, request_state="multiple-inputs")

    @server.tool(
        description="Asks only through the capabilities the client declared.", annotations=_ASKS
    )
    def test_input_required_result_capabilities(ctx: Context[Any, Any]) -> InputRequiredResult:
        # SEP-2322: a server MUST NOT ask for input through a capability the client did not
        # declare in _meta["io.modelcontextprotocol/clientCapabilities"].
        capabilities = ctx.client_capabilities or ClientCapabilities()
        requests: dict[str, InputRequest] = {}
        if capabilities.sampling is not None:
            requests["sample"] = ask_model("Say hello", max_tokens=50)
        if capabilities.elicitation is not None:
            requests["ask"] = ask_name()
        if not requests:
            needed = ClientCapabilities(sampling=SamplingCapability())
            data = MissingRequiredClientCapabilityErrorData(required_capabilities=needed)
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This tool needs the client's sampling or elicitation capability",
                data=data.model_dump(by_alias=True, mode="json", exclude_none=True),
            )
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")


def add_multi_round_tool(server: MCPServer[Any]) -> None:
    """Three rounds, each answer carried forward in ``requestState`` (multi-round)."""

    @server.tool(description="Asks a name, then a colour, then answers.", annotations=_ASKS)
    def test_input_required_result_multi_round(
        ctx: Context[Any, Any],
    ) -> str | InputRequiredResult:
        # The state is this server's own JSON (sealed by the SDK), so it can be trusted.
        state: dict[str, Any] = json.loads(ctx.request_state or '{"round": 1}')
        if state["round"] == 1 and (name := response(ctx, "step1", ElicitResult)):
            state = {"round": 2, "name": _field(name, "name")}
        elif state["round"] == 2 and (colour := response(ctx, "step2", ElicitResult)):
            return f"{state['name']} likes {_field(colour, 'color')}."
        # This round's question; again, with the same state, when its answer is missing.
        if state["round"] == 2:
            key, question = "step2", ask_text("Step 2: What is your favorite color?", "color")
        else:
            key, question = "step1", ask_name("Step 1: What is your name?")
        return InputRequiredResult(input_requests={key: question}, request_state=json.dumps(state))


def add_input_required_prompt(server: MCPServer[Any]) -> None:
    """``prompts/get`` may ask too (input-required-result-non-tool-request)."""

    @server.prompt(description="Asks the user for context, then builds the prompt with it.")
    def test_input_required_result_prompt(
        ctx: Context[Any, Any],
    ) -> list[Message] | InputRequiredResult:
        answer = response(ctx, "user_context", ElicitResult)
        if answer is None:
            question = ask_text("What context should the prompt use?", "context")
            return InputRequiredResult(input_requests={"user_context": question})
        return [UserMessage(f"Use the following context: {_field(answer, 'context')}")]


def response(ctx: Context[Any, Any], key: str, kind: type[ResponseT]) -> ResponseT | None:
    """The client's answer under ``key`` if it is of the ``kind`` asked, else ``None``."""
    answer = (ctx.input_responses or {}).get(key)
    return answer if isinstance(answer, kind) else None


def ask_text(message: str, field: str) -> ElicitRequest:
    """An elicitation of one required string ``field``."""
    schema = {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def ask_name(message: str = "What is your name?") -> ElicitRequest:
    return ask_text(message, "name")


def ask_confirmation() -> ElicitRequest:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    params = ElicitRequestFormParams(message="Please confirm", requested_schema=schema)
    return ElicitRequest(params=params)


def ask_model(text: str, *, max_tokens: int = 100) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=text))
    params = CreateMessageRequestParams(messages=[message], max_tokens=max_tokens)
    return CreateMessageRequest(params=params)


def _field(answer: ElicitResult, name: str) -> str:
    if answer.action != "accept" or not answer.content:
        return f"(no {name}: {answer.action})"
    return str(answer.content.get(name, f"(no {name})"))


def _text(answer: CreateMessageResult) -> str:
    content = answer.content
    return content.text if isinstance(content, TextContent) else f"({content.type} content)"
