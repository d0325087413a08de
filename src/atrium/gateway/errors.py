"""Errors the gateway answers itself, each knowing its wire form.

Every refusal is a JSON-RPC error object (so any MCP client can show it) sent with an HTTP
status that says the same thing to HTTP tooling. Codes follow JSON-RPC 2.0 and the MCP spec:
-32602 for a tool the caller may not see (the spec's answer to an unknown tool), -32001 for a
time-out, -32020 for routing headers that contradict the body (2026-07-28, "HTTP headers").
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
HEADER_MISMATCH = -32020


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
