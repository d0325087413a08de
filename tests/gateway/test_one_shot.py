"""One-shot calls (issue 15 §1): a bare JSON-RPC POST — no Accept, no session, no protocol
version — gets one JSON answer, on the MCP endpoint and on ``/jsonrpc``, through the same
authentication, policy and audit as any call.

The backend here is the gateway tests' own (Atrium's toolkit: both eras, so the gateway
forwards in the 2026-07-28 form); tests/gateway/test_one_shot_legacy.py puts a server that
only knows ``initialize`` behind it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import orjson

from atrium.client.dpop import generate_key, make_proof
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, messages
from tests.polling import until

PLAIN = {"Content-Type": "application/json"}  # all the seeds' curl sends


def request(method: str, params: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


def echo(text: str, id: Any = 1) -> dict[str, Any]:
    return request("tools/call", {"name": "echo", "arguments": {"text": text}}, id)


async def post(
    http: httpx2.AsyncClient, url: str, body: Any, headers: dict[str, str] | None = None
) -> httpx2.Response:
    return await http.post(url, content=orjson.dumps(body), headers={**PLAIN, **(headers or {})})


def jsonrpc_url(gateway: Gateway, server: str) -> str:
    return f"{gateway.base}/api/v1/mcp/{server}/jsonrpc"


async def test_a_bare_tools_list_gets_one_json_answer_and_no_session(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await post(http, gateway.url("tools"), request("tools/list"))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "mcp-session-id" not in response.headers
    unknown = await post(http, gateway.url("tools"), request("no/such/method", id=2))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, -32601)
    answer = response.json()
    assert answer["id"] == 1
    assert "echo" in {tool["name"] for tool in answer["result"]["tools"]}


async def test_a_bare_tools_call_reaches_the_backend_in_the_stateless_form(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    # A string id: the gateway's own ids upstream are integers, so this one cannot come back
    # by chance.
    response = await post(http, gateway.url("tools"), echo("hello from curl", id="curl-7"))

    answer = response.json()
    assert (answer["id"], answer["result"]["content"][0]["text"]) == ("curl-7", "hello from curl")
    (forwarded,) = [
        r for r in backend.witness.requests if b"hello from curl" in r.body and r.method == "POST"
    ]
    assert forwarded.headers["mcp-protocol-version"] == "2026-07-28"
    assert (forwarded.headers["mcp-method"], forwarded.headers["mcp-name"]) == (
        "tools/call",
        "echo",
    )
    assert "mcp-session-id" not in forwarded.headers
    sent = orjson.loads(forwarded.body)
    assert sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert sent["id"] != "curl-7"  # the gateway's own id upstream; the client's comes back


async def test_a_batch_is_answered_in_order_with_the_clients_ids(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    batch = [
        request("tools/list", id="first"),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        echo("second", id=2),
        request("tools/call", {"name": "fail", "arguments": {}}, id=3),
        request("no/such/method", id=4),
    ]

    response = await post(http, gateway.url("tools"), batch)

    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["id"] for a in answers] == ["first", 2, 3, 4]  # no answer to the notification
    assert answers[1]["result"]["content"][0]["text"] == "second"
    assert answers[2]["result"]["isError"] is True
    assert "error" in answers[3]
    records = await gateway.audit_of("tools", 4)
    outcomes = {(r.method, r.tool): r.outcome for r in records}
    assert outcomes[("tools/call", "echo")] == "ok"
    assert outcomes[("tools/call", "fail")] == "tool_error"
    assert outcomes[("tools/list", None)] == "ok"


async def test_notifications_alone_are_accepted_with_202(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}

    response = await post(http, gateway.url("tools"), note)

    assert (response.status_code, response.content) == (202, b"")


async def test_the_jsonrpc_endpoint_answers_the_same_and_only_posts(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    url = jsonrpc_url(gateway, "tools")
    # Headers a session would carry are not a session here: the endpoint is stateless.
    headers = {"Mcp-Session-Id": "whatever", "Accept": "text/event-stream"}

    answer = await post(http, url, echo("plain"), headers)
    got = await http.get(url)
    opened = await post(http, url, request("initialize", {"protocolVersion": "2025-11-25"}))

    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["result"]["content"][0]["text"] == "plain"
    assert (got.status_code, got.headers["allow"]) == (405, "POST")
    assert opened.status_code == 400
    assert "initialize opens a session" in opened.json()["error"]["message"]


async def test_a_stream_or_a_stray_response_is_refused_before_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    listen = await post(http, gateway.url("tools"), request("subscriptions/listen", {}))
    stray = await post(http, gateway.url("tools"), {"jsonrpc": "2.0", "id": 9, "result": {}})

    assert listen.status_code == 400
    assert "answers with a stream" in listen.json()["error"]["message"]
    assert stray.status_code == 400
    assert not backend.witness.bodies_naming("subscriptions/listen")


async def test_policy_holds_for_one_shot_calls(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    call = request("tools/call", {"name": "delete_everything", "arguments": {}})

    denied = await post(http, gateway.url("guarded"), call)
    in_batch = await post(http, gateway.url("guarded"), [echo("fine"), {**call, "id": 2}])

    assert denied.json()["error"]["code"] == -32602
    assert "error" in in_batch.json()  # the whole batch is refused before anything runs
    assert backend.witness.calls["delete_everything"] == 0
    assert backend.witness.calls["echo"] == 0


async def test_a_server_that_requires_sign_in_asks_for_it_and_takes_a_bearer_token(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server("signed", port=backend.port, oauth={"required": True})
    token = gateway.token("signed", "tools:write")

    anonymous = await post(http, gateway.url("signed"), echo("hi"))
    twice = await http.post(
        gateway.url("signed"),
        content=orjson.dumps(echo("hi")),
        headers=[
            ("Content-Type", "application/json"),
            ("Authorization", f"Bearer {token}"),
            ("Authorization", "Bearer someone-else"),
        ],
    )
    signed = await post(
        http, gateway.url("signed"), echo("hi"), {"Authorization": f"Bearer {token}"}
    )

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer ")
    assert twice.status_code == 400
    assert signed.json()["result"]["content"][0]["text"] == "hi"


async def test_the_jsonrpc_endpoint_takes_a_dpop_bound_token_with_a_proof_for_its_own_url(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server(
        "bound", port=backend.port, oauth={"required": True, "dpop": "required"}
    )
    key = generate_key()
    token = gateway.token("bound", "tools:write", jkt=key.thumbprint())
    url = jsonrpc_url(gateway, "bound")

    def proof(for_url: str) -> dict[str, str]:
        value = make_proof(key, method="POST", url=for_url, access_token=token)
        return {"Authorization": f"DPoP {token}", "DPoP": value}

    fresh = proof(url)
    accepted = await post(http, url, echo("bound"), fresh)
    replayed = await post(http, url, echo("again"), fresh)
    elsewhere = await post(http, url, echo("moved"), proof(gateway.url("bound")))
    as_bearer = await post(http, url, echo("bearer"), {"Authorization": f"Bearer {token}"})

    assert accepted.json()["result"]["content"][0]["text"] == "bound"
    assert replayed.status_code == 401
    assert elsewhere.status_code == 401  # a proof for /mcp is no proof for /jsonrpc
    assert as_bearer.status_code == 401


async def test_a_client_that_leaves_cancels_its_one_shot_call(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    call = request("tools/call", {"name": "slow", "arguments": {"seconds": 30, "tag": "left"}})
    sent = asyncio.ensure_future(post(http, gateway.url("tools"), call))
    await until(lambda: "left" in backend.witness.started, what="the slow call to start")

    sent.cancel()

    await until(lambda: "left" in backend.witness.cancelled, what="the backend to cancel it")
    (record,) = await gateway.audit_of("tools")
    assert (record.tool, record.status) == ("slow", 499)


async def test_the_streamed_path_is_untouched_for_clients_that_name_a_version(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }

    response = await post(http, gateway.url("tools"), request("tools/list"), headers)

    # The initialize era without a session: the backend's own answer, relayed as it is.
    assert response.status_code == 400
    assert messages(response)[0]["error"]


async def test_a_tool_with_header_parameters_gets_them_though_the_client_never_listed(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    call = request("tools/call", {"name": "seen_headers", "arguments": {"region": "zürich"}})

    response = await post(http, gateway.url("tools"), call)

    answer = response.json()
    assert "result" in answer, answer
    assert answer["result"].get("isError") is not True, answer
    (forwarded,) = [r for r in backend.witness.requests if "zürich".encode() in r.body]
    assert forwarded.headers["mcp-param-region"] == "=?base64?esO8cmljaA==?="


async def test_task_methods_are_refused_before_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    response = await post(http, gateway.url("tools"), request("tasks/get", {"taskId": "x"}))

    # A task id is only ever handed out sealed on the streamed path: this one opens nothing.
    assert response.status_code in (400, 404)
    assert "error" in response.json()
    assert not backend.witness.bodies_naming("tasks/get")
