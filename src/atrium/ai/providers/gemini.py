"""Gemini through the official ``google-genai`` SDK (``Client.aio``), streamed.

Gemini sends each function call whole, its ``args`` a JSON object; ``arguments_json`` is that
object serialised. Calls may come without an ``id``: one is made up (``atrium_call_`` prefix)
and left out again when the call and its response go back. A call's ``thought_signature``
(required back by Gemini 3 models) travels as the call's ``signature``, base64.

The SDK's retry backs off without reading ``Retry-After``, so it is off and the stream is
opened under our own (``retry``): only opening is retried, never a stream that has begun.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from atrium.ai.providers import retry
from atrium.ai.providers.events import Done, Event, StopReason, TextDelta, ToolCall, Usage
from atrium.ai.providers.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResult,
    UserMessage,
    arguments_object,
)
from atrium.ai.providers.provider import (
    ProviderError,
    ProviderKind,
    ProviderOptions,
    unreachable,
)
from atrium.client.schemas import Format

_MADE_UP = "atrium_call_"
_STOP: dict[str, StopReason] = {"STOP": "end", "MAX_TOKENS": "max_tokens"}
Chunks = AsyncIterator[genai_types.GenerateContentResponse]


class GeminiProvider:
    kind: ProviderKind = "gemini"
    tool_format: Format = "gemini"

    def __init__(self, options: ProviderOptions) -> None:
        # Our own httpx2 client: else the SDK takes aiohttp when it is installed (it is, for
        # Atrium), whose session subclass warns, and whose errors differ from the other SDKs'.
        self._http = httpx2.AsyncClient(timeout=options.timeout_s)
        http = genai_types.HttpOptions(
            base_url=options.base_url,
            timeout=int(options.timeout_s * 1000),
            httpx_async_client=self._http,
        )
        self._client = genai.Client(vertexai=False, api_key=options.api_key, http_options=http)
        self._max_retries = options.max_retries

    async def stream(self, request: ModelRequest) -> AsyncGenerator[Event, None]:
        try:
            chunks, first = await self._open(request)
            turn = _Turn()
            try:
                while first is not None:
                    for out in turn.feed(first):
                        yield out
                    first = await anext(chunks, None)
            finally:
                await _close(chunks)
            for out in turn.finish():
                yield out
        except genai_errors.APIError as exc:
            raise ProviderError(self.kind, str(exc.message or exc), exc.code) from None
        except httpx2.RequestError as exc:
            url = str(exc.request.url)
            raise ProviderError(
                self.kind, unreachable(url, str(exc) or type(exc).__name__)
            ) from None

    async def _open(
        self, request: ModelRequest
    ) -> tuple[Chunks, genai_types.GenerateContentResponse | None]:
        """The stream and its first chunk, retried as ``retry`` says while nothing has come."""
        attempt = 0
        while True:
            try:
                chunks = await self._client.aio.models.generate_content_stream(
                    model=request.model,
                    contents=to_gemini(request.messages),
                    config=_config(request),
                )
                return chunks, await anext(chunks, None)
            except genai_errors.APIError as exc:
                wait = self._wait(attempt, exc)
                if wait is None:
                    raise
                await asyncio.sleep(wait)
                attempt += 1

    def _wait(self, attempt: int, exc: genai_errors.APIError) -> float | None:
        if attempt >= self._max_retries or not retry.should_retry(exc.code):
            return None
        return retry.delay_s(attempt, getattr(exc.response, "headers", None))

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()


async def _close(chunks: Chunks) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _config(request: ModelRequest) -> genai_types.GenerateContentConfigDict:
    config: genai_types.GenerateContentConfigDict = {
        "max_output_tokens": request.max_tokens,
        # Only our tool loop runs tools: the SDK must never call anything itself.
        "automatic_function_calling": {"disable": True},
    }
    if request.system:
        config["system_instruction"] = request.system
    if request.tools:
        declarations: Any = list(request.tools)
        config["tools"] = [{"function_declarations": declarations}]
        if request.tool_choice == "none":
            config["tool_config"] = {
                "function_calling_config": {"mode": genai_types.FunctionCallingConfigMode.NONE}
            }
    return config


@dataclass
class _Turn:
    called: bool = False
    usage: Usage | None = None
    reason: str = ""

    def feed(self, chunk: genai_types.GenerateContentResponse) -> Iterator[Event]:
        meta = chunk.usage_metadata
        if meta is not None:
            output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
            self.usage = Usage(meta.prompt_token_count or 0, output)
        for candidate in (chunk.candidates or [])[:1]:
            if candidate.finish_reason is not None:
                self.reason = str(candidate.finish_reason.value)
            parts = candidate.content.parts if candidate.content else None
            for part in parts or ():
                yield from self._part(part)

    def _part(self, part: genai_types.Part) -> Iterator[Event]:
        if part.function_call is not None:
            self.called = True
            yield _call(part.function_call, part.thought_signature)
        elif part.text and not part.thought:
            yield TextDelta(part.text)

    def finish(self) -> Iterator[Event]:
        yield self.usage or Usage(0, 0)
        stop = "tool_calls" if self.called else _STOP.get(self.reason, "other")
        yield Done(stop, self.reason)


def _call(call: genai_types.FunctionCall, signature: bytes | None) -> ToolCall:
    return ToolCall(
        id=call.id or f"{_MADE_UP}{uuid.uuid4().hex[:16]}",
        name=call.name or "",
        arguments_json=json.dumps(call.args or {}),
        signature=base64.b64encode(signature).decode() if signature else None,
    )


def to_gemini(messages: Sequence[Message]) -> list[genai_types.ContentDict]:
    """The conversation as Gemini contents: ``functionCall`` parts of the model, the
    ``functionResponse`` parts of one user turn after them."""
    contents: list[genai_types.ContentDict] = []
    for message in messages:
        role, parts = _parts(message)
        if not parts:
            continue
        if contents and contents[-1].get("role") == role:
            contents[-1]["parts"] = [*(contents[-1].get("parts") or []), *parts]
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _parts(message: Message) -> tuple[str, list[genai_types.PartDict]]:
    if isinstance(message, UserMessage):
        return "user", [{"text": message.text}]
    if isinstance(message, ToolResult):
        key = "error" if message.is_error else "output"
        response: genai_types.FunctionResponseDict = {
            "name": message.name,
            "response": {key: message.content},
        }
        if not message.call_id.startswith(_MADE_UP):
            response["id"] = message.call_id
        return "user", [{"function_response": response}]
    return "model", _model_parts(message)


def _model_parts(message: AssistantMessage) -> list[genai_types.PartDict]:
    parts: list[genai_types.PartDict] = [{"text": message.text}] if message.text else []
    for call in message.tool_calls:
        function_call: genai_types.FunctionCallDict = {
            "name": call.name,
            "args": arguments_object(call),
        }
        if not call.id.startswith(_MADE_UP):
            function_call["id"] = call.id
        part: genai_types.PartDict = {"function_call": function_call}
        if call.signature:
            part["thought_signature"] = base64.b64decode(call.signature)
        parts.append(part)
    return parts
