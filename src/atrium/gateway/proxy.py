"""The MCP endpoint ``/api/v1/mcp/{server}/mcp``: guard, route, policy, forward, audit.

A raw ASGI app rather than a Starlette endpoint: on the hot path every object counts, and the
body must be read against a cap, the response streamed through unbuffered, and the upstream
request cancelled the moment the client goes away (ARCHITECTURE.md, "One tools/call").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial

from starlette.types import Message, Receive, Scope, Send

from atrium.auth.assertion import HEADER as ASSERTION_HEADER
from atrium.auth.assertion import AssertionSigner
from atrium.auth.errors import OAuthError
from atrium.auth.resource_guard import ANONYMOUS, RequestFacts, ResourceGuard
from atrium.auth.wire import check_single_credentials
from atrium.gateway import cancellation, inflight, jsonrpc, tasks
from atrium.gateway.access import ToolAccess, ToolCatalog
from atrium.gateway.audit import AuditSink
from atrium.gateway.directory import ServerDirectory, ServerRoute
from atrium.gateway.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    GatewayError,
    bad_gateway,
    timed_out,
)
from atrium.gateway.exchange import Exchange, new_request_id, origin_of
from atrium.gateway.guard import Guard, read_body
from atrium.gateway.http1 import ConnectFailed, UpstreamError
from atrium.gateway.lookup import ToolLookup
from atrium.gateway.oneshot import OneShot, check_one_shot, is_one_shot
from atrium.gateway.ratelimit import RateLimiter, peer
from atrium.gateway.sessions import SessionBinding
from atrium.gateway.upstream import Upstreams, bare_error, request_headers, response_headers
from atrium.serving import BODY_ARRIVED, CONNECTION_LOST

logger = logging.getLogger(__name__)


class McpProxy:
    def __init__(
        self,
        directory: ServerDirectory,
        upstreams: Upstreams,
        guard: Guard,
        audit: AuditSink,
        resource: ResourceGuard,
        public_url: str,
        assertions: AssertionSigner,
        sessions: SessionBinding,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.directory = directory
        self.assertions = assertions
        self.sessions = sessions
        self.upstreams = upstreams
        self.guard = guard
        self.audit = audit
        self.resource = resource
        self.public_url = public_url
        self.limiter = limiter
        self.catalog = ToolCatalog()
        self.lookup = ToolLookup(self.catalog, upstreams)
        self.oneshot = OneShot(upstreams, self.catalog, self.lookup)
        self.task_ids = tasks.TaskBinding(sessions)
        self.inflight = inflight.InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = Exchange(
            request_id=new_request_id(),
            server=scope["path_params"]["server"],
            started=time.perf_counter(),
            http_method=scope["method"],
        )
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        plain = scope["path_params"].get("endpoint") == "jsonrpc"
        send = _audited(send, exchange, self.audit)
        try:
            self.guard.check(headers.get("host"), headers.get("origin"))
            route = self.directory.lookup(exchange.server)
            body = await self._read(scope, receive, headers, plain=plain)
            malformed: GatewayError | None = None
            if body is not None:
                # Parsed before authenticating, so a refused attempt is audited with its method
                # and tool too; but who calls is answered first (401 before 400).
                try:
                    exchange.inbound = jsonrpc.parse(body)
                    jsonrpc.check_calls(exchange.inbound, self.guard.max_batch)
                except GatewayError as error:
                    malformed = error
            facts = await self.admit(scope, headers, route, exchange)
            if malformed is not None:
                raise malformed
            assert exchange.access is not None
            if exchange.inbound is not None:
                await self.lookup.learn_unknown(
                    route, exchange.access, exchange.inbound, lambda: self.identity(route, exchange)
                )
            schemas = self.catalog.header_schemas(route.name)
            scope = jsonrpc.checked_headers(scope, exchange.inbound, schemas)
            self._check_inbound(headers, route, exchange.access, facts, exchange)
            scope, body = self.task_ids.opened(scope, body, route, exchange, facts, self.check_call)
            one_shot = plain or is_one_shot(headers, exchange.inbound)
            if one_shot:
                assert exchange.inbound is not None
                check_one_shot(exchange.inbound)
            else:
                self._check_session(headers, route, exchange)
            await self.limit(exchange, client=peer(scope))
            await self._answer(scope, receive, send, route, body, exchange, one_shot=one_shot)
        except GatewayError as error:
            await _send_error(send, error, exchange)
        except asyncio.CancelledError:  # the server's grace period is over (inflight.py)
            await inflight.answer_cancelled(send, exchange, _send_error)
        except Exception:  # the top of a request: a JSON-RPC error, the log says what broke
            logger.exception("%s %s failed", scope["method"], scope["path"])
            failed = GatewayError(500, INTERNAL_ERROR, "the gateway failed; its log says why")
            await _send_error(send, failed, exchange)
        finally:
            if events := exchange.events_once():  # no response completed: recorded now
                self.audit.record(events)

    async def admit(
        self, scope: Scope, headers: dict[str, str], route: ServerRoute, exchange: Exchange
    ) -> RequestFacts:
        """Who calls (RFC 6750 / RFC 9449 checks) and what they may call: sets the exchange's
        ``caller`` and ``access``. Shared by the MCP endpoint and the OpenAPI tool routes."""
        facts = self._facts(scope, headers, route.name)
        try:
            caller = await self.resource.authenticate(facts, route.config.oauth)
        except OAuthError as error:
            raise _refusal(error) from None
        exchange.caller = caller
        exchange.access = ToolAccess(route.name, route.config, route.policy, caller, self.catalog)
        return facts

    async def _read(
        self, scope: Scope, receive: Receive, headers: dict[str, str], *, plain: bool
    ) -> bytes | None:
        """The body of a POST; ``None`` for GET and DELETE (``plain``, the one-shot endpoint:
        POST only)."""
        method = scope["method"]
        if method in ("GET", "DELETE") and not plain:
            return None
        if method != "POST":
            raise GatewayError(
                405,
                INVALID_REQUEST,
                f"Method {method} not allowed",
                headers={"Allow": "POST" if plain else "GET, POST, DELETE"},
            )
        self.guard.check_length(headers.get("content-length"))
        idle_s = None if scope.get(BODY_ARRIVED) else self.guard.body_timeout_s
        return await read_body(receive, self.guard.max_body, idle_s)

    def _facts(self, scope: Scope, headers: dict[str, str], server: str) -> RequestFacts:
        try:
            # ``headers`` kept the last of a repeated header; the authorization server reads
            # the first: one caller must not be authenticated as another acts (wire.py).
            check_single_credentials(scope["headers"])
        except OAuthError as error:
            raise _refusal(error) from None
        path = scope["path"]
        host = headers.get("host")
        origin = f"{scope.get('scheme', 'http')}://{host}" if host else None
        urls = (f"{self.public_url}{path}",) + ((f"{origin}{path}",) if origin else ())
        dpop = tuple(v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"dpop")
        return RequestFacts(
            server=server,
            method=scope["method"],
            urls=urls,
            authorization=headers.get("authorization"),
            dpop=dpop,
            origin=origin,
        )

    def _check_inbound(
        self,
        headers: dict[str, str],
        route: ServerRoute,
        access: ToolAccess,
        facts: RequestFacts,
        exchange: Exchange,
    ) -> None:
        """Check each call of a POST's body against the access (its headers: ``jsonrpc``)."""
        inbound = exchange.inbound
        if inbound is None:
            return
        for call in inbound.calls:
            if call.method == "tools/call":
                self.check_call(route, access, facts, call.tool)

    def _check_session(
        self, headers: dict[str, str], route: ServerRoute, exchange: Exchange
    ) -> None:
        """A named session must be the caller's own (``sessions``); 404 otherwise."""
        presented = headers.get("mcp-session-id")
        if presented is not None:
            caller = exchange.caller or ANONYMOUS
            exchange.backend_session = self.sessions.unwrap(route.name, caller, presented)

    async def limit(self, exchange: Exchange, *, client: str | None = None) -> None:
        """Count an admitted exchange's tool calls against its caller's rate limit; raise 429
        past it. Shared by the MCP endpoint and the OpenAPI tool routes. ``client``, the TCP
        peer's address, tells anonymous callers apart; without it they share one budget."""
        access = exchange.access
        if self.limiter is None or access is None or exchange.inbound is None:
            return
        tools = [call.tool for call in exchange.inbound.calls if call.method == "tools/call"]
        await self.limiter.check(
            access.server, access.config.rate_limit, access.caller, tools, client=client
        )

    def check_call(
        self, route: ServerRoute, access: ToolAccess, facts: RequestFacts, tool: str | None
    ) -> None:
        verdict = access.verdict(tool)
        if verdict == "ok":
            return
        if verdict == "hidden":
            route.policy.check_call(route.name, tool)  # raises: -32602, as for an unknown tool
        policy = route.config.oauth
        if verdict == "sign-in":
            error = self.resource.challenge(facts, policy, None, "sign in to call this tool")
        else:
            error = self.resource.insufficient(facts, policy, verdict)
        raise _refusal(error)

    def identity(self, route: ServerRoute, exchange: Exchange) -> dict[str, str]:
        """The caller assertion for this request (``atrium.auth.assertion``), if the server
        gets one: signed here, once per request, so nothing outlives its ``exp``."""
        if not route.gets_identity:
            return {}
        caller = exchange.caller or ANONYMOUS
        assertion = self.assertions.sign(
            server=route.name,
            subject=caller.subject,
            client_id=caller.client_id,
            scopes=caller.scopes,
            origin=origin_of(caller),
            request_id=exchange.request_id,
        )
        return {ASSERTION_HEADER: assertion}

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: ServerRoute,
        body: bytes | None,
        exchange: Exchange,
        *,
        one_shot: bool,
    ) -> None:
        """Answer an admitted request: the gateway itself for a one-shot body, else the
        backend's answer relayed."""
        if one_shot:
            identity = partial(self.identity, route, exchange)
            work = self.oneshot.respond(send, route, exchange, identity)
            await self.inflight.run(
                receive, send, work, exchange, open_ended=False, lost=scope.get(CONNECTION_LOST)
            )
        else:
            await self._forward_until_disconnect(scope, receive, send, route, body, exchange)

    async def _forward_until_disconnect(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: ServerRoute,
        body: bytes | None,
        exchange: Exchange,
    ) -> None:
        open_ended = body is None or (exchange.inbound is not None and exchange.inbound.listens)
        work = self._forward(scope, send, route, body, exchange)
        await self.inflight.run(
            receive, send, work, exchange, open_ended=open_ended, lost=scope.get(CONNECTION_LOST)
        )
        await cancellation.cancel_abandoned(self, route, exchange, scope)

    def close_streams(self) -> None:
        """End every open-ended stream: the gateway is stopping (``inflight``)."""
        self.inflight.close_streams()

    async def _forward(
        self, scope: Scope, send: Send, route: ServerRoute, body: bytes | None, exchange: Exchange
    ) -> None:
        endpoint = self.upstreams.endpoint(route.upstream)
        send = self.task_ids.sealing(send, route, exchange)
        headers = request_headers(
            scope["headers"],
            exchange.request_id,
            route.credentials,
            self.identity(route, exchange),
            session=exchange.backend_session,
        )
        # A POST answers one request: it times out. A GET stream, like the 2026-07-28
        # subscriptions/listen that replaces it (SEP-2575), is open-ended by design.
        listens = exchange.inbound is not None and exchange.inbound.listens
        idle = route.config.timeout_s if body is not None and not listens else None
        try:
            # ``idle`` bounds the wait for the answer's headers too: a backend may hold them
            # back until its (slow) tool returns.
            response = await endpoint.request(scope["method"], headers, body, idle=idle)
            try:
                if (bare := await bare_error(response, route.name, idle)) is not None:
                    raise bare
                relayed = self._bound(
                    response_headers(response, exchange.request_id), route, exchange
                )
                await exchange.relay(response, send, headers=relayed, idle_timeout=idle)
            finally:
                response.close()
        except ConnectFailed as exc:
            raise route.unreachable(f"cannot connect to {route.upstream} ({exc})") from None
        except TimeoutError:
            raise timed_out(route.name, route.config.timeout_s) from None
        except (UpstreamError, OSError) as exc:
            if exchange.started_response:
                logger.warning("server %s broke off a response: %r", route.name, exc)
                exchange.broken(repr(exc))
                return
            raise bad_gateway(route.name, str(exc) or exc.__class__.__name__) from None

    def _bound(
        self, headers: list[tuple[bytes, bytes]], route: ServerRoute, exchange: Exchange
    ) -> list[tuple[bytes, bytes]]:
        """The backend's session id as the client may see it: bound to this caller."""
        caller = exchange.caller or ANONYMOUS
        return [
            (name, self.sessions.wrap(route.name, caller, value.decode("latin-1")).encode())
            if name == b"mcp-session-id"
            else (name, value)
            for name, value in headers
        ]


def _refusal(error: OAuthError) -> GatewayError:
    """An authentication or authorization refusal in the gateway's wire form."""
    return GatewayError(
        error.status,
        INVALID_REQUEST,
        f"{error.error}: {error.description}",
        data={"error": error.error},
        headers=error.headers,
    )


def _audited(send: Send, exchange: Exchange, audit: AuditSink) -> Send:
    """``send``, recording the exchange just before the last message of its response goes
    out: the journal has its records (``atrium.gateway.journal``) before the client has its
    whole answer, so a gateway killed after answering cannot lose them."""

    async def sending(message: Message) -> None:
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        if last and (events := exchange.events_once()):
            audit.record(events)
        await send(message)

    return sending


async def _send_error(send: Send, error: GatewayError, exchange: Exchange) -> None:
    exchange.failed(error)  # before sending: the exchange is recorded as its answer goes
    if exchange.started_response:
        return
    body = error.body(exchange.first_id())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", exchange.request_id.encode()),
        *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
    ]
    with contextlib.suppress(OSError):
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
