"""One request through the gateway: relaying the backend's answer and reading its outcome.

The relay inspects only what policy and audit need: responses to ``tools/list`` (filtered when
the server's policy is not open) and to every request (ok, tool error, JSON-RPC error). A JSON
answer is read whole (it is one message); an SSE answer is relayed event by event, and a
POST's stream times out after ``timeout_s`` without a message (keep-alive comments do not
count: a silent tool is a slow tool).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Send

from atrium.auth.operator import AGENT_CLIENT_ID, CONSOLE_CLIENT_ID, OPERATOR_CLIENT_ID
from atrium.auth.resource_guard import Caller
from atrium.gateway.access import LISTING_MIN_BYTES, ToolAccess
from atrium.gateway.audit import capped_arguments, recorded_name
from atrium.gateway.errors import GatewayError, timed_out
from atrium.gateway.http1 import Response
from atrium.gateway.jsonrpc import Call, Inbound
from atrium.gateway.sse import EventRelay
from atrium.redaction import scrubbed
from atrium.store.audit import AuditEvent, Origin, Outcome

logger = logging.getLogger(__name__)

# Atrium's own clients: their calls are "in-app" in the audit trail and the metrics, so usage
# by the platform itself can be told from usage by the OAuth clients it serves.
IN_APP_CLIENTS = frozenset({OPERATOR_CLIENT_ID, AGENT_CLIENT_ID, CONSOLE_CLIENT_ID})
LISTEN = "subscriptions/listen"
MAX_ERROR_TEXT = 1000


def new_request_id() -> str:
    """A request's id (``X-Request-Id``, the audit row's key): a UUIDv7 (RFC 9562 §5.7) in 32
    hex digits, Unix milliseconds (48 bits) then 74 random bits. Time first, so the audit's
    ``request_id`` index grows at its end: a random id's insert cost SQLite twice as much, and
    more as the table grew (issue 17). The random bits keep ids unique and unguessable."""
    bits = os.urandom(10).hex()  # 80 random bits, 74 of them kept
    millis = time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF
    return f"{millis:012x}7{bits[:3]}{_VARIANT_DIGIT[bits[3]]}{bits[4:19]}"


# A hex digit's two low bits under the variant's 0b10: "0".."f" -> "8".."b".
_VARIANT_DIGIT = {f"{n:x}": f"{n & 0b11 | 0b1000:x}" for n in range(16)}


@dataclass
class Exchange:
    request_id: str
    server: str
    started: float
    inbound: Inbound | None = None
    access: ToolAccess | None = None
    caller: Caller | None = None
    backend_session: str | None = None  # the backend's Mcp-Session-Id, once checked
    http_method: str = "POST"
    started_response: bool = False
    status: int = 0
    outcomes: dict[Any, tuple[Outcome, str | None]] = field(default_factory=dict)
    failure: tuple[Outcome, int, str | None] | None = None
    # Refused by the gateway before anything was forwarded (a 4xx of its own): one record.
    refused: bool = False
    streamed: bool = False  # the backend answered with an event stream
    audited: bool = False  # its records are taken (``events_once``)
    _last_message: float = 0.0

    def first_id(self) -> Any:
        return self.inbound.calls[0].id if self.inbound and not self.inbound.batch else None

    def failed(self, error: GatewayError) -> None:
        outcome: Outcome = "jsonrpc_error" if error.status < 500 and self.inbound else "http_error"
        self.failure = (outcome, error.status, error.message)
        # The gateway raises its 5xx only once it tried the backend; every 4xx comes before.
        self.refused = error.status < 500

    def client_gone(self) -> None:
        self.failure = ("http_error", 499, "client disconnected")

    def broken(self, why: str) -> None:
        self.failure = ("http_error", 502, f"backend broke off the response: {why}")

    # -- relaying -----------------------------------------------------------------------

    async def relay(
        self,
        response: Response,
        send: Send,
        *,
        headers: list[tuple[bytes, bytes]],
        idle_timeout: float | None,
    ) -> None:
        self.status = response.status
        if (response.header(b"content-type") or b"").startswith(b"text/event-stream"):
            self.streamed = True
            await self._start(send, headers)
            await self._relay_events(response, send, idle_timeout)
            return
        body = await response.read(idle_timeout)
        if self._wants_inspection() and body[:1] in (b"{", b"["):
            body = self._inspect_json(body)
        await self._start(send, [*headers, (b"content-length", str(len(body)).encode())])
        await send({"type": "http.response.body", "body": body})

    async def _start(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        self.started_response = True

    async def _relay_events(
        self, response: Response, send: Send, idle_timeout: float | None
    ) -> None:
        relay = EventRelay(self._rewritten) if self.inbound is not None else None
        self._last_message = time.monotonic()
        while True:
            wait = (
                None
                if idle_timeout is None
                else self._last_message + idle_timeout - time.monotonic()
            )
            try:
                chunk = await response.read_some(wait)
            except TimeoutError:
                assert idle_timeout is not None
                self.failure = (
                    "http_error",
                    504,
                    f"no message within {idle_timeout:g} s (timeout_s)",
                )
                # The status went out long ago: the client learns of the time-out from a
                # JSON-RPC error per unanswered request. An unfinished event is dropped.
                tail = self._timeout_events(idle_timeout)
                break
            if not chunk:
                tail = relay.flush() if relay is not None else b""
                break
            out = relay.feed(chunk) if relay is not None else chunk
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _timeout_events(self, idle_timeout: float) -> bytes:
        assert self.inbound is not None  # only a POST times out
        error = timed_out(self.server, idle_timeout)
        return b"".join(
            b"event: message\ndata: " + error.body(call.id) + b"\n\n"
            for call in self.inbound.calls
            if call.is_request and self._answer(call) is None
        )

    def _wants_inspection(self) -> bool:
        return self.inbound is not None

    def _inspect_json(self, body: bytes) -> bytes:
        """``body`` as the client gets it: parsed once, written again only if narrowed."""
        if (listed := self._listing(body)) is not None:
            return listed
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        messages = document if isinstance(document, list) else [document]
        changed = False
        for message in messages:
            if isinstance(message, dict) and self._inspect(message):
                changed = True
        return orjson.dumps(document) if changed else body

    def _listing(self, body: bytes) -> bytes | None:
        """The answer to a lone ``tools/list`` as the client gets it, when the backend wrote
        it as ``{"jsonrpc":"2.0","id":<the request's id>,"result":<result>}`` to the byte: the
        result then goes to the catalog (``ToolCatalog.listing``), which parses it only when
        its bytes differ from the server's last listing, and the caller's view of it is
        written once per set of tools kept (``ToolAccess.view``) (issue 17: a listing of 100
        tools cost more to parse than the rest of its relay). ``None``: read it as any answer.
        """
        inbound, access = self.inbound, self.access
        if (
            access is None
            or inbound is None
            or inbound.batch
            or len(inbound.calls) != 1
            or len(body) < LISTING_MIN_BYTES
        ):
            return None
        call = inbound.calls[0]
        if call.method != "tools/list" or not call.is_request or not isinstance(call.id, str | int):
            return None
        head = b'{"jsonrpc":"2.0","id":' + orjson.dumps(call.id) + b',"result":'
        if not body.startswith(head) or not body.endswith(b"}"):
            return None
        listing = access.catalog.listing(access.server, body[len(head) : -1])
        if listing is None:
            return None
        self._last_message = time.monotonic()
        self.outcomes[call.id] = _result_outcome(listing.result)
        view = access.view(listing)
        return body if view is None else head + view + b"}"

    def note_response(self, message: dict[str, Any]) -> None:
        """Record the outcome of a response the gateway got itself (the OpenAPI bridge)."""
        self._inspect(message)

    def _rewritten(self, message: dict[str, Any]) -> bytes | None:
        """An event's message inspected (``sse.EventRelay``): its new data if it changed."""
        return orjson.dumps(message) if self._inspect(message) else None

    def _inspect(self, message: dict[str, Any]) -> bool:
        """Note a response's outcome; narrow a ``tools/list`` result the policy narrows, in
        place. Whether it did: the caller writes the message again, once."""
        self._last_message = time.monotonic()
        if "id" not in message or ("result" not in message and "error" not in message):
            return False
        request_id = message["id"]
        if not isinstance(request_id, str | int):
            return False  # answers no request of ours (they have such ids: jsonrpc.parse)
        error = message.get("error")
        if isinstance(error, dict):
            text = str(error.get("message"))[:MAX_ERROR_TEXT]
            self.outcomes[request_id] = ("jsonrpc_error", text)
            return False
        self.outcomes[request_id] = _result_outcome(message.get("result"))
        if self.access is None or self._method_of(request_id) != "tools/list":
            return False
        return self._listed(self.access, message)

    def _listed(self, access: ToolAccess, message: dict[str, Any]) -> bool:
        """Learn the tools a backend listed (read-only hints, and the only tool names that
        become metric labels); narrow the answer when the caller may call fewer."""
        if not access.open:
            return access.filter_result(message)
        result = message.get("result")
        tools = result.get("tools") if isinstance(result, dict) else None
        if isinstance(tools, list):
            access.catalog.learn(access.server, tools)
        return False

    def _method_of(self, request_id: Any) -> str | None:
        assert self.inbound is not None
        for call in self.inbound.calls:
            if call.id == request_id and call.is_request:
                return call.method
        return None

    # -- audit --------------------------------------------------------------------------

    def events_once(self) -> list[AuditEvent]:
        """``events()`` the first time, none after: an exchange is recorded as the last
        message of its response goes out, or when its request ends without one."""
        if self.audited:
            return []
        self.audited = True
        return self.events()

    def events(self) -> list[AuditEvent]:
        """The audit records: one per request of the body, or one for the body as a whole
        (refused whole, or holding no request); never none, whatever the body held."""
        duration = (time.perf_counter() - self.started) * 1000
        try:
            return self._events(duration)
        except Exception:  # the top of a request: its record must outlive our bug
            logger.exception("the audit record of request %s could not be made", self.request_id)
            failure: tuple[Outcome, int, str | None] = self.failure or (
                "http_error",
                self.status or 500,
                "the gateway could not record this call",
            )
            outcome, status, error = failure
            return [self._event(None, None, outcome, status, error, duration)]

    def _events(self, duration: float) -> list[AuditEvent]:
        if self.inbound is None:
            # A GET stream or a DELETE (its HTTP method stands for the JSON-RPC one), or a body
            # that is no JSON-RPC message at all.
            outcome, status, error = self.failure or self._answer_outcome()
            event = self._event(None, None, outcome, status, error, duration)
            if self.http_method in ("GET", "DELETE"):
                event = dataclasses.replace(event, method=self.http_method)
            return [event]
        if self.refused and self.failure is not None:
            return [self._refusal(self.inbound, self.failure, duration)]
        requests = [call for call in self.inbound.calls if call.is_request]
        if not requests:
            # Notifications and responses only: the backend's HTTP answer is all there is.
            first = self.inbound.calls[0]
            outcome, status, error = self.failure or self._answer_outcome()
            return [
                self._event(first, first.params.get("arguments"), outcome, status, error, duration)
            ]
        return [
            self._event(call, call.params.get("arguments"), *self._outcome_of(call), duration)
            for call in requests
        ]

    def _refusal(
        self, inbound: Inbound, failure: tuple[Outcome, int, str | None], duration: float
    ) -> AuditEvent:
        """One record of a body the gateway refused before forwarding anything, whatever the
        size of its batch: a refused request costs no more audit rows than an accepted one."""
        first = next((call for call in inbound.calls if call.is_request), inbound.calls[0])
        outcome, status, error = failure
        if len(inbound.calls) > 1:
            error = f"{error} [refused whole: a batch of {len(inbound.calls)} messages]"
        return self._event(first, first.params.get("arguments"), outcome, status, error, duration)

    def _answer_outcome(self) -> tuple[Outcome, int, str | None]:
        """What the backend's HTTP answer says, where there is no JSON-RPC answer to read."""
        if self.status >= 400:
            return "http_error", self.status, f"HTTP {self.status}"
        if self.status == 0:
            return "http_error", 500, "the gateway failed before the backend answered"
        return "ok", self.status, None

    def _outcome_of(self, call: Call) -> tuple[Outcome, int, str | None]:
        """``ok`` only when the backend answered this very request with success."""
        answer = self._answer(call)
        if self.failure is not None and (self.failure[1] >= 500 or answer is None):
            return self.failure
        if answer is not None:
            outcome, error = answer
            return outcome, self.status, error
        if self.status >= 400:
            return "http_error", self.status, f"HTTP {self.status}"
        if self.status == 0:
            # Neither relayed nor refused: the gateway failed (an exception the request's
            # task did not expect), and the ASGI server answers 500 in its place.
            return "http_error", 500, "the gateway failed before the backend answered"
        if call.method == LISTEN and self.streamed:
            return "ok", self.status, None  # the backend's answer is the stream itself
        # A 202 is what the transport answers notifications and responses with (MCP,
        # Streamable HTTP, "Sending Messages"); a stream may end without the response. Neither
        # says the request ran.
        return "http_error", self.status, f"no response to this request (HTTP {self.status})"

    def _answer(self, call: Call) -> tuple[Outcome, str | None] | None:
        """What the backend answered ``call``, if it did. Only a string or an integer is an id
        the outcomes hold (``_inspect``); parsing refuses any other, but no id, whatever it
        is, may cost a request its record."""
        return self.outcomes.get(call.id) if isinstance(call.id, str | int) else None

    def _event(
        self,
        call: Call | None,
        arguments: Any,
        outcome: Outcome,
        status: int,
        error: str | None,
        duration: float,
    ) -> AuditEvent:
        tool = call.tool if call is not None else None
        return AuditEvent(
            request_id=self.request_id,
            server=self.server,
            method=recorded_name(call.method if call is not None else None),
            tool=recorded_name(tool),
            arguments=capped_arguments(arguments, tool) if tool is not None else None,
            outcome=outcome,
            status=status,
            error=scrubbed(error, arguments, tool),
            duration_ms=round(duration, 3),
            caller=_caller_name(self.caller),
            subject=self.caller.subject if self.caller else None,
            client_id=self.caller.client_id if self.caller else None,
            origin=origin_of(self.caller),
        )


def origin_of(caller: Caller | None) -> Origin:
    in_app = caller is not None and caller.client_id in IN_APP_CLIENTS
    return "in-app" if in_app else "external"


def _caller_name(caller: Caller | None) -> str:
    if caller is None or caller.subject is None:
        return "anonymous"
    return caller.subject


def _result_outcome(result: Any) -> tuple[Outcome, str | None]:
    """What a JSON-RPC result says: a failed tool (``isError``, with what it said), or ok."""
    if isinstance(result, dict) and result.get("isError") is True:
        return "tool_error", _error_text(result)
    return "ok", None


def _error_text(result: dict[str, Any]) -> str | None:
    """What a failed tool said (its first text block), for the audit record."""
    content = result.get("content")
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text":
            return str(block.get("text", ""))[:MAX_ERROR_TEXT]
    return None
