"""The agents API, served by the gateway (issue 13, "Faces: HTTP").

- ``GET /api/v1/agents``: the project's agents.
- ``POST /api/v1/agents/{name}/messages``, ``{"message": ..., "conversation_id": optional}``:
  run the agent; the answer is the run's events as server-sent events (``http_wire``).
- ``GET /api/v1/agents/conversations`` (``?agent=``, ``?limit=``): the caller's, newest first.
- ``GET`` and ``DELETE /api/v1/agents/conversations/{id}``: one of the caller's.

Every request passes the gateway's transport guard (``Host``, ``Origin``: a page on another
origin must not drive agents even with a token it got somehow), then the checks a hosted
server's requests pass (``resource_guard``: signature, expiry, revocation, DPoP proof for a
bound token), with the scope ``user`` (or ``admin``). The audience is the agents API's own
resource, ``{public_url}/api/v1/agents`` (its RFC 9728 metadata is served here, so a client
finds the authorization server from a 401 alone), or the authorization server's default
audience (what a client gets when it names no resource); a token for one hosted server is
refused, as a token for server A is on server B.

The caller is the run's user (``RunAs``): the agent's MCP calls go through the gateway with
tokens minted for that subject and the token's scopes, never more. Conversations are the
caller's alone, also for an admin: someone else's is 404, as one that does not exist, so an id
tells nothing (an operator reads any conversation in the database, not through this API).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from atrium.ai.discovery import RunAs
from atrium.ai.transcript import as_json, from_stored
from atrium.auth.access_tokens import AccessClaims
from atrium.auth.dpop import ALGORITHMS
from atrium.auth.errors import OAuthError
from atrium.auth.metadata import PRM_PREFIX, request_origin
from atrium.auth.resource_guard import RequestFacts, ResourceGuard
from atrium.auth.resource_ids import AGENTS_PATH
from atrium.auth.roles import ADMIN, USER
from atrium.auth.server import AuthorizationServer
from atrium.auth.wire import check_single_credentials
from atrium.errors import AtriumError
from atrium.gateway.agents_wire import (
    HEARTBEAT_S,
    ApiProblem,
    RunRequest,
    RunSlots,
    RunStream,
    problem_of,
)
from atrium.gateway.errors import GatewayError
from atrium.gateway.guard import Guard, read_body
from atrium.gateway.parts import GatewayParts
from atrium.registry.schema import OAuthPolicy
from atrium.store.conversations import ConversationRecord

if TYPE_CHECKING:  # the AI service (and the MCP client) load on the first request
    from atrium.ai.agents import Agent
    from atrium.ai.service import AgentService

logger = logging.getLogger(__name__)

# A message is at most ``service.MAX_MESSAGE_CHARS`` (100 000) characters: 1 MiB holds it even
# JSON-escaped, so a larger body is refused before it is read, whatever the gateway's own cap.
MAX_BODY = 1024 * 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# The resource-server policy of the agents API: a token is required, with ``user`` (``admin``
# passes every scope check); a DPoP-bound token must come with its proof.
POLICY = OAuthPolicy(required=True, scopes=(USER,), dpop="optional")
Handler = Callable[["AgentsApi", Request], Awaitable[Response]]


class MessageBody(BaseModel):
    """The body of ``POST /api/v1/agents/{name}/messages``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    message: str
    conversation_id: str | None = Field(default=None, min_length=1, max_length=100)


class AgentsGuard(ResourceGuard):
    """``ResourceGuard``'s checks for the agents API: only the audience and the metadata URL
    the challenges name differ from a hosted server's."""

    def _check_audience(
        self, facts: RequestFacts, policy: OAuthPolicy, claims: AccessClaims
    ) -> None:
        default = self.auth.options.default_audience
        for audience in claims.audience:
            if audience == default or self.auth.resources.is_agents_api(audience):
                return
        raise self.challenge(
            facts, policy, "invalid_token", "the token is not meant for the agents API (aud)"
        )

    def metadata_url(self, facts: RequestFacts) -> str:
        resource = self.auth.resources.agents_url(facts.origin)
        return resource.removesuffix(AGENTS_PATH) + PRM_PREFIX + AGENTS_PATH


def _answering(handler: Handler) -> Handler:
    """``handler`` with every refusal answered as a JSON problem."""

    @functools.wraps(handler)
    async def answer(api: AgentsApi, request: Request) -> Response:
        try:
            return await handler(api, request)
        except (ApiProblem, AtriumError, OAuthError, GatewayError) as error:
            return problem_of(error).response()
        except Exception as error:  # the top of a request: logged whole, told without traceback
            logger.exception("agents API: %s %s failed", request.method, request.url.path)
            return problem_of(error).response()

    return answer


class AgentsApi:
    def __init__(
        self,
        service: Callable[[], AgentService],
        auth: AuthorizationServer,
        guard: Guard,
        *,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._service = service
        self.auth = auth
        self.guard = guard
        self.resource = AgentsGuard(auth)
        self.heartbeat_s = heartbeat_s
        self.runs = RunSlots()

    @functools.cached_property
    def service(self) -> AgentService:
        return self._service()

    def routes(self) -> list[BaseRoute]:
        return [
            Route(AGENTS_PATH, self.list_agents, methods=["GET"]),
            Route(f"{AGENTS_PATH}/conversations", self.list_conversations, methods=["GET"]),
            Route(
                f"{AGENTS_PATH}/conversations/{{conversation_id}}",
                self.conversation,
                methods=["GET", "DELETE"],
            ),
            Route(f"{AGENTS_PATH}/{{name}}/messages", self.post_message, methods=["POST"]),
            Route(f"{PRM_PREFIX}{AGENTS_PATH}", self.metadata, methods=["GET"]),
        ]

    @_answering
    async def list_agents(self, request: Request) -> Response:
        await self._admit(request)
        return JSONResponse({"agents": [_agent(agent) for agent in self.service.agents()]})

    @_answering
    async def list_conversations(self, request: Request) -> Response:
        run_as = await self._admit(request)
        limit = _limit(request.query_params.get("limit"))
        records = await self.service.store.conversations.list(
            subject=run_as.subject, agent=request.query_params.get("agent") or None, limit=limit
        )
        return JSONResponse({"conversations": [_conversation(record) for record in records]})

    @_answering
    async def conversation(self, request: Request) -> Response:
        run_as = await self._admit(request)
        conversation_id = request.path_params["conversation_id"]
        record = await self.service.conversation(conversation_id, run_as)
        store = self.service.store.conversations
        if request.method == "DELETE":
            await store.delete(record.id)
            return Response(status_code=204)
        messages = from_stored(await store.messages(record.id))
        body = {**_conversation(record), "messages": [as_json(m) for m in messages]}
        return JSONResponse(body)

    @_answering
    async def post_message(self, request: Request) -> Response:
        run_as = await self._admit(request)
        body = await _message_body(request, min(MAX_BODY, self.guard.max_body))
        self.runs.take(run_as.subject)  # given back when the stream ends (RunStream)
        run = RunRequest(request.path_params["name"], body.message, run_as, body.conversation_id)
        return RunStream(self.service, run, heartbeat_s=self.heartbeat_s, runs=self.runs)

    async def metadata(self, request: Request) -> Response:
        """The agents API's protected resource metadata (RFC 9728 §3)."""
        document: dict[str, Any] = {
            "resource": self.auth.resources.agents_url(request_origin(request)),
            "authorization_servers": [self.auth.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "Atrium agents",
            "scopes_supported": [USER, ADMIN],
            "dpop_signing_alg_values_supported": list(ALGORITHMS),
            "dpop_bound_access_tokens_required": False,
        }
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})

    async def _admit(self, request: Request) -> RunAs:
        """The transport guard, then who calls (``AgentsGuard``): the run's user."""
        self.guard.check(request.headers.get("host"), request.headers.get("origin"))
        check_single_credentials(request.scope["headers"])  # one caller, read once (wire.py)
        origin = request_origin(request)
        path = request.url.path
        urls = (f"{self.auth.resources.public_url}{path}",)
        facts = RequestFacts(
            server="",  # no hosted server: AgentsGuard never asks
            method=request.method,
            urls=urls + ((f"{origin}{path}",) if origin else ()),
            authorization=request.headers.get("authorization"),
            dpop=tuple(request.headers.getlist("dpop")),
            origin=origin,
        )
        caller = await self.resource.authenticate(facts, POLICY)
        if caller.subject is None:  # POLICY requires a token: only a bug of ours gets here
            raise self.resource.challenge(facts, POLICY, None, "authentication required")
        return RunAs(subject=caller.subject, scopes=caller.scopes)


def agents_routes(parts: GatewayParts, *, heartbeat_s: float = HEARTBEAT_S) -> list[BaseRoute]:
    """The agents API's routes over the gateway's parts (``gateway.app._routes``)."""

    def service() -> AgentService:
        from atrium.ai.service import AgentService

        return AgentService(parts.settings, parts.store)

    return AgentsApi(service, parts.auth, parts.proxy.guard, heartbeat_s=heartbeat_s).routes()


async def _message_body(request: Request, limit: int) -> MessageBody:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiProblem(
            415,
            "unsupported_media_type",
            f"send the message as application/json, not {media_type or 'no content type'}",
        )
    raw = await _read(request, limit)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiProblem(400, "invalid_json", f"the body is not JSON: {exc}") from None
    try:
        return MessageBody.model_validate(data)
    except ValidationError as exc:
        details = [
            {"path": "/".join(map(str, error["loc"])) or "(body)", "message": error["msg"]}
            for error in exc.errors(include_url=False)
        ]
        first = details[0]
        message = f"the body is not a message: {first['path']}: {first['message']}"
        raise ApiProblem(422, "invalid_body", message, details=details) from None


async def _read(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit``, before or while it is read."""
    length = request.headers.get("content-length", "")
    too_large = ApiProblem(413, "too_large", f"the body is larger than {limit} bytes")
    if length.isdigit() and int(length) > limit:
        raise too_large
    try:
        return await read_body(request.receive, limit)
    except GatewayError as error:
        if error.status == 413:
            raise too_large from None
        raise ApiProblem(400, "bad_request", "the client went away while sending") from None


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise ApiProblem(
            400, "bad_request", f"limit must be a whole number from 1 to {MAX_LIMIT}, not {value!r}"
        )
    return int(value)


def _agent(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "description": agent.description,
        "model": agent.model,
        "servers": list(agent.servers) if agent.servers is not None else None,
        "allowed_tools": list(agent.allowed_tools) if agent.allowed_tools is not None else None,
    }


def _conversation(record: ConversationRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "agent": record.agent,
        "title": record.title,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "message_count": record.messages,
    }
