"""The OpenAPI bridge's routes: ``GET /api/v1/mcp/{server}/openapi.json`` and
``POST /api/v1/mcp/{server}/tools/{tool}``.

A REST call takes the MCP endpoint's path: transport guard, authentication and tool access
(``McpProxy.admit``), arguments checked against the tool's input schema (422 naming what is
wrong), the rate limit, one ``tools/call`` to the backend, and the same audit record. Errors
are JSON problems (``error``, ``message``) with the HTTP status an HTTP client expects.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atrium.auth.roles import TOOLS_READ, TOOLS_WRITE, USER
from atrium.gateway import backend_rpc, jsonrpc, openapi
from atrium.gateway.access import ToolAccess, read_only_hint
from atrium.gateway.directory import ServerRoute
from atrium.gateway.errors import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, GatewayError
from atrium.gateway.exchange import Exchange, new_request_id
from atrium.gateway.guard import read_body
from atrium.gateway.proxy import McpProxy
from atrium.gateway.ratelimit import peer
from atrium.settings import Settings

logger = logging.getLogger(__name__)

TOOLS_TTL_S = 30.0
MAX_ERRORS = 5


class ToolsApi:
    def __init__(self, settings: Settings, proxy: McpProxy) -> None:
        self.settings = settings
        self.proxy = proxy
        self._tools: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    async def spec(self, request: Request) -> Response:
        exchange = _exchange(request)
        try:
            route, access, _ = await self._admit(request, exchange)
            tools = [
                tool
                for tool in await self._listed(route, exchange)
                if access.verdict(str(tool.get("name")), read_only_hint(tool)) == "ok"
            ]
        except GatewayError as error:
            return _problem(error, exchange)
        # The scopes an OpenAPI client (a ChatGPT action) asks for: ``user`` alone calls no
        # tool (atrium.gateway.access), so beside it what the person's role lets it call.
        scopes = list(route.config.oauth.scopes) or [USER, TOOLS_READ, TOOLS_WRITE]
        body = openapi.document(self.settings, route, tools, scopes)
        return JSONResponse(body, headers={"Cache-Control": "private, max-age=60"})

    async def call(self, request: Request) -> Response:
        exchange = _exchange(request)
        tool_name = request.path_params["tool"]
        try:
            return await self._call(request, exchange, tool_name)
        except GatewayError as error:
            exchange.failed(error)
            return _problem(error, exchange)
        except Exception:  # the top of a request: a JSON problem, the log says what broke
            logger.exception("the OpenAPI call of %s on %s failed", tool_name, exchange.server)
            failed = GatewayError(500, INTERNAL_ERROR, "the gateway failed; its log says why")
            exchange.failed(failed)
            return _problem(failed, exchange)
        finally:
            # Before the response is sent (Starlette sends it once this returns): recorded,
            # and journaled, before the client has it.
            self.proxy.audit.record(exchange.events_once())

    async def _call(self, request: Request, exchange: Exchange, tool_name: str) -> Response:
        # Named before admission, so even a refused attempt is audited with its tool.
        exchange.inbound = jsonrpc.parse(_call_body(tool_name, {})[1])
        route, access, facts = await self._admit(request, exchange)
        arguments = await self._arguments(request)
        body_id, body = _call_body(tool_name, arguments)
        exchange.inbound = jsonrpc.parse(body)  # audited and limited as an MCP call is
        tool = await self._tool(route, exchange, tool_name)
        if tool is None or access.verdict(tool_name, read_only_hint(tool)) == "hidden":
            raise GatewayError(404, INVALID_REQUEST, f"no tool '{tool_name}' on '{route.name}'")
        self.proxy.check_call(route, access, facts, tool_name)  # 401/403 with a challenge
        _validate(tool, arguments)
        await self.proxy.limit(exchange, client=peer(request.scope))
        message = await backend_rpc.call(
            self.proxy.upstreams,
            route,
            "tools/call",
            body,
            body_id,
            name=tool_name,
            extra_headers=self.proxy.identity(route, exchange),
        )
        exchange.note_response(message)
        status, answer = _answer(message, tool)
        exchange.status = status
        return JSONResponse(answer, status_code=status, headers=_ids(exchange))

    async def _arguments(self, request: Request) -> dict[str, Any]:
        """The body: a JSON object of at most ``max_body`` bytes (read no further: 413), whose
        values nest no deeper than a ``tools/call``'s arguments may (``jsonrpc.MAX_DEPTH``)."""
        guard = self.proxy.guard
        guard.check_length(request.headers.get("content-length"))
        raw = await read_body(request.receive, guard.max_body, guard.body_timeout_s)
        try:
            arguments = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise GatewayError(422, INVALID_REQUEST, f"the body is not JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise GatewayError(422, INVALID_REQUEST, "the body must be a JSON object")
        # The arguments sit one level below params (``params.arguments``).
        levels = jsonrpc.MAX_DEPTH - 1
        if jsonrpc.nesting(arguments, levels) > levels:
            raise GatewayError(
                422,
                INVALID_PARAMS,
                f"the arguments nest objects and arrays more than {levels} levels deep;"
                f" at most {levels}",
            )
        return arguments

    async def _admit(
        self, request: Request, exchange: Exchange
    ) -> tuple[ServerRoute, ToolAccess, Any]:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        self.proxy.guard.check(headers.get("host"), headers.get("origin"))
        route = self.proxy.directory.lookup(exchange.server)
        facts = await self.proxy.admit(request.scope, headers, route, exchange)
        assert exchange.access is not None
        return route, exchange.access, facts

    async def _listed(
        self, route: ServerRoute, exchange: Exchange, *, fresh: bool = False
    ) -> list[dict[str, Any]]:
        """The server's tools, listed as the caller of ``exchange`` (cached for all callers:
        the gateway filters them per caller)."""
        cached = self._tools.get(route.name)
        if cached is not None and not fresh and time.monotonic() - cached[0] < TOOLS_TTL_S:
            return cached[1]
        tools = await backend_rpc.list_tools(
            self.proxy.upstreams, route, lambda: self.proxy.identity(route, exchange)
        )
        self.proxy.catalog.learn(route.name, tools)
        self._tools[route.name] = (time.monotonic(), tools)
        return tools

    async def _tool(
        self, route: ServerRoute, exchange: Exchange, name: str
    ) -> dict[str, Any] | None:
        for fresh in (False, True):
            for tool in await self._listed(route, exchange, fresh=fresh):
                if tool.get("name") == name:
                    return tool
        return None


def _call_body(tool: str, arguments: dict[str, Any]) -> tuple[int, bytes]:
    return backend_rpc.request_body("tools/call", {"name": tool, "arguments": arguments})


def _exchange(request: Request) -> Exchange:
    return Exchange(
        request_id=new_request_id(),
        server=request.path_params["server"],
        started=time.perf_counter(),
    )


def _validate(tool: dict[str, Any], arguments: dict[str, Any]) -> None:
    schema = tool.get("inputSchema") or {"type": "object"}
    try:
        errors = sorted(Draft202012Validator(schema).iter_errors(arguments), key=str)
    except SchemaError:
        return  # the server's own schema is broken: let the server judge the arguments
    if errors:
        details = [
            {"path": "/" + "/".join(map(str, error.absolute_path)), "message": error.message}
            for error in errors[:MAX_ERRORS]
        ]
        raise GatewayError(
            422,
            INVALID_REQUEST,
            f"arguments do not match the input schema: {details[0]['message']}",
            data={"error": "invalid_arguments", "details": details},
        )


def _answer(message: dict[str, Any], tool: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    error = message.get("error")
    if isinstance(error, dict):
        # The server refused the call itself: bad parameters are the caller's (422), the rest
        # is the server failing (502).
        status = 422 if error.get("code") in (-32602, -32600) else 502
        return status, {"error": "jsonrpc_error", "message": str(error.get("message"))}
    result = message.get("result")
    if not isinstance(result, dict):
        return 502, {"error": "bad_gateway", "message": "the server's answer has no result"}
    blocks = result.get("content")
    content = [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []
    if result.get("isError") is True:
        text = next((b.get("text") for b in content if b.get("type") == "text"), "tool error")
        return 400, {"error": "tool_error", "message": str(text), "details": content}
    structured = result.get("structuredContent")
    if tool.get("outputSchema") and isinstance(structured, dict):
        return 200, structured
    return 200, {"content": content}


def _ids(exchange: Exchange) -> dict[str, str]:
    return {"X-Request-Id": exchange.request_id}


def _problem(error: GatewayError, exchange: Exchange) -> JSONResponse:
    name = (error.data or {}).get("error") or _names.get(error.status, "error")
    body: dict[str, Any] = {"error": name, "message": error.message}
    if error.data and "details" in error.data:
        body["details"] = error.data["details"]
    return JSONResponse(body, status_code=error.status, headers={**error.headers, **_ids(exchange)})


_names = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "too_large",
    421: "misdirected",
    422: "invalid_arguments",
    429: "rate_limited",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}
