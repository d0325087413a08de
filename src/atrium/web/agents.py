"""``/admin/agents``: the project's agents and the signed-in user's conversations; a chat page
per agent whose runs stream in (``static/chat.js``: text as it comes, each tool call as it
starts and finishes); one conversation's transcript.

A message is relayed to the agents API (``gateway.agents_api``) over loopback, as any client
reaches it, with a five-minute token minted for the user and that API (client
``atrium-console``): the API decides who may run what (scope ``user``), caps runs per user,
keeps a conversation to its owner, and the run's tool calls carry the user's scopes, never
more. The browser asks for the events (``Accept: text/event-stream``) and gets the API's stream
as it is; without script the form still works: the run is read to its end and the browser is
sent to the conversation's transcript.
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import httpx2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from atrium.auth.access_tokens import TokenIssuer
from atrium.auth.operator import CONSOLE_CLIENT_ID
from atrium.errors import AtriumError
from atrium.gateway.parts import GatewayParts
from atrium.store.conversations import ConversationRecord
from atrium.web.guard import Refused, not_found
from atrium.web.render import page
from atrium.web.session import Viewer

if TYPE_CHECKING:  # the AI service loads with the first agents page, not with the gateway
    from atrium.ai.agents import Agent

logger = logging.getLogger(__name__)

TOKEN_TTL_S = 300
CONVERSATIONS = 50
MAX_MESSAGE_CHARS = 100_000
STREAM = "text/event-stream"


class AgentPages:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts

    @functools.cached_property
    def api(self) -> str:
        """The agents API as reached from this machine. atrium.client.connect loads the MCP
        client, which the gateway's start does not need (atrium.gateway.header_codec)."""
        from atrium.client.connect import gateway_url

        base = gateway_url(self.parts.settings, "x").partition("/api/v1/mcp/")[0]
        return f"{base}/api/v1/agents"

    def _agents(self) -> builtins.list[Agent]:
        from atrium.ai.service import AgentService

        try:
            return AgentService(self.parts.settings, self.parts.store).agents()
        except AtriumError as error:  # a broken agent file: the operator's to fix, said here
            raise Refused(500, "misconfigured", f"The agents cannot be read: {error}") from None

    def _agent(self, name: str) -> Agent:
        for agent in self._agents():
            if agent.name == name:
                return agent
        raise not_found(f"Agent '{name}'")

    async def list(self, request: Request, viewer: Viewer) -> Response:
        conversations = await self.parts.store.conversations.list(
            subject=viewer.user.id, limit=CONVERSATIONS
        )
        return page(
            "agents.html",
            viewer=viewer,
            nav="agents",
            agents=self._agents(),
            conversations=conversations,
        )

    async def chat(self, request: Request, viewer: Viewer) -> Response:
        agent = self._agent(request.path_params["name"])
        conversation_id = request.query_params.get("conversation") or ""
        messages: builtins.list[dict[str, Any]] = []
        if conversation_id:
            record = await self._own(viewer, conversation_id)
            if record.agent != agent.name:
                raise not_found(f"Conversation '{conversation_id}' of {agent.name}")
            messages = await self._messages(conversation_id)
        return page(
            "chat.html",
            viewer=viewer,
            nav="agents",
            agent=agent,
            conversation_id=conversation_id,
            messages=messages,
        )

    async def conversation(self, request: Request, viewer: Viewer) -> Response:
        record = await self._own(viewer, request.path_params["conversation_id"])
        return page(
            "conversation.html",
            viewer=viewer,
            nav="agents",
            conversation=record,
            messages=await self._messages(record.id),
        )

    async def _own(self, viewer: Viewer, conversation_id: str) -> ConversationRecord:
        """The viewer's own conversation; someone else's is as absent as a missing one."""
        record = await self.parts.store.conversations.get(conversation_id)
        if record is None or record.subject != viewer.user.id:
            raise not_found(f"Conversation '{conversation_id}'")
        return record

    async def _messages(self, conversation_id: str) -> builtins.list[dict[str, Any]]:
        from atrium.ai.transcript import as_json, from_stored

        stored = await self.parts.store.conversations.messages(conversation_id)
        return [as_json(message) for message in from_stored(stored)]

    async def send(self, request: Request, viewer: Viewer) -> Response:
        """Relay a message to the agents API: its events, or (no script) its transcript."""
        name = request.path_params["name"]
        form = await request.form()
        message = form.get("message")
        if not isinstance(message, str) or not message.strip():
            raise Refused(422, "arguments", "message: write something to send")
        if len(message) > MAX_MESSAGE_CHARS:
            raise Refused(422, "arguments", f"message: at most {MAX_MESSAGE_CHARS} characters")
        body: dict[str, Any] = {"message": message}
        conversation = form.get("conversation_id")
        if isinstance(conversation, str) and conversation:
            body["conversation_id"] = conversation
        client = httpx2.AsyncClient(timeout=httpx2.Timeout(None, connect=10.0))
        try:
            answer = await self._post(client, viewer, name, body)
        except BaseException:
            await client.aclose()
            raise
        if STREAM in request.headers.get("accept", ""):
            return StreamingResponse(
                _relayed(client, answer),
                media_type=STREAM,
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )
        try:
            conversation_id = await _conversation_of(answer)
        finally:
            await client.aclose()
        if conversation_id is None:
            raise Refused(502, "gateway", "The run ended before it started a conversation.")
        return RedirectResponse(f"/admin/conversations/{conversation_id}", status_code=303)

    async def _post(
        self, client: httpx2.AsyncClient, viewer: Viewer, name: str, body: dict[str, Any]
    ) -> httpx2.Response:
        auth = self.parts.auth
        issuer = TokenIssuer(auth.keys, auth.issuer, ttl_s=TOKEN_TTL_S)
        token, _ = issuer.mint(
            subject=viewer.user.id,
            client_id=CONSOLE_CLIENT_ID,
            audience=[auth.resources.agents_url()],
            scopes=sorted(viewer.scopes),
        )
        request = client.build_request(
            "POST",
            f"{self.api}/{quote(name, safe='')}/messages",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Accept": STREAM},
        )
        try:
            answer = await client.send(request, stream=True)
        except httpx2.HTTPError as error:
            raise Refused(502, "gateway", f"The agents API did not answer: {error}") from None
        if answer.status_code != 200:
            await answer.aread()
            await answer.aclose()
            raise _problem(answer)
        return answer


def _problem(answer: httpx2.Response) -> Refused:
    """The agents API's JSON problem as the console's refusal, with its code."""
    try:
        problem = answer.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    code = str(problem.get("error") or "gateway")
    message = str(problem.get("message") or f"The agents API answered {answer.status_code}.")
    return Refused(answer.status_code, "not_found" if code == "not_found" else code, message)


async def _relayed(client: httpx2.AsyncClient, answer: httpx2.Response) -> AsyncIterator[bytes]:
    """The API's events as they come; the browser leaving closes the API's stream, which
    stops the run (``gateway.agents_wire``)."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await answer.aclose()
            await client.aclose()


async def _conversation_of(answer: httpx2.Response) -> str | None:
    """Read the run to its end; the conversation its ``started`` event named."""
    found: str | None = None
    try:
        async for line in answer.aiter_lines():
            if found is None and line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if isinstance(data, dict) and data.get("type") == "started":
                    found = str(data["conversation_id"])
    finally:
        await answer.aclose()
    return found
