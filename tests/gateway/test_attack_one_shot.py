"""Attacks on one-shot calls (issue 15 §1): bare JSON-RPC POSTs and ``/jsonrpc``, answered by
the gateway itself, on backend sessions it opens and pools for ``initialize``-era servers.

Most attacks here go against ``Legacy``, a small ``initialize``-era backend written for them:
it keeps state per session (``remember``/``recall``), records the sessions it opens and ends
and the cancellations it gets, and can answer ``server/discover`` with garbage or not at all.
The others use the gateway tests' own backend (both eras). A passing test documents a defence.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atrium.auth.operator import OPERATOR_CLIENT_ID
from atrium.client.dpop import generate_key, make_proof
from atrium.servers.shutdown import GracefulServer
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, serving
from tests.polling import until

PLAIN = {"Content-Type": "application/json"}
Discover = Literal["refuse", "garbage", "lying", "hang"]


@dataclass
class Legacy:
    """An ``initialize``-era backend that remembers per session and tells what it saw."""

    discover: Discover = "refuse"
    port: int = 0
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    cancelled: list[tuple[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (session, tool)
    started: set[str] = field(default_factory=set)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/mcp", self.endpoint, methods=["POST", "DELETE"])])

    async def endpoint(self, request: Request) -> Response:
        session = request.headers.get("mcp-session-id")
        if request.method == "DELETE":
            self.deleted.append(session or "")
            self.sessions.pop(session or "", None)
            return Response(status_code=200)
        body = orjson.loads(await request.body())
        method = body.get("method")
        if method == "initialize":
            opened = uuid.uuid4().hex
            self.sessions[opened] = {}
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "legacy", "version": "1"},
            }
            return _answer(body["id"], result, {"mcp-session-id": opened})
        if session is None:
            return await self._sessionless(body)
        if session not in self.sessions:
            return JSONResponse(_error(None, "Session not found"), status_code=404)
        if "id" not in body:
            if method == "notifications/cancelled":
                self.cancelled.append((session, body["params"].get("requestId")))
            return Response(status_code=202)
        if method == "tools/list":
            return _answer(body["id"], {"tools": TOOLS})
        if method != "tools/call":
            return JSONResponse(_error(body["id"], "Method not found", -32601))
        return _answer(body["id"], await self._call(session, body["params"]))

    async def _sessionless(self, body: dict[str, Any]) -> Response:
        if body.get("method") == "server/discover":
            if self.discover == "hang":
                await asyncio.Event().wait()
            if self.discover == "garbage":
                return Response(b"<html>surprise", media_type="application/json")
            if self.discover == "lying":  # a version in a string, not in a list
                return _answer(body.get("id"), {"supportedVersions": "2026-07-28"})
        return JSONResponse(_error(None, "Bad Request: No valid session ID"), status_code=400)

    async def _call(self, session: str, params: dict[str, Any]) -> dict[str, Any]:
        tool, arguments = params.get("name"), params.get("arguments") or {}
        self.calls.append((session, str(tool)))
        state = self.sessions[session]
        if tool == "remember":
            state["value"] = arguments.get("value")
            text = "remembered"
        elif tool == "recall":
            text = str(state.get("value", "nothing"))
        elif tool == "slow":
            self.started.add(str(arguments.get("tag")))
            await asyncio.sleep(30)
            text = "slept"
        else:
            text = f"echo {arguments.get('text')}"
        return {"content": [{"type": "text", "text": text}]}


TOOLS = [
    {"name": name, "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": ro}}
    for name, ro in (("remember", False), ("recall", True), ("slow", False), ("echo", False))
]


def _answer(id: Any, result: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"jsonrpc": "2.0", "id": id, "result": result}, headers=headers)


def _error(id: Any, message: str, code: int = -32000) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}


@pytest.fixture
async def legacy(gateway: Gateway) -> AsyncIterator[Legacy]:
    """``Legacy`` behind the gateway: ``open`` (anonymous callers call every tool),
    ``signed`` (sign-in required) and ``quick`` (``timeout_s: 1``)."""
    backend = Legacy()
    server = GracefulServer(
        backend.app(), host="127.0.0.1", port=0, log_level="warning", timeout_s=5
    )
    async with serving(server) as served:
        backend.port = served.port
        await gateway.add_server("open", port=served.port)
        await gateway.add_server("signed", port=served.port, oauth={"required": True})
        await gateway.add_server("quick", port=served.port, timeout_s=1)
        yield backend


def call(tool: str, id: Any = 1, **arguments: Any) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}


async def post(
    http: httpx2.AsyncClient, url: str, body: Any, headers: dict[str, str] | None = None
) -> httpx2.Response:
    return await http.post(url, content=orjson.dumps(body), headers={**PLAIN, **(headers or {})})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def text_of(response: httpx2.Response) -> str:
    return str(response.json()["result"]["content"][0]["text"])


def jsonrpc_url(gateway: Gateway, server: str) -> str:
    return f"{gateway.base}/api/v1/mcp/{server}/jsonrpc"


# -- one caller and another's pooled backend session ----------------------------------------


async def test_anonymous_callers_never_share_a_backend_session(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    # Two strangers without a token: nothing tells them apart but the sessions the gateway
    # opens for them, so a session kept for "anonymous" would carry one's state to the other.
    url = gateway.url("open")

    await post(http, url, call("remember", value="alice's secret"))
    recalled = await post(http, url, call("recall"))

    assert text_of(recalled) == "nothing"
    assert len({session for session, _ in legacy.calls}) == 2
    # Each ended once answered: nothing piles up at the backend either.
    await until(lambda: len(legacy.deleted) >= 2, what="both sessions to be ended")


async def test_a_users_state_stays_with_their_client_and_subject(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("signed")
    alice = gateway.token("signed", "tools:write", subject="alice", client_id="app-a")
    alice_elsewhere = gateway.token("signed", "tools:write", subject="alice", client_id="app-b")
    bob = gateway.token("signed", "tools:write", subject="bob", client_id="app-a")

    await post(http, url, call("remember", value="alice via app-a"), bearer(alice))
    again = await post(http, url, call("recall"), bearer(alice))
    other_client = await post(http, url, call("recall"), bearer(alice_elsewhere))
    other_user = await post(http, url, call("recall"), bearer(bob))

    assert text_of(again) == "alice via app-a"  # pooled: the same session serves alice again
    assert (text_of(other_client), text_of(other_user)) == ("nothing", "nothing")


async def test_a_cancellation_posted_by_one_caller_reaches_only_their_own_session(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("signed")
    alice = gateway.token("signed", "tools:write", subject="alice")
    mallory = gateway.token("signed", "tools:write", subject="mallory")
    running = asyncio.ensure_future(post(http, url, call("slow", tag="alice"), bearer(alice)))
    await until(lambda: "alice" in legacy.started, what="alice's call to start")
    (alice_session,) = {session for session, tool in legacy.calls if tool == "slow"}

    # The gateway's ids upstream are a counter: mallory guesses every one near it.
    guesses = [
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": n}}
        for n in range(1, 50)  # gateway.max_batch: 50
    ]
    accepted = await post(http, url, guesses, bearer(mallory))
    running.cancel()

    assert accepted.status_code == 202
    assert all(session != alice_session for session, _ in legacy.cancelled[: len(guesses)])


async def test_a_revoked_token_is_not_served_by_its_pooled_session(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("signed")
    token = gateway.token("signed", "tools:write", subject="alice", client_id=OPERATOR_CLIENT_ID)
    assert text_of(await post(http, url, call("echo", text="before"), bearer(token))) == (
        "echo before"
    )
    calls_before = len(legacy.calls)

    revoked = await http.post(
        f"{gateway.base}/api/v1/core/oauth/revoke",
        data={"client_id": OPERATOR_CLIENT_ID, "token": token},
    )
    after = await post(http, url, call("echo", text="after"), bearer(token))

    assert revoked.status_code == 200
    assert after.status_code == 401
    assert len(legacy.calls) == calls_before


async def test_the_session_pool_stays_bounded_and_ends_what_it_evicts(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    pool = gateway.parts.proxy.oneshot.pool
    pool._limit = 3  # the bound is MAX_SESSIONS; a small one shows the rule with few callers
    url = gateway.url("signed")

    for n in range(7):  # a caller minting client ids (dynamic registration is open)
        token = gateway.token("signed", "tools:write", subject="mallory", client_id=f"c{n}")
        assert (await post(http, url, call("echo", text=str(n)), bearer(token))).status_code == 200

    assert len(pool._sessions) <= 3
    await until(lambda: len(legacy.deleted) >= 4, what="the evicted sessions to be ended")
    oneshot = gateway.parts.proxy.oneshot
    assert set(oneshot._eras) <= {
        route.upstream for route in gateway.parts.directory.routes.values()
    }


# -- batches --------------------------------------------------------------------------------


async def test_a_batch_mixing_allowed_and_denied_calls_runs_none_of_them(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    reader = gateway.token("signed", "tools:read", subject="reader")
    batch = [call("recall", id=1), call("remember", id=2, value="x"), call("recall", id=3)]
    await post(http, gateway.url("signed"), [call("recall", id=1)], bearer(reader))  # learn tools
    seen = len(legacy.calls)

    refused = await post(http, gateway.url("signed"), batch, bearer(reader))

    assert refused.status_code == 403
    assert len(legacy.calls) == seen
    records = await gateway.audit_of("signed", 2)
    assert records[0].status == 403
    assert "refused whole" in (records[0].error or "")


@pytest.mark.parametrize(
    "body",
    [
        [call("echo", id=1, text="a"), call("echo", id=1, text="b")],
        [call("echo", id="x", text="a"), {"jsonrpc": "2.0", "id": "x", "result": {}}],
        [call("echo", id=1, text="a"), {"jsonrpc": "2.0", "id": 7, "error": {"code": 1}}],
        [call("echo", id=True, text="a")],
        [call("echo", id=None, text="a")],
        [],
        [call("echo", id=n, text="a") for n in range(10_000)],
    ],
    ids=[
        "same-id",
        "request-and-response",
        "error-response",
        "bool-id",
        "null-id",
        "empty",
        "huge",
    ],
)
async def test_a_batch_that_is_no_proper_one_shot_is_refused_before_the_backend(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient, body: list[Any]
) -> None:
    response = await post(http, gateway.url("open"), body)

    assert response.status_code in (400, 413)
    assert "error" in response.json()
    assert legacy.calls == []


async def test_ids_of_different_types_are_answered_each_with_its_own(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    batch = [call("echo", id=1, text="int"), call("echo", id="1", text="str")]

    answers = (await post(http, gateway.url("open"), batch)).json()

    assert [(a["id"], a["result"]["content"][0]["text"]) for a in answers] == [
        (1, "echo int"),
        ("1", "echo str"),
    ]


async def test_notifications_alone_are_accepted_and_recorded_once(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}

    response = await post(http, gateway.url("open"), [note, note])
    marker = await post(http, gateway.url("open"), call("echo", text="marker"))

    assert (response.status_code, response.content) == (202, b"")
    assert marker.status_code == 200
    # Every answered request has one record (issue 18): the body's, not one per notification.
    await gateway.audit(marker.headers["x-request-id"])
    (record,) = await gateway.store.audit.for_request(response.headers["x-request-id"])
    assert (record.method, record.tool, record.status) == ("notifications/progress", None, 202)


async def test_each_message_of_a_batch_is_audited_with_its_own_outcome(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    batch = [
        call("echo", id=1, text="fine"),
        call("slow", id=2, seconds=5, tag="batch-timeout"),
        call("fail", id=3),
    ]

    answers = (await post(http, gateway.url("slowpoke"), batch)).json()

    assert [a["id"] for a in answers] == [1, 2, 3]
    assert "result" in answers[0]
    assert "error" in answers[1]
    records = await gateway.audit_of("slowpoke", 3)
    outcomes = {record.tool: record.outcome for record in records}
    assert outcomes == {"echo": "ok", "slow": "jsonrpc_error", "fail": "tool_error"}


async def test_a_rate_limit_counts_every_call_of_a_one_shot_batch(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server("metered", port=backend.port, rate_limit="2/minute")
    await gateway.add_server("metered-too", port=backend.port, rate_limit="2/minute")
    batch = [call("echo", id=n, text=str(n)) for n in range(3)]

    within = await post(http, jsonrpc_url(gateway, "metered"), batch[:2])
    past = await post(http, jsonrpc_url(gateway, "metered"), call("echo", text="one more"))
    over = await post(http, gateway.url("metered-too"), batch)

    assert within.status_code == 200
    assert (past.status_code, over.status_code) == (429, 429)
    assert "retry-after" in past.headers
    assert backend.witness.calls["echo"] == 2
    records = await gateway.audit_of("metered-too")
    assert records[0].status == 429


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    ["tools/list\r\nX-Injected: 1", "tools/list\nX-Injected: 1", "tools list", "tööls/list"],
)
async def test_a_method_name_cannot_inject_a_header_upstream(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, method: str
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": method}

    response = await post(http, gateway.url("tools"), body)

    assert response.status_code in (400, 404)
    assert not any("x-injected" in r.headers for r in backend.witness.requests)


async def test_a_tool_name_reaches_the_backend_only_as_a_safe_header(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    crlf = await post(http, gateway.url("tools"), call("echo\r\nX-Injected: 1", text="a"))
    unicode = await post(http, gateway.url("tools"), call("échø", text="a"))

    assert crlf.status_code == 400
    assert unicode.status_code == 200  # the backend's own "unknown tool"
    assert not any("x-injected" in r.headers for r in backend.witness.requests)
    (forwarded,) = [r for r in backend.witness.requests if "échø".encode() in r.body]
    assert forwarded.headers["mcp-name"] == (
        "=?base64?" + base64.b64encode("échø".encode()).decode() + "?="
    )


async def test_mcp_param_headers_on_jsonrpc_are_checked_or_ignored_never_forwarded(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = jsonrpc_url(gateway, "tools")
    body = call("seen_headers", region="eu-west")
    await post(http, gateway.url("tools"), {"jsonrpc": "2.0", "id": 0, "method": "tools/list"})
    modern = {
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "seen_headers",
    }

    mismatched = await post(http, url, body, {**modern, "Mcp-Param-Region": "us-east"})
    twice = await http.post(
        url,
        content=orjson.dumps(body),
        headers=[
            *PLAIN.items(),
            *modern.items(),
            ("Mcp-Param-Region", "eu-west"),
            ("Mcp-Param-Region", "us-east"),
        ],
    )
    unversioned = await post(http, url, body, {"Mcp-Param-Region": "us-east"})

    assert (mismatched.status_code, mismatched.json()["error"]["code"]) == (400, -32020)
    assert (twice.status_code, twice.json()["error"]["code"]) == (400, -32020)
    assert unversioned.status_code == 200
    forwarded = [r for r in backend.witness.requests if b"eu-west" in r.body]
    regions = [r.headers.get("mcp-param-region") for r in forwarded]
    assert regions == ["eu-west"]  # the one call let through, with the header its body says
    assert "us-east" not in regions


async def test_a_dpop_proof_for_jsonrpc_is_no_proof_for_mcp(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server(
        "bound", port=backend.port, oauth={"required": True, "dpop": "required"}
    )
    key = generate_key()
    token = gateway.token("bound", "tools:write", jkt=key.thumbprint())
    proof = make_proof(key, method="POST", url=jsonrpc_url(gateway, "bound"), access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}

    on_mcp = await post(http, gateway.url("bound"), call("echo", text="moved"), headers)
    as_get = make_proof(key, method="GET", url=jsonrpc_url(gateway, "bound"), access_token=token)
    wrong_method = await post(
        http, jsonrpc_url(gateway, "bound"), call("echo", text="x"), {**headers, "DPoP": as_get}
    )

    assert on_mcp.status_code == 401
    assert wrong_method.status_code == 401
    assert backend.witness.calls["echo"] == 0


# -- slow, leaving and strange backends -----------------------------------------------------


async def test_a_legacy_call_whose_client_leaves_is_cancelled_on_its_session(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("signed", "tools:write", subject="alice")
    sent = asyncio.ensure_future(
        post(http, gateway.url("signed"), call("slow", tag="left"), bearer(token))
    )
    await until(lambda: "left" in legacy.started, what="the slow call to start")
    (session,) = {s for s, tool in legacy.calls if tool == "slow"}

    sent.cancel()

    await until(lambda: legacy.cancelled, what="notifications/cancelled")
    assert [s for s, _ in legacy.cancelled] == [session]
    (record,) = await gateway.audit_of("signed")
    assert (record.tool, record.status) == ("slow", 499)


@pytest.mark.parametrize("answer", ["garbage", "lying"])
async def test_a_garbled_answer_to_server_discover_falls_back_to_sessions(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient, answer: Discover
) -> None:
    legacy.discover = answer

    response = await post(http, gateway.url("open"), call("echo", text="still works"))

    assert response.status_code == 200, response.text
    assert text_of(response) == "echo still works"


async def test_a_backend_that_hangs_on_server_discover_costs_a_clear_504_and_no_more(
    gateway: Gateway, legacy: Legacy, http: httpx2.AsyncClient
) -> None:
    legacy.discover = "hang"

    hung = await post(http, gateway.url("quick"), call("echo", text="waiting"))
    legacy.discover = "refuse"  # fixed: the failure was not remembered
    after = await post(http, gateway.url("quick"), call("echo", text="again"))

    assert hung.status_code == 504
    assert "quick" in hung.json()["error"]["message"]
    assert text_of(after) == "echo again"
    records = await gateway.audit_of("quick", 2)
    assert sorted(record.status for record in records) == [200, 504]
