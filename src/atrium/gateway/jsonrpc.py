"""Reading the JSON-RPC messages of a request body, once, for routing, policy and audit.

For protocol ``2026-07-28`` the client also sends the method and name in ``Mcp-Method`` and
``Mcp-Name`` headers; the gateway reads the body all the same and refuses headers that
contradict it, so a policy decision can never rest on a header alone.

Each message is one of JSON-RPC 2.0's three kinds, or invalid (§4, §5): a request has a string
``method`` and an ``id`` (MCP: a string or an integer, never null), a notification has a
``method`` and no ``id``, a response has an ``id`` and exactly one of ``result`` and
``error``, and no ``method``. A message with a ``method`` and a ``result`` or ``error`` is
none of them: it is refused (-32600), never forwarded, so nothing the backend would take for
a response can be audited as a request that ran.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from atrium.gateway.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    GatewayError,
)

MODERN = "2026-07-28"
# A value that would not survive as an HTTP header (non-ASCII, edge whitespace) is sent as
# "=?base64?<its UTF-8 in base64>?=" (2026-07-28, "HTTP headers"; the SDK's encode_header_value).
_ENCODED = re.compile(r"=\?base64\?(?P<payload>.*)\?=")
MAX_TOOL_NAME = 256  # twice the 128 of MCP 2025-11-25 ("Tool names"): see _is_name

Kind = Literal["request", "notification", "response"]


@dataclass(frozen=True)
class Call:
    """One JSON-RPC message of the body."""

    method: str | None
    id: Any
    params: dict[str, Any]
    kind: Kind = "request"

    @property
    def is_request(self) -> bool:
        return self.kind == "request"

    @property
    def tool(self) -> str | None:
        if self.method != "tools/call":
            return None
        name = self.params.get("name")
        return name if isinstance(name, str) else None


@dataclass(frozen=True)
class Inbound:
    calls: tuple[Call, ...]
    batch: bool

    @property
    def listens(self) -> bool:
        """A 2026-07-28 ``subscriptions/listen``: its answer is a stream with no set end."""
        return any(call.method == "subscriptions/listen" for call in self.calls)


def parse(body: bytes) -> Inbound:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, PARSE_ERROR, f"Parse error: {exc}") from None
    batch = isinstance(document, list)
    items = document if batch else [document]
    if not items:
        raise _invalid("empty batch")
    calls = tuple(_call(item) for item in items)
    ids = [call.id for call in calls if call.is_request]
    if len(set(ids)) != len(ids):
        # Answers are matched to requests by id: two requests with one id would share one
        # outcome in the audit, a failure passing for a success.
        raise _invalid("two requests of the batch have the same id")
    return Inbound(calls, batch)


def check_calls(inbound: Inbound, max_batch: int) -> None:
    """Refuse a batch of more than ``max_batch`` messages (``gateway.max_batch``) and a
    ``tools/call`` whose name is no name. Separate from ``parse`` so that the refusal is
    audited with the method and tool of the body's first call."""
    if len(inbound.calls) > max_batch:
        raise _invalid(
            f"a batch of {len(inbound.calls)} messages; at most {max_batch} (gateway.max_batch)"
        )
    for call in inbound.calls:
        if call.method == "tools/call" and call.tool is not None and not _is_name(call.tool):
            raise GatewayError(
                400,
                INVALID_PARAMS,
                f"Invalid params: a tool name is 1 to {MAX_TOOL_NAME} printable characters",
            )


def _call(item: Any) -> Call:
    """One message, classified by the members it has (JSON-RPC 2.0 §4, §5)."""
    if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
        raise _invalid("not a JSON-RPC 2.0 message")
    answers = "result" in item or "error" in item
    if "method" not in item:
        if "id" not in item or ("result" in item) == ("error" in item):
            raise _invalid("a response has an id and either a result or an error")
        if item["id"] is not None and not _is_id(item["id"]):
            raise _invalid("an id is a string or an integer")
        return Call(None, item["id"], {}, "response")
    method, params = item["method"], item.get("params")
    if not isinstance(method, str):
        raise _invalid("method is not a string")
    if answers:
        raise _invalid("a message with a method has no result or error")
    params = params if isinstance(params, dict) else {}
    if "id" not in item:
        return Call(method, None, params, "notification")
    if not _is_id(item["id"]):
        raise _invalid("a request's id is a string or an integer, never null (MCP)")
    return Call(method, item["id"], params, "request")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _is_name(tool: str) -> bool:
    # MCP 2025-11-25 ("Tool names") says 1-128 of [A-Za-z0-9_.-]; servers in the wild use
    # more (slashes, spaces, non-Latin letters), so only what no name needs is refused: the
    # unprintable (C0, DEL, C1, format and separator characters, which can rewrite an
    # operator's terminal) and lengths past twice the spec's.
    return 0 < len(tool) <= MAX_TOOL_NAME and tool.isprintable()


def _invalid(why: str) -> GatewayError:
    return GatewayError(400, INVALID_REQUEST, f"Invalid Request: {why}")


def check_routing_headers(inbound: Inbound, method: str | None, name: str | None) -> None:
    """2026-07-28: ``Mcp-Method``/``Mcp-Name`` must say what the body says."""
    if inbound.batch or not inbound.calls:
        return
    call = inbound.calls[0]
    if method is not None and method != call.method:
        raise GatewayError(
            400, HEADER_MISMATCH, f"Mcp-Method header {method!r} does not match the body"
        )
    body_name = call.params.get("name") if call.method in ("tools/call", "prompts/get") else None
    if call.method == "resources/read":
        body_name = call.params.get("uri")
    if name is not None and body_name is not None and _decoded(name) != body_name:
        raise GatewayError(
            400, HEADER_MISMATCH, f"Mcp-Name header {name!r} does not match the body"
        )


def _decoded(value: str) -> str | None:
    """A header value as the client meant it; ``None`` (matching nothing) when malformed."""
    match = _ENCODED.fullmatch(value)
    if match is None:
        return value
    try:
        return base64.b64decode(match["payload"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
