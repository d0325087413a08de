"""Reading the JSON-RPC messages of a request body, once, for routing, policy and audit.

For protocol ``2026-07-28`` the client also sends the method and name in ``Mcp-Method`` and
``Mcp-Name`` headers, and the arguments a tool marks ``x-mcp-header`` in ``Mcp-Param-*`` headers
(SEP-2243, ``basic/transports#standard-headers``); HTTP infrastructure routes on them. The
gateway reads the body all the same and refuses (400, -32020) headers that contradict it,
before anything is forwarded: a policy decision never rests on a header alone, and no backend
reads a request differently from the gateway that let it through (``checked_headers``).

Each message is one of JSON-RPC 2.0's three kinds, or invalid (§4, §5): a request has a string
``method`` and an ``id`` (MCP: a string or an integer, never null), a notification has a
``method`` and no ``id``, a response has an ``id`` and exactly one of ``result`` and
``error``, and no ``method``. A message with a ``method`` and a ``result`` or ``error`` is
none of them: it is refused (-32600), never forwarded, so nothing the backend would take for
a response can be audited as a request that ran.

No member of a message (``params``, ``result``, ``error``) may nest more than ``MAX_DEPTH``
(64) levels of objects and arrays: deeper, the message is refused (-32600) before anything is
forwarded, and audited like any refusal. Real arguments nest a handful of levels; 64 leaves them
room to spare while staying a quarter of the 254 levels orjson writes (the one-shot path writes
each message again) and far from the depth at which what walks a value recursively (a backend's
validators, a JSON Schema check) meets Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.types import Scope

from atrium.gateway import header_codec
from atrium.gateway.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    GatewayError,
)

MODERN = "2026-07-28"
# The body field Mcp-Name mirrors, per method: SEP-2243, and SEP-2663 for the tasks methods.
NAME_FIELDS: Mapping[str, str] = {
    # The SDK's NAME_BEARING_METHODS (mcp.shared.inbound), written out: see header_codec.
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    **dict.fromkeys(("tasks/get", "tasks/update", "tasks/cancel"), "taskId"),
}
_VERSION, _METHOD, _NAME = b"mcp-protocol-version", b"mcp-method", b"mcp-name"
_PARAM = b"mcp-param-"
MAX_TOOL_NAME = 256  # twice the 128 of MCP 2025-11-25 ("Tool names"): see _is_name
MAX_DEPTH = 64  # levels of objects and arrays in a member of a message: the module says why

Kind = Literal["request", "notification", "response"]


@dataclass(frozen=True)
class TaskRef:
    """The task a ``tasks/*`` request names, once the gateway opened its id (``tasks``)."""

    tool: str  # the tool whose call created it: its policy is the task's
    presented: str  # the id as the client holds it (the backend's is in ``params``)


@dataclass(frozen=True)
class Call:
    """One JSON-RPC message of the body."""

    method: str | None
    id: Any
    params: dict[str, Any]
    kind: Kind = "request"
    task: TaskRef | None = None

    @property
    def is_request(self) -> bool:
        return self.kind == "request"

    @property
    def tool(self) -> str | None:
        """The tool this message calls, or whose task it is about."""
        if self.task is not None:
            return self.task.tool
        if self.method != "tools/call":
            return None
        name = self.params.get("name")
        return name if isinstance(name, str) else None


@dataclass(frozen=True)
class Inbound:
    calls: tuple[Call, ...]
    batch: bool
    # Levels its deepest message nests below the message itself, counted to one past MAX_DEPTH.
    depth: int = 0

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
    return Inbound(calls, batch, _depth(body, items))


def check_calls(inbound: Inbound, max_batch: int) -> None:
    """Refuse a batch of more than ``max_batch`` messages (``gateway.max_batch``) and a
    ``tools/call`` whose name is no name. Separate from ``parse`` so that the refusal is
    audited with the method and tool of the body's first call."""
    if len(inbound.calls) > max_batch:
        raise _invalid(
            f"a batch of {len(inbound.calls)} messages; at most {max_batch} (gateway.max_batch)"
        )
    if inbound.depth > MAX_DEPTH:
        raise _invalid(
            f"a message nests objects and arrays more than {MAX_DEPTH} levels deep"
            f" (params, result, error); at most {MAX_DEPTH}"
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


def _depth(body: bytes, items: list[Any]) -> int:
    """How deep the deepest of ``items`` nests below the message itself (``0`` for a body
    that cannot pass ``MAX_DEPTH``: it has too few brackets, which most bodies are)."""
    if body.count(b"{") + body.count(b"[") <= MAX_DEPTH + 1:  # the message's own, and 64
        return 0
    return max(nesting(item, MAX_DEPTH + 1) for item in items) - 1


def nesting(value: Any, limit: int) -> int:
    """The levels of objects and arrays ``value`` nests (a scalar: 0), counted level by level
    without recursion, and no further than one past ``limit``. A level at a time, in plain
    loops: a body of a million small arrays costs a small part of what parsing it did."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        below = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, dict | list):
                    below.append(child)
        level = below
    return depth


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


def checked_headers(
    scope: Scope, inbound: Inbound | None, header_schemas: Mapping[str, dict[str, Any]]
) -> Scope:
    """2026-07-28: refuse (400, -32020) routing headers that do not say what the body says.

    ``Mcp-Method`` must be the body's method, ``Mcp-Name`` its name field (``NAME_FIELDS``),
    both present; ``Mcp-Param-*`` must mirror the arguments the tool marks ``x-mcp-header``,
    present exactly when the argument is (``header_schemas``: the tools the gateway has seen
    declare any, ``ToolCatalog.header_schemas``; the SDK's codec decides, ``=?base64?...?=``
    values included). A routing header sent twice is refused in every era: two readers would
    take different copies. Header names are case-insensitive, values are not; values lose the
    optional whitespace around them (RFC 9110 §5.5), as the backend is sent them.
    """
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    routing: dict[bytes, str] = {}
    trimmed = False
    for name, value in raw:
        if name in (_VERSION, _METHOD, _NAME) or name.startswith(_PARAM):
            if name in routing:
                raise _mismatch(f"the {name.decode('latin-1')} header appears more than once")
            routing[name] = value.strip(b" \t").decode("latin-1")
            trimmed = trimmed or len(routing[name]) != len(value)
    if trimmed:
        scope = {**scope, "headers": [(n, _trim(n, v)) for n, v in raw]}
    if routing.get(_VERSION) == MODERN and inbound is not None and not inbound.batch:
        _check_call(inbound.calls[0], routing, header_schemas)
    return scope


def _check_call(
    call: Call, routing: dict[bytes, str], header_schemas: Mapping[str, dict[str, Any]]
) -> None:
    if call.method is None:
        return
    if routing.get(_METHOD) != call.method:
        raise _mismatch(f"Mcp-Method header {routing.get(_METHOD)!r} does not match the body")
    field = NAME_FIELDS.get(call.method)
    named = call.params.get(field) if field is not None else None
    if named is not None and header_codec.decode(routing.get(_NAME)) != named:
        raise _mismatch(f"Mcp-Name header {routing.get(_NAME)!r} does not match the body")
    schema = header_schemas.get(call.tool or "") if call.method == "tools/call" else None
    if schema is not None:
        # Only for a tool that declares x-mcp-header parameters: the SDK's rules, as backends
        # apply them (imported here, not at start: header_codec).
        from mcp.shared.inbound import validate_mcp_param_headers

        arguments = call.params.get("arguments")
        params = {k.decode("latin-1"): v for k, v in routing.items() if k.startswith(_PARAM)}
        args = arguments if isinstance(arguments, dict) else {}
        rejection = validate_mcp_param_headers(schema, args, params)
        if rejection is not None:
            raise _mismatch(rejection.message)


def _trim(name: bytes, value: bytes) -> bytes:
    if name in (_VERSION, _METHOD, _NAME) or name.startswith(_PARAM):
        return value.strip(b" \t")
    return value


def _mismatch(why: str) -> GatewayError:
    return GatewayError(400, HEADER_MISMATCH, f"Header mismatch: {why}")
