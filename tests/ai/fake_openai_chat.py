"""OpenAI Chat Completions on loopback: ``POST /v1/chat/completions``, JSON or streamed — the
API of OpenAI-compatible servers (vLLM, Ollama, LiteLLM) too.

Streaming sends ``chat.completion.chunk`` objects as ``data:`` lines: the role first, then
``delta.content`` pieces, then ``delta.tool_calls`` (the first fragment of a call with its
``index``, ``id``, ``type`` and ``function.name``, the next ones with ``index`` and argument
pieces only), a chunk with ``finish_reason``, with ``stream_options.include_usage`` a last chunk
with empty ``choices`` and the ``usage``, and ``data: [DONE]``. The SDK's ``base_url`` is
``<url>/v1``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from tests.ai.fake_script import Call, ProviderFake, Reply, pieces, random_id, sse, text_pieces

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error body, shared by Chat Completions and Responses."""
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def call_id() -> str:
    return random_id("call_", 24)


class OpenAIChatFake(ProviderFake):
    sdk_path = "/v1"

    def routes(self) -> list[Route]:
        return [Route("/v1/chat/completions", self.handle, methods=["POST"])]

    def wants_stream(self, request: Request, body: Any) -> bool:
        return bool(body.get("stream"))

    def error(self, status: int, message: str) -> dict[str, Any]:
        return openai_error(status, message)

    def message(self, reply: Reply, body: Any) -> dict[str, Any]:
        calls = [_tool_call(call, call_id()) for call in reply.calls]
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        message["refusal"] = None
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "logprobs": None}
        choice["finish_reason"] = _finish_reason(reply)
        return {**_envelope(body, "chat.completion"), "choices": [choice], "usage": _usage(reply)}

    def stream(self, reply: Reply, body: Any) -> Iterator[bytes]:
        envelope = _envelope(body, "chat.completion.chunk")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse({**envelope, "choices": [choice], "usage": None})

        yield chunk({"role": "assistant", "content": "" if reply.text else None})
        for piece in text_pieces(reply):
            yield piece if isinstance(piece, bytes) else chunk({"content": piece})
        for index, call in enumerate(reply.calls):
            for fragment in _call_fragments(index, call, reply.deltas):
                yield chunk({"tool_calls": [fragment]})
        yield chunk({}, _finish_reason(reply))
        if (body.get("stream_options") or {}).get("include_usage"):
            yield sse({**envelope, "choices": [], "usage": _usage(reply)})
        yield sse("[DONE]")


def _envelope(body: Any, kind: str) -> dict[str, Any]:
    return {
        "id": random_id("chatcmpl-", 29),
        "object": kind,
        "created": int(time.time()),
        "model": body.get("model", "gpt-4o"),
        "system_fingerprint": random_id("fp_", 10, "0123456789abcdef"),
    }


def _tool_call(call: Call, identifier: str) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": identifier, "type": "function", "function": function}


def _call_fragments(index: int, call: Call, count: int) -> Iterator[dict[str, Any]]:
    function = {"name": call.name, "arguments": ""}
    yield {"index": index, "id": call_id(), "type": "function", "function": function}
    for piece in pieces(call.arguments, count):
        yield {"index": index, "function": {"arguments": piece}}


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.calls else "stop"


def _usage(reply: Reply) -> dict[str, Any]:
    used = reply.usage
    return {
        "prompt_tokens": used.input_tokens,
        "completion_tokens": used.output_tokens,
        "total_tokens": used.input_tokens + used.output_tokens,
    }
