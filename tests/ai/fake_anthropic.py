"""The Anthropic Messages API on loopback: ``POST /v1/messages``, JSON or streamed.

Streaming follows Anthropic's "Streaming Messages": ``message_start`` (usage with the input
tokens), per content block ``content_block_start`` / ``content_block_delta`` (``text_delta``, or
``input_json_delta`` for ``tool_use``) / ``content_block_stop``, a ``ping``, ``message_delta``
(``stop_reason``, cumulative output usage), ``message_stop``. Errors are
``{"type": "error", "error": {"type", "message"}}``. The SDK's ``base_url`` is the root.

Malformed tool arguments exist only when streaming (``partial_json`` pieces that do not join
into JSON); a non-streamed reply carries ``input`` as an object, so scripting one is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from tests.ai.fake_script import Call, ProviderFake, Reply, pieces, random_id, sse, text_pieces

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def tool_use_id() -> str:
    return random_id("toolu_01", 22)


class AnthropicFake(ProviderFake):
    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.handle, methods=["POST"])]

    def wants_stream(self, request: Request, body: Any) -> bool:
        return bool(body.get("stream"))

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def message(self, reply: Reply, body: Any) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        for call in reply.calls:
            arguments = call.parsed
            if arguments is None:
                raise ValueError("a non-streamed Anthropic reply cannot carry malformed arguments")
            content.append(_tool_use(call, arguments))
        return {
            **_envelope(reply, body),
            "content": content,
            "stop_reason": _stop_reason(reply),
            "usage": _usage(reply.usage.input_tokens, reply.usage.output_tokens),
        }

    def stream(self, reply: Reply, body: Any) -> Iterator[bytes]:
        start = {**_envelope(reply, body), "content": [], "stop_reason": None}
        start["usage"] = _usage(reply.usage.input_tokens, 1)
        yield sse({"type": "message_start", "message": start}, "message_start")
        index = 0
        if reply.text:
            yield from _block(index, {"type": "text", "text": ""}, _text_deltas(reply))
            index += 1
        for call in reply.calls:
            yield from _block(index, _tool_use(call, {}), _json_deltas(call, reply.deltas))
            index += 1
        delta = {"stop_reason": _stop_reason(reply), "stop_sequence": None}
        usage = {"output_tokens": reply.usage.output_tokens}
        yield sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")


def _envelope(reply: Reply, body: Any) -> dict[str, Any]:
    return {
        "id": random_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-sonnet-4-5"),
        "stop_sequence": None,
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.calls else "end_turn"


def _tool_use(call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_use_id(), "name": call.name, "input": arguments}


def _block(
    index: int, block: dict[str, Any], deltas: Iterator[dict[str, Any] | bytes]
) -> Iterator[bytes]:
    yield sse(
        {"type": "content_block_start", "index": index, "content_block": block},
        "content_block_start",
    )
    if index == 0:
        yield sse({"type": "ping"}, "ping")
    for delta in deltas:
        if isinstance(delta, bytes):  # STALL
            yield delta
            continue
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        yield sse(event, "content_block_delta")
    yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")


def _text_deltas(reply: Reply) -> Iterator[dict[str, Any] | bytes]:
    for piece in text_pieces(reply):
        yield piece if isinstance(piece, bytes) else {"type": "text_delta", "text": piece}


def _json_deltas(call: Call, count: int) -> Iterator[dict[str, Any]]:
    # Anthropic opens a tool_use block with an empty partial_json before the input's pieces.
    yield {"type": "input_json_delta", "partial_json": ""}
    for piece in pieces(call.arguments, count):
        yield {"type": "input_json_delta", "partial_json": piece}
