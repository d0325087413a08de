"""One-shot calls: a POST that names no session and no protocol version (issue 15 §1).

Scripts, webhooks and the seeds' own ``curl`` examples post a bare JSON-RPC request — no
``Accept``, no ``Mcp-Session-Id``, no ``MCP-Protocol-Version`` — and expect its answer. The
gateway answers such a POST itself, with one JSON response (``application/json`` whatever the
request's ``Accept``), and so does ``POST /api/v1/mcp/{server}/jsonrpc`` for every body:

* A backend that speaks ``2026-07-28`` (stateless) gets each message in that form: the
  protocol version, client info and (empty) capabilities in its ``_meta``, the routing headers
  (``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``) as the body says.
* Any other backend gets them on a backend session the gateway initialized itself
  (``pool.SessionPool``): one per server and caller, reused, opened again when it expires.

Which era a backend speaks is asked once (``server/discover``, as the SDK's clients probe) and
remembered for a while; a tool never runs twice because a guess was wrong. Messages of a batch
go one by one (neither era has batches on the wire any more), concurrently, and their answers
come back as one array in the batch's order; notifications alone get 202. The ids the backend
sees are the gateway's own, so concurrent callers sharing a backend session never collide.
Every answer passes ``Exchange.note_response``: the audit records each request's outcome and a
``tools/list`` is filtered for its caller, exactly as on the streamed path.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson
from starlette.types import Send

from atrium.gateway import header_codec, jsonrpc
from atrium.gateway.access import ToolCatalog
from atrium.gateway.backend_rpc import META
from atrium.gateway.directory import ServerRoute
from atrium.gateway.errors import INVALID_REQUEST, GatewayError, backend_error, bad_gateway
from atrium.gateway.exchange import LISTEN, Exchange
from atrium.gateway.jsonrpc import Call, Inbound
from atrium.gateway.lookup import ToolLookup
from atrium.gateway.pool import ACCEPT, Posted, SessionKey, SessionPool, post
from atrium.gateway.upstream import Upstreams

logger = logging.getLogger(__name__)

Era = Literal["modern", "legacy"]
Identity = Callable[[], Mapping[str, str]]

MODERN_FOR_S = 300.0  # how long a backend's answer to server/discover is trusted
LEGACY_FOR_S = 30.0  # a legacy verdict is asked again sooner: an upgrade shows up quickly
_STREAMING = frozenset({LISTEN})
_METHOD = re.compile(r"[\x21-\x7e]{1,256}")
_ids = itertools.count(1)


def is_one_shot(headers: Mapping[str, str], inbound: Inbound | None) -> bool:
    """A POST with a JSON-RPC body that names no session and no protocol version and opens
    none (no ``initialize``): the seeds' ``curl``."""
    return (
        inbound is not None
        and "mcp-session-id" not in headers
        and "mcp-protocol-version" not in headers
        and not any(call.method == "initialize" for call in inbound.calls)
    )


def check_one_shot(inbound: Inbound) -> None:
    """What a one-shot body may not hold: a handshake, a stream, or answers to a session's
    requests. Raised before anything is forwarded, so it is audited as refused."""
    for call in inbound.calls:
        if call.method is not None and not _METHOD.fullmatch(call.method):
            # It goes upstream in a header too (Mcp-Method), where it would not survive.
            raise _refused("a method name is printable ASCII without spaces")
        if call.method == "initialize":
            raise _refused(
                "initialize opens a session: post it to the /mcp endpoint; this endpoint"
                " answers each request by itself"
            )
        if call.method is not None and call.method.startswith("tasks/"):
            raise _refused("tasks need a client that declares the tasks extension: use /mcp")
        if call.method in _STREAMING:
            raise _refused(f"{call.method} answers with a stream: use the /mcp endpoint")
        if call.kind == "response":
            raise _refused("a response answers a session's request: post it with its session")


class OneShot:
    def __init__(
        self,
        upstreams: Upstreams,
        catalog: ToolCatalog,
        lookup: ToolLookup,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.upstreams = upstreams
        self.catalog = catalog
        self.lookup = lookup
        self.pool = SessionPool(upstreams)
        self._clock = clock
        self._eras: dict[str, tuple[Era, float]] = {}
        self._asking: dict[str, asyncio.Future[Era]] = {}

    async def respond(
        self, send: Send, route: ServerRoute, exchange: Exchange, identity: Identity
    ) -> None:
        """Answer the exchange's one-shot body: one JSON answer, whatever the request accepted."""
        status, body = await self.answer(route, exchange, identity)
        exchange.status = status
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", exchange.request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        exchange.started_response = True
        await send({"type": "http.response.body", "body": body})

    async def answer(
        self, route: ServerRoute, exchange: Exchange, identity: Identity
    ) -> tuple[int, bytes]:
        """The HTTP status and JSON body that answer the exchange's one-shot body."""
        inbound = exchange.inbound
        assert inbound is not None
        era = await self.era(route, identity)
        if era == "modern":
            tools = [call.tool for call in inbound.calls if call.tool is not None]
            await self.lookup.learn_named(route, tools, identity)
        key = _key(route, exchange)
        answers = await asyncio.gather(
            *(self._one(route, era, key, call, exchange, identity) for call in inbound.calls)
        )
        found = [(answer, status) for answer, status in answers if answer is not None]
        if not found:
            return 202, b""
        if inbound.batch:
            return 200, orjson.dumps([answer for answer, _ in found])
        # One message: the status says what its answer says (a backend's 404 for an unknown
        # method, 400 for bad params), as the streamed path would relay it.
        answer, status = found[0]
        return (status if "error" in answer and 400 <= status < 500 else 200), orjson.dumps(answer)

    async def era(self, route: ServerRoute, identity: Identity) -> Era:
        """Whether the backend speaks 2026-07-28, asked once per ``MODERN_FOR_S``/
        ``LEGACY_FOR_S`` (callers arriving meanwhile wait for the same answer)."""
        known = self._eras.get(route.upstream)
        if known is not None and known[1] > self._clock():
            return known[0]
        asking = self._asking.get(route.upstream)
        if asking is None or asking.done():
            asking = asyncio.ensure_future(self._discover(route, identity))
            self._asking[route.upstream] = asking
        return await asyncio.shield(asking)

    def forget(self) -> None:
        """The registry changed: ask every backend again."""
        self._eras.clear()

    def close(self) -> None:
        self.pool.close()

    async def _discover(self, route: ServerRoute, identity: Identity) -> Era:
        upstream_id = next(_ids)
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": upstream_id,
                "method": "server/discover",
                "params": {"_meta": META},
            }
        )
        headers = {
            **_modern_headers("server/discover"),
            **route.credentials,
            **identity(),
        }
        answer = await post(self.upstreams, route, body, headers, upstream_id)
        result = answer.message.get("result") if answer.message else None
        versions = result.get("supportedVersions") if isinstance(result, dict) else None
        era: Era = (
            "modern" if isinstance(versions, list) and jsonrpc.MODERN in versions else "legacy"
        )
        ttl = MODERN_FOR_S if era == "modern" else LEGACY_FOR_S
        self._eras[route.upstream] = (era, self._clock() + ttl)
        return era

    async def _one(
        self,
        route: ServerRoute,
        era: Era,
        key: SessionKey,
        call: Call,
        exchange: Exchange,
        identity: Identity,
    ) -> tuple[dict[str, Any] | None, int]:
        """The answer to ``call`` with the client's id (``None`` for a notification), and the
        HTTP status the backend answered it with."""
        upstream_id = next(_ids) if call.is_request else None
        message: dict[str, Any]
        try:
            if era == "modern":
                answer = await self._modern(route, call, upstream_id, identity)
            else:
                body = _message(call, upstream_id)
                answer = await self.pool.send(route, key, body, upstream_id, identity)
            if not call.is_request:
                return None, answer.status
            if answer.message is None and answer.status >= 400:
                raise backend_error(route.name, answer.status, answer.text)
            if answer.message is None:
                raise bad_gateway(route.name, f"no answer to {call.method} (HTTP {answer.status})")
            message, status = {**answer.message, "id": call.id}, answer.status
        except GatewayError as error:
            assert exchange.inbound is not None
            if not exchange.inbound.batch:
                raise
            if not call.is_request:
                logger.info("a notification of a one-shot batch failed: %s", error.message)
                return None, error.status
            # One message of a batch failed: its answer says so, the others stand.
            message, status = orjson.loads(error.body(call.id)), error.status
        exchange.note_response(message)
        return message, status

    async def _modern(
        self,
        route: ServerRoute,
        call: Call,
        upstream_id: int | None,
        identity: Identity,
    ) -> Posted:
        assert call.method is not None
        given = call.params.get("_meta")
        meta = {**(given if isinstance(given, dict) else {}), **META}
        message = _message(call, upstream_id, {**call.params, "_meta": meta})
        headers = {
            **_modern_headers(call.method),
            **_name_header(call),
            **self.catalog.param_headers(route.name, call),
            **route.credentials,
            **identity(),
        }
        return await post(self.upstreams, route, message, headers, upstream_id)


def _key(route: ServerRoute, exchange: Exchange) -> SessionKey:
    caller = exchange.caller
    return SessionKey(
        route.name,
        route.upstream,
        caller.subject if caller is not None else None,
        caller.client_id if caller is not None else None,
    )


def _message(call: Call, upstream_id: int | None, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": call.method}
    if upstream_id is not None:
        message["id"] = upstream_id
    message["params"] = call.params if params is None else params
    return orjson.dumps(message)


def _modern_headers(method: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Accept": ACCEPT,
        "MCP-Protocol-Version": jsonrpc.MODERN,
        "Mcp-Method": method,
    }


def _name_header(call: Call) -> dict[str, str]:
    """``Mcp-Name`` as 2026-07-28 asks for it: the tool's or prompt's name, the resource's URI."""
    if call.method in ("tools/call", "prompts/get"):
        name = call.params.get("name")
    elif call.method == "resources/read":
        name = call.params.get("uri")
    else:
        return {}
    return {"Mcp-Name": header_codec.encode(name)} if isinstance(name, str) else {}


def _refused(why: str) -> GatewayError:
    return GatewayError(400, INVALID_REQUEST, f"Invalid Request: {why}")
