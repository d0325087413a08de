"""Reading the JSON-RPC messages of a request body, once, for routing, policy and audit.

For protocol ``2026-07-28`` the client also sends the method and name in ``Mcp-Method`` and
``Mcp-Name`` headers; the gateway reads the body all the same and refuses headers that
contradict it, so a policy decision can never rest on a header alone.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

from atrium.gateway.errors import HEADER_MISMATCH, INVALID_REQUEST, PARSE_ERROR, GatewayError

MODERN = "2026-07-28"
# A value that would not survive as an HTTP header (non-ASCII, edge whitespace) is sent as
# "=?base64?<its UTF-8 in base64>?=" (2026-07-28, "HTTP headers"; the SDK's encode_header_value).
_ENCODED = re.compile(r"=\?base64\?(?P<payload>.*)\?=")


@dataclass(frozen=True)
class Call:
    """One JSON-RPC message of the body."""

    method: str | None
    id: Any
    params: dict[str, Any]

    @property
    def is_request(self) -> bool:
        return self.method is not None and self.id is not None

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
        raise GatewayError(400, INVALID_REQUEST, "Invalid Request: empty batch")
    calls = []
    for item in items:
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
            raise GatewayError(400, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        method = item.get("method")
        params = item.get("params")
        calls.append(
            Call(
                method if isinstance(method, str) else None,
                item.get("id"),
                params if isinstance(params, dict) else {},
            )
        )
    return Inbound(tuple(calls), batch)


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
