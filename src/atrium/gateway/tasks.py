"""Task ids bound to their caller: the tasks extension through the gateway (SEP-2663).

A backend that runs a tool as a task answers the ``tools/call`` with the task's id, and the
client then names it in ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` (``tasks/result``
too, in the experimental tasks of 2025-11-25). The gateway never shows a backend's id: it hands
out the id sealed together with the tool that created the task, under ``SessionBinding``'s
AES-GCM (every replica derives the key from the project's session key), with the server, the
caller's subject and client as associated data, in a context of its own (``_PURPOSE``: no
session id opens as a task id, nor the reverse).

Sealed rather than kept in a table: replicas share nothing but the store and Redis, and a
client's polls may reach any of them; a bounded map would forget tasks that are still running,
or cost a Redis round trip per poll. A sealed id opens only for the caller it was sealed for,
on its server. Anyone else, and an id the gateway never issued, gets -32602 "task not found"
(SEP-2663's answer for an unknown task) before anything is forwarded.

Each task request is then judged as a call of the task's tool (``check``): a caller who may no
longer call that tool (its scopes or the server's ``tools`` changed) can no longer read, answer
or cancel the task, and the audit records the method with that tool. ``tasks/list`` is refused
(-32601): a list cannot be bound to one caller. So is ``tasks/result`` in 2026-07-28, which
SEP-2663 removed; and there a task request whose ``_meta`` does not list the extension gets
-32021, as SEP-2663 requires. Task ids in ``notifications/tasks`` are not rewritten: a backend's
id opens nothing here, so one seen there is useless to a client, and harmless.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Message, Scope, Send

from atrium.auth.resource_guard import ANONYMOUS, Caller, RequestFacts
from atrium.gateway import header_codec
from atrium.gateway.access import ToolAccess
from atrium.gateway.directory import ServerRoute
from atrium.gateway.errors import INVALID_PARAMS, GatewayError
from atrium.gateway.exchange import Exchange
from atrium.gateway.jsonrpc import MODERN, Call, Inbound, TaskRef
from atrium.gateway.sessions import SessionBinding
from atrium.gateway.sse import EventRelay, Rewrite

EXTENSION = "io.modelcontextprotocol/tasks"
CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
METHOD_NOT_FOUND = -32601
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
TASK_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel", "tasks/result"})
REFUSED = {True: frozenset({"tasks/list", "tasks/result"}), False: frozenset({"tasks/list"})}
_PURPOSE = "\0tasks"  # server names have no NUL: a sealing context no session id shares

Check = Callable[[ServerRoute, ToolAccess, RequestFacts, str | None], None]


class TaskBinding:
    def __init__(self, sessions: SessionBinding) -> None:
        self._seals = sessions

    def seal(self, server: str, caller: Caller, tool: str, backend_id: str) -> str:
        """The id the client sees for the backend's task ``backend_id``, made by ``tool``."""
        plain = orjson.dumps([tool, backend_id]).decode("utf-8")
        return self._seals.wrap(server + _PURPOSE, caller, plain)

    def open(self, server: str, caller: Caller, presented: str) -> tuple[str, str]:
        """``(tool, backend id)`` of a task id the client names; -32602 unless it is one this
        gateway sealed for this caller on this server."""
        try:
            tool, backend_id = orjson.loads(
                self._seals.unwrap(server + _PURPOSE, caller, presented)
            )
        except (GatewayError, ValueError, TypeError):
            raise _not_found() from None
        if not isinstance(tool, str) or not isinstance(backend_id, str):
            raise _not_found()
        return tool, backend_id

    def opened(
        self,
        scope: Scope,
        body: bytes | None,
        route: ServerRoute,
        exchange: Exchange,
        facts: RequestFacts,
        check: Check,
    ) -> tuple[Scope, bytes | None]:
        """The request as the backend is sent it: every task id opened and judged (module
        docstring), ``exchange.inbound`` noting each call's task; unchanged without any."""
        inbound = exchange.inbound
        if inbound is None or body is None or not any(_is_task(call) for call in inbound.calls):
            return scope, body
        access = exchange.access
        assert access is not None
        modern = _version(scope) == MODERN
        caller = exchange.caller or ANONYMOUS
        calls = []
        for call in inbound.calls:
            if call.method in REFUSED[modern]:
                raise GatewayError(
                    404 if modern else 400,
                    METHOD_NOT_FOUND,
                    f"Method not found: {call.method} is not offered through the gateway",
                )
            if call.method in TASK_METHODS and call.is_request:
                call = self._open_call(call, modern, route, caller)
                check(route, access, facts, call.tool)
            calls.append(call)
        exchange.inbound = Inbound(tuple(calls), inbound.batch)
        return _forwarded(scope, body, calls, modern)

    def _open_call(self, call: Call, modern: bool, route: ServerRoute, caller: Caller) -> Call:
        if modern and not _declares_tasks(call.params):
            raise GatewayError(
                400,
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                f"Missing required client capability: the {EXTENSION} extension",
                data={"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
            )
        presented = call.params.get("taskId")
        if not isinstance(presented, str):
            raise GatewayError(400, INVALID_PARAMS, "Invalid params: taskId is not a string")
        tool, backend_id = self.open(route.name, caller, presented)
        params = {**call.params, "taskId": backend_id}
        return dataclasses.replace(call, params=params, task=TaskRef(tool, presented))

    def sealing(self, send: Send, route: ServerRoute, exchange: Exchange) -> Send:
        """``send``, sealing the task ids of the answers to this request's calls (the id the
        client presented, for a task request; a new sealed id, for a task a call created).
        ``send`` itself when no answer can carry one: the fast path costs nothing."""
        inbound = exchange.inbound
        if inbound is None or not any(_may_create(call) or call.task for call in inbound.calls):
            return send
        caller = exchange.caller or ANONYMOUS
        calls = {call.id: call for call in inbound.calls if call.is_request}

        def rewrite(message: dict[str, Any]) -> bytes | None:
            request_id, result = message.get("id"), message.get("result")
            call = calls.get(request_id) if isinstance(request_id, str | int) else None
            if call is None or not isinstance(result, dict):
                return None
            holders = [result, result.get("task")]
            if call.task is None and result.get("resultType") != "task":
                holders = holders[1:]  # a 2026-07-28 result is a task only when it says so
            changed = False
            for holder in holders:
                backend_id = holder.get("taskId") if isinstance(holder, dict) else None
                if isinstance(holder, dict) and isinstance(backend_id, str):
                    holder["taskId"] = self._client_id(route.name, caller, call, backend_id)
                    changed = True
            return orjson.dumps(message) if changed else None

        return _rewriting(send, rewrite)

    def _client_id(self, server: str, caller: Caller, call: Call, backend_id: str) -> str:
        if call.task is not None:
            return call.task.presented
        return self.seal(server, caller, call.tool or "", backend_id)


def _is_task(call: Call) -> bool:
    return call.method is not None and call.method.startswith("tasks/")


def _may_create(call: Call) -> bool:
    """A ``tools/call`` whose answer may be a task: its client listed the extension
    (2026-07-28), or asked for a task (the ``task`` parameter of 2025-11-25)."""
    return call.method == "tools/call" and (_declares_tasks(call.params) or "task" in call.params)


def _declares_tasks(params: dict[str, Any]) -> bool:
    meta = params.get("_meta")
    capabilities = meta.get(CAPABILITIES) if isinstance(meta, dict) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    return isinstance(extensions, dict) and EXTENSION in extensions


def _version(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"mcp-protocol-version":
            return str(value.decode("latin-1"))
    return None


def _forwarded(
    scope: Scope, body: bytes, calls: list[Call], modern: bool
) -> tuple[Scope, bytes | None]:
    """The body with each task's backend id, and ``Mcp-Name`` too (SEP-2663: the task id)."""
    document = orjson.loads(body)
    items = document if isinstance(document, list) else [document]
    for item, call in zip(items, calls, strict=True):
        if call.task is not None:
            item["params"]["taskId"] = call.params["taskId"]
    if modern and len(calls) == 1 and calls[0].task is not None:
        backend_name = header_codec.encode(calls[0].params["taskId"]).encode("latin-1")
        headers = [(n, backend_name if n == b"mcp-name" else v) for n, v in scope["headers"]]
        scope = {**scope, "headers": headers}
    return scope, orjson.dumps(document)


def _rewriting(send: Send, rewrite: Rewrite) -> Send:
    """``send`` with every JSON-RPC message of the response given to ``rewrite``: a JSON
    answer is held until its (single) body, its length set anew; a stream goes event by
    event."""
    held: list[Message] = []
    events: list[EventRelay] = []

    async def rewriting(message: Message) -> None:
        if message["type"] == "http.response.start":
            streamed = dict(message["headers"]).get(b"content-type", b"")
            if streamed.startswith(b"text/event-stream"):
                events.append(EventRelay(rewrite))
                await send(message)
            else:
                held.append(message)
            return
        if message["type"] == "http.response.body" and events:
            out = events[0].feed(message.get("body", b""))
            if not message.get("more_body", False):
                out += events[0].flush()
            message = {**message, "body": out}
        elif message["type"] == "http.response.body" and held:
            start = held.pop()
            if not message.get("more_body", False):
                body = _rewritten(message.get("body", b""), rewrite)
                length = str(len(body)).encode()
                headers = [
                    (n, length if n == b"content-length" else v) for n, v in start["headers"]
                ]
                start, message = {**start, "headers": headers}, {**message, "body": body}
            await send(start)
        await send(message)

    return rewriting


def _rewritten(body: bytes, rewrite: Rewrite) -> bytes:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    messages = document if isinstance(document, list) else [document]
    changed = [rewrite(m) is not None for m in messages if isinstance(m, dict)]
    return orjson.dumps(document) if any(changed) else body


def _not_found() -> GatewayError:
    return GatewayError(400, INVALID_PARAMS, "Failed to retrieve task: Task not found")
