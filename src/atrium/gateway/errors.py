"""Errors the gateway answers itself, each knowing its wire form.

Every refusal is a JSON-RPC error object (so any MCP client can show it) sent with an HTTP
status that says the same thing to HTTP tooling. Codes follow JSON-RPC 2.0 and the MCP spec:
-32602 for a tool the caller may not see (the spec's answer to an unknown tool), -32001 for a
time-out, -32002 for a server that cannot be reached, -32003 for a call cut off because the
gateway stops, -32020 for routing headers that contradict the body (2026-07-28, "HTTP
headers"). A backend's error answer that is no JSON-RPC message (plain text, HTML, nothing) is
wrapped in one too (``backend_error``), its text in ``data``.
"""

from __future__ import annotations

from typing import Any

import orjson

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_TIMEOUT = -32001
SERVER_UNAVAILABLE = -32002
GATEWAY_STOPPING = -32003
HEADER_MISMATCH = -32020
MAX_BACKEND_TEXT = 300  # bytes of a backend's own error text kept in ``data``
_SUMMARY_CHARS = 120


class GatewayError(Exception):
    """A request the gateway answers without (or instead of) the backend."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data
        self.headers = headers or {}

    def body(self, request_id: Any = None) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            error["data"] = self.data
        return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})


def not_found(server: str, known: list[str]) -> GatewayError:
    listing = ", ".join(sorted(known)) or "(none)"
    return GatewayError(404, INVALID_REQUEST, f"server '{server}' not found; known: {listing}")


def disabled(server: str, reason: str) -> GatewayError:
    return GatewayError(
        404, INVALID_REQUEST, f"server '{server}' is disabled: {reason}", data={"reason": reason}
    )


def unavailable(server: str, why: str) -> GatewayError:
    return GatewayError(
        503,
        SERVER_UNAVAILABLE,
        f"server '{server}' is unavailable: {why}",
        headers={"Retry-After": "2"},
    )


def bad_gateway(server: str, why: str) -> GatewayError:
    return GatewayError(502, INTERNAL_ERROR, f"server '{server}' failed: {why}")


def timed_out(server: str, seconds: float) -> GatewayError:
    return GatewayError(
        504, REQUEST_TIMEOUT, f"server '{server}' did not answer within {seconds:g} s (timeout_s)"
    )


def stalled(seconds: float) -> GatewayError:
    """A request body that stopped arriving; the connection is closed after the answer."""
    return GatewayError(
        408,
        INVALID_REQUEST,
        f"request body stalled: no byte for {seconds:g} s (gateway.body_timeout_s)",
        headers={"Connection": "close"},
    )


def gateway_stopping() -> GatewayError:
    """A call still unanswered when the gateway stops: it may have run, so no Retry-After."""
    return GatewayError(
        503,
        GATEWAY_STOPPING,
        "the gateway is stopping: the call was cut off before its answer (it may have run)",
        data={"reason": "gateway_stopping"},
    )


def server_failed(server: str, command: str, last_error: str | None) -> GatewayError:
    """A server the supervisor gave up on: it will not come back by itself, so no Retry-After;
    ``command`` is what brings it back."""
    why = f" ({last_error})" if last_error else ""
    return GatewayError(
        503,
        SERVER_UNAVAILABLE,
        f"server '{server}' is down and will not restart by itself{why}: run `{command}`",
        data={"reason": "server_down", "command": command},
    )


def backend_error(
    server: str, status: int, body: bytes, headers: dict[str, str] | None = None
) -> GatewayError:
    """A backend's error answer that holds no JSON-RPC message, as one: a client expecting
    JSON-RPC can show it. A 4xx keeps its status (the request was refused); a 5xx is the
    gateway's 502, but for 503 and 504, which mean what they say."""
    kept = body[:MAX_BACKEND_TEXT].decode("utf-8", errors="ignore")
    summary = " ".join("".join(c if c.isprintable() else " " for c in kept).split())
    shown = summary[:_SUMMARY_CHARS] + ("…" if len(summary) > _SUMMARY_CHARS else "")
    message = f"server '{server}' answered HTTP {status}: {shown or '(an empty body)'}"
    data: dict[str, Any] = {"status": status, "body": kept}
    if len(body) > MAX_BACKEND_TEXT:
        data["truncated"] = True
    if status < 500:
        return GatewayError(status, INVALID_REQUEST, message, data=data, headers=headers)
    relayed = status if status in (503, 504) else 502
    return GatewayError(relayed, INTERNAL_ERROR, message, data=data, headers=headers)
