"""The Gemini API on loopback: ``POST /{version}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (``v1`` or ``v1beta``, as the SDK chooses).

A response is ``{candidates: [{content: {role: "model", parts}, finishReason, index}],
usageMetadata, modelVersion, responseId}``; parts are ``{text}`` or ``{functionCall: {name,
args}}`` with ``args`` an object. Streamed, each chunk is such a response as one ``data:`` line
(ended by CRLF CRLF, as Google sends them): text arrives in pieces, function calls whole, in the
last chunk with ``finishReason: STOP`` and the full usage. Gemini sends no call ids.

Arguments cannot be malformed JSON on this wire (they are an object): Gemini reports a call it
could not form as ``finishReason: MALFORMED_FUNCTION_CALL`` with no content, which is what a
scripted malformed call becomes. The SDK's ``base_url`` is the root (``HttpOptions``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from tests.ai.fake_script import STALL, ProviderFake, Reply, pieces, random_id, sse

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}
_URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class GeminiFake(ProviderFake):
    def routes(self) -> list[Route]:
        return [Route("/{version}/models/{target:path}", self.handle, methods=["POST"])]

    def wants_stream(self, request: Request, body: Any) -> bool:
        return str(request.path_params["target"]).endswith(":streamGenerateContent")

    def error(self, status: int, message: str) -> dict[str, Any]:
        error = {"code": status, "message": message, "status": _STATUSES.get(status, "INTERNAL")}
        return {"error": error}

    def message(self, reply: Reply, body: Any) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
        return _chunk(reply, _identity(body), parts + _call_parts(reply), final=True)

    def respond(self, request: Request, reply: Reply, body: Any) -> Any:
        body = {**(body or {}), "model": str(request.path_params["target"]).split(":")[0]}
        body["responseId"] = random_id("", 22, _URL_SAFE)
        return super().respond(request, reply, body)

    def stream(self, reply: Reply, body: Any) -> Iterator[bytes]:
        identity = _identity(body)
        texts = pieces(reply.text, reply.deltas)
        last_text = texts.pop() if texts and not reply.calls else None
        for number, piece in enumerate(texts):
            yield sse(_chunk(reply, identity, [{"text": piece}], final=False), end="\r\n\r\n")
            if reply.stall and number == 0:
                yield STALL
        parts = [{"text": last_text}] if last_text is not None else _call_parts(reply)
        yield sse(_chunk(reply, identity, parts, final=True), end="\r\n\r\n")


def _identity(body: Any) -> tuple[str, str]:
    """The model version and response id every chunk of one response repeats."""
    return str(body["model"]).removeprefix("models/"), str(body["responseId"])


def _call_parts(reply: Reply) -> list[dict[str, Any]]:
    return [{"functionCall": {"name": call.name, "args": call.parsed}} for call in reply.calls]


def _chunk(
    reply: Reply, identity: tuple[str, str], parts: list[dict[str, Any]], *, final: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if final:
        candidate["finishReason"] = "STOP"
        if any(call.parsed is None for call in reply.calls):
            candidate = {"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(reply, final=final),
        "modelVersion": identity[0],
        "responseId": identity[1],
    }


def _usage(reply: Reply, *, final: bool) -> dict[str, Any]:
    used = reply.usage
    usage: dict[str, Any] = {"promptTokenCount": used.input_tokens}
    if final:
        usage["candidatesTokenCount"] = used.output_tokens
    usage["totalTokenCount"] = used.input_tokens + (used.output_tokens if final else 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": used.input_tokens}]
    return usage
