"""What the agents API (``atrium.gateway.agents_api``) sends: JSON problems, and a run as
server-sent events.

A problem is ``{"error": code, "message": text}`` with the HTTP status that says the same to
HTTP tooling, as the gateway's OpenAPI routes answer (``gateway/tools_api.py``): the user's
mistakes are 4xx naming what was wrong; an agent the project configured badly (a broken agent
file or ``services/ai/config.yaml``, an unknown provider, a missing key or SDK) is 500
``misconfigured``: nothing the caller sends fixes it, and its message tells the operator what
to. The database failing is 503.

A run (``RunStream``) is decided in two halves. Everything ``AgentService.start`` refuses comes
back before the stream starts, as a problem; once it has started, the status is 200 and every
later failure is the run's ``failed`` event (HTML5 SSE: ``event: <type>`` and ``data: <json>``
per event). A ``: ping`` comment every ``heartbeat_s`` keeps proxies from cutting a stream that
waits on a long tool call. The run lives in a task of its own, so the client going away
cancels it once (model stream and tool calls stop, ``atrium.ai.loop``) and its cleanup (the
MCP sessions, the provider's connections) still runs to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from atrium.ai.discovery import RunAs
from atrium.ai.errors import ConversationBusy
from atrium.ai.providers.provider import ProviderSetupError
from atrium.ai.run_events import RunEvent, RunFailed, RunStarted, as_json
from atrium.auth.errors import OAuthError
from atrium.auth.roles import ADMIN
from atrium.errors import AtriumError, ConfigError, NotFoundError, UsageError
from atrium.gateway.errors import GatewayError
from atrium.store.errors import StoreError

if TYPE_CHECKING:
    from atrium.ai.service import AgentService

logger = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: do not buffer
PING = b": ping\n\n"
INTERNAL = "the run failed inside Atrium; the gateway's log has the details"
PROVIDER_FAILED = "the model API failed; the gateway's log has the details"
# The gateway's own refusals (transport guard, body cap) by status.
_GATEWAY_NAMES = {403: "forbidden", 413: "too_large", 421: "misdirected"}


class ApiProblem(Exception):
    """A request the agents API refuses: its status, ``error`` code and message."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.details = details

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.details:
            body["details"] = self.details
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def problem_of(error: Exception) -> ApiProblem:
    """The wire form of an error a request ended with (module docstring)."""
    if isinstance(error, ApiProblem):
        return error
    if isinstance(error, OAuthError):  # resource-server challenges carry WWW-Authenticate
        return ApiProblem(error.status, error.error, error.description, headers=error.headers)
    if isinstance(error, GatewayError):
        name = _GATEWAY_NAMES.get(error.status, "bad_request")
        return ApiProblem(error.status, name, error.message, headers=error.headers)
    if isinstance(error, NotFoundError):
        return ApiProblem(404, "not_found", str(error))
    if isinstance(error, ConversationBusy):
        return ApiProblem(409, "conversation_busy", str(error))
    if isinstance(error, UsageError):
        return ApiProblem(422, "invalid_request", str(error))
    if isinstance(error, ConfigError | ProviderSetupError):
        # The details name files, keys and variables of the server: the log has them, not the
        # caller (an operator sees them with `atrium agents show`).
        logger.warning("an agent cannot run as configured: %s", error)
        return ApiProblem(
            500, "misconfigured", "the agent cannot run as configured; the gateway's log says why"
        )
    if isinstance(error, StoreError):  # its text names the database: the log's, not the caller's
        logger.warning("agents API: %s", error)
        message = "the store is unavailable; try again shortly"
        return ApiProblem(503, "unavailable", message, headers={"Retry-After": "2"})
    if isinstance(error, AtriumError):
        logger.warning("agents API: %s", error)
        return ApiProblem(500, "server_error", str(error))
    return ApiProblem(500, "internal", INTERNAL)  # a bug of ours: the caller logs it whole


def sse_frame(event: RunEvent) -> bytes:
    """One event: named by its ``type``; the data is one line (JSON escapes newlines)."""
    data = as_json(event)
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass(frozen=True)
class RunRequest:
    """A run to start: ``message`` to ``agent``, as ``run_as``, new or continuing."""

    agent: str
    message: str
    run_as: RunAs
    conversation_id: str | None = None


class RunSlots:
    """The runs going on in this gateway process: a run holds the operator's model budget,
    MCP sessions and maybe processes for minutes, so a caller gets ``PER_USER`` at once and
    all callers ``TOTAL``; beyond, 429 with ``Retry-After``."""

    PER_USER = 4
    TOTAL = 32

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def take(self, subject: str) -> None:
        if self._held.get(subject, 0) >= self.PER_USER:
            raise ApiProblem(
                429, "too_many_runs", f"at most {self.PER_USER} runs of yours at once",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        if sum(self._held.values()) >= self.TOTAL:
            raise ApiProblem(
                429, "too_many_runs", "the gateway runs as many agents as it may; try again",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        self._held[subject] = self._held.get(subject, 0) + 1

    def give(self, subject: str) -> None:
        left = self._held.get(subject, 0) - 1
        if left > 0:
            self._held[subject] = left
        else:
            self._held.pop(subject, None)


class RunStream(Response):
    """The answer to ``POST /api/v1/agents/{name}/messages``: a problem, or the run's events."""

    def __init__(
        self,
        service: AgentService,
        run: RunRequest,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        runs: RunSlots | None = None,
    ) -> None:
        super().__init__(status_code=200, media_type="text/event-stream", headers=SSE_HEADERS)
        # A stream has no length: Response counted the empty body it was given.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.service = service
        self.run = run
        self.heartbeat_s = heartbeat_s
        self.runs = runs  # the slot ``AgentsApi`` took for this run, given back at its end
        self.started = False
        self.conversation_id: str | None = None
        self._sending = asyncio.Lock()
        self._ended = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = asyncio.ensure_future(self._run(scope, receive, send))
        gone = asyncio.ensure_future(_disconnected(receive))
        pings = asyncio.ensure_future(self._ping(send))
        try:
            await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self.runs is not None:
                self.runs.give(self.run.run_as.subject)
            for task in (run, gone, pings):  # ``run`` only when the client went first
                task.cancel()
            for task in (run, gone, pings):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = self.run
        try:
            async with self.service.start(
                run.agent, run.message, run.run_as, run.conversation_id
            ) as events:
                start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                await self._send(send, start)
                self.started = True
                async for event in events:
                    if isinstance(event, RunStarted):
                        self.conversation_id = event.conversation_id
                    await self._body(send, sse_frame(self._shown(event)))
        except AtriumError as error:
            await self._failed(scope, receive, send, error, str(error))
        except Exception as error:  # the top of a request: logged whole, told without traceback
            logger.exception("agent %s: the run failed", run.agent)
            await self._failed(scope, receive, send, error, INTERNAL)
        if self.started:
            await self._send(send, {"type": "http.response.body", "body": b""}, last=True)

    def _shown(self, event: RunEvent) -> RunEvent:
        """A model API's failure names its URL and says what it answered: for the operator
        (the log has it), not for a caller who is not an admin."""
        if isinstance(event, RunFailed) and event.kind == "provider" and not self._admin:
            return dataclasses.replace(event, error=PROVIDER_FAILED)
        return event

    @property
    def _admin(self) -> bool:
        return ADMIN in self.run.run_as.scopes

    async def _failed(
        self, scope: Scope, receive: Receive, send: Send, error: Exception, text: str
    ) -> None:
        """A problem before the stream started; after, the ``failed`` event that ends it."""
        if not self.started:
            await problem_of(error).response()(scope, receive, send)
            return
        if isinstance(error, AtriumError):
            logger.warning("agent %s: the run stopped: %s", self.run.agent, error)
        await self._body(send, sse_frame(RunFailed(self.conversation_id, text, "internal")))

    async def _ping(self, send: Send) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if self.started:
                await self._body(send, PING)

    async def _body(self, send: Send, chunk: bytes) -> None:
        await self._send(send, {"type": "http.response.body", "body": chunk, "more_body": True})

    async def _send(self, send: Send, message: Message, *, last: bool = False) -> None:
        # The run and the pings send from two tasks: one message at a time keeps frames whole,
        # and no ping follows the end of the response.
        async with self._sending:
            if not self._ended:
                self._ended = last
                await send(message)


async def _disconnected(receive: Receive) -> None:
    """Return when the client has gone (the body was read already: nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass
