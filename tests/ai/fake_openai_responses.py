"""The OpenAI Responses API on loopback: ``POST /v1/responses``, JSON or streamed.

Streaming sends ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``; for a message ``response.content_part.added``,
``response.output_text.delta``…, ``response.output_text.done``, ``response.content_part.done``;
for a function call ``response.function_call_arguments.delta``…, ``….done``; then
``response.output_item.done``; and ``response.completed`` with the whole response and its usage.
Every event carries ``sequence_number``. The SDK's ``base_url`` is ``<url>/v1``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from tests.ai.fake_openai_chat import call_id, openai_error
from tests.ai.fake_script import Call, ProviderFake, Reply, pieces, random_id, sse, text_pieces

_HEX = "0123456789abcdef"


class OpenAIResponsesFake(ProviderFake):
    sdk_path = "/v1"

    def routes(self) -> list[Route]:
        return [Route("/v1/responses", self.handle, methods=["POST"])]

    def wants_stream(self, request: Request, body: Any) -> bool:
        return bool(body.get("stream"))

    def error(self, status: int, message: str) -> dict[str, Any]:
        return openai_error(status, message)

    def message(self, reply: Reply, body: Any) -> dict[str, Any]:
        return _response(body, _items(reply), reply, "completed")

    def stream(self, reply: Reply, body: Any) -> Iterator[bytes]:
        numbers = itertools.count()
        items = _items(reply)
        response = _response(body, [], None, "in_progress")

        def event(kind: str, **fields: Any) -> bytes:
            return sse({"type": kind, "sequence_number": next(numbers), **fields}, kind)

        yield event("response.created", response=response)
        yield event("response.in_progress", response=response)
        for index, item in enumerate(items):
            yield event("response.output_item.added", output_index=index, item=_opened(item))
            if item["type"] == "message":
                yield from _text_events(event, index, item, reply)
            else:
                yield from _argument_events(event, index, item, reply.deltas)
            yield event("response.output_item.done", output_index=index, item=item)
        final = {**response, "status": "completed", "output": items, "usage": _usage(reply)}
        yield event("response.completed", response=final)


def _items(reply: Reply) -> list[dict[str, Any]]:
    items = [_message_item(reply.text)] if reply.text else []
    return items + [_function_item(call) for call in reply.calls]


def _message_item(text: str) -> dict[str, Any]:
    return {
        "id": random_id("msg_", 48, _HEX),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _function_item(call: Call) -> dict[str, Any]:
    return {
        "id": random_id("fc_", 48, _HEX),
        "type": "function_call",
        "status": "completed",
        "call_id": call_id(),
        "name": call.name,
        "arguments": call.arguments,
    }


def _opened(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` as ``response.output_item.added`` shows it, before any of its content."""
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    return {**item, "status": "in_progress", "arguments": ""}


def _text_events(event: Any, index: int, item: dict[str, Any], reply: Reply) -> Iterator[bytes]:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    yield event("response.content_part.added", **where, part={**part, "text": ""})
    for piece in text_pieces(reply):
        if isinstance(piece, bytes):  # STALL
            yield piece
            continue
        yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
    yield event("response.output_text.done", **where, text=part["text"], logprobs=[])
    yield event("response.content_part.done", **where, part=part)


def _argument_events(event: Any, index: int, item: dict[str, Any], count: int) -> Iterator[bytes]:
    where = {"item_id": item["id"], "output_index": index}
    for piece in pieces(item["arguments"], count):
        yield event("response.function_call_arguments.delta", **where, delta=piece)
    yield event(
        "response.function_call_arguments.done",
        **where,
        name=item["name"],
        arguments=item["arguments"],
    )


def _usage(reply: Reply) -> dict[str, Any]:
    used = reply.usage
    return {
        "input_tokens": used.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": used.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": used.input_tokens + used.output_tokens,
    }


def _response(
    body: Any, output: list[dict[str, Any]], reply: Reply | None, status: str
) -> dict[str, Any]:
    return {
        "id": random_id("resp_", 48, _HEX),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", "gpt-4.1"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": _usage(reply) if reply is not None else None,
        "user": None,
        "metadata": {},
    }
